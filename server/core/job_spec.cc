// ResolveJobSpec (job_spec.h).
#include "server/core/job_spec.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "models/model.h"
#include "proto/cc/records.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace {

constexpr double kDefaultLearningRate = 1e-3;
constexpr int kDefaultBatchSize = 100;
constexpr int kDefaultEpochs = 10;
constexpr double kDefaultValidationFraction = 0.1;

}  // namespace

absl::StatusOr<v1::JobSpec> ResolveJobSpec(const v1::JobSpec& raw, const v1::Dataset& train,
                                           const absl::StatusOr<v1::Dataset>* validation) {
  v1::JobSpec spec = raw;
  const DataShape shape{train.kind(), train.dim(), static_cast<int32_t>(train.num_categories())};
  ASSIGN_OR_RETURN(*spec.mutable_model(), ResolveModelSpec(spec.model(), shape));
  switch (spec.validation_case()) {
    case v1::JobSpec::kValidationDatasetId: {
      if (validation == nullptr) {
        return absl::InternalError("ResolveJobSpec: the validation dataset was not looked up");
      }
      const absl::StatusOr<v1::Dataset>& vs = *validation;
      if (absl::IsNotFound(vs.status())) {
        return absl::NotFoundError(
            absl::StrCat("validation dataset '", spec.validation_dataset_id(), "' not found"));
      }
      RETURN_IF_ERROR(vs.status());
      if (vs->kind() != train.kind() || vs->dim() != train.dim() ||
          vs->num_categories() != train.num_categories()) {
        return absl::InvalidArgumentError(
            absl::StrCat("spec.validation_dataset_id: ", KindName(vs->kind()), " data of dim ",
                         vs->dim(), " does not match the training data (", KindName(train.kind()),
                         ", dim ", train.dim(), ")"));
      }
      break;
    }
    case v1::JobSpec::kValidationFraction: {
      const double f = spec.validation_fraction();
      if (!(f > 0 && f < 1)) {
        return absl::InvalidArgumentError(
            absl::StrCat("spec.validation_fraction must be in (0, 1), got ", f));
      }
      const double held = std::llround(f * static_cast<double>(train.num_records()));
      if (held < 1 || held >= static_cast<double>(train.num_records())) {
        return absl::InvalidArgumentError(
            absl::StrCat("spec.validation_fraction ", f, " of ", train.num_records(),
                         " records leaves an empty training or validation set"));
      }
      break;
    }
    default:
      if (train.num_records() < 2) {
        return absl::InvalidArgumentError(
            "the dataset has one record: give spec.validation_dataset_id");
      }
      spec.set_validation_fraction(
          std::max(kDefaultValidationFraction, 1.0 / static_cast<double>(train.num_records())));
  }
  v1::OptimizerSpec* opt = spec.mutable_optimizer();
  if (!opt->has_learning_rate()) opt->set_learning_rate(kDefaultLearningRate);
  if (!(opt->learning_rate() > 0 && opt->learning_rate() <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.optimizer.learning_rate must be in (0, 1], got ", opt->learning_rate()));
  }
  if (!(opt->weight_decay() >= 0) || !std::isfinite(opt->weight_decay())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.optimizer.weight_decay must be finite and >= 0, got ", opt->weight_decay()));
  }
  if (!spec.has_batch_size()) spec.set_batch_size(kDefaultBatchSize);
  if (spec.batch_size() < 1 || spec.batch_size() > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.batch_size must be in [1, 65536], got ", spec.batch_size()));
  }
  if (spec.max_steps() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.max_steps must be >= 0 (0: no limit), got ", spec.max_steps()));
  }
  if (!(spec.max_seconds() >= 0) || !std::isfinite(spec.max_seconds())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.max_seconds must be finite and >= 0 (0: no limit), got ", spec.max_seconds()));
  }
  if (spec.early_stopping_patience() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.early_stopping_patience must be >= 0 (0: off), got ",
                     spec.early_stopping_patience()));
  }
  if (!spec.has_epochs()) spec.set_epochs(kDefaultEpochs);
  if (spec.epochs() < 1 || spec.epochs() > 10000) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.epochs must be in [1, 10000], got ", spec.epochs()));
  }
  return spec;
}

}  // namespace logp
