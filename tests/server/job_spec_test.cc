// ResolveJobSpec: the effective values a job stores, and the exact status of every bad field, in
// the order CreateJob has always reported them. Pure: no store, no torch headers.
#include "server/core/job_spec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace logp {
namespace {

v1::Dataset Data(v1::DataKind kind, uint64_t records, uint32_t dim, uint32_t k) {
  v1::Dataset d;
  d.set_id("ds-train");
  d.set_kind(kind);
  d.set_num_records(records);
  d.set_dim(dim);
  d.set_num_categories(k);
  return d;
}

const v1::Dataset kBinary = Data(v1::DATA_KIND_BINARY, 40, 16, 2);

v1::JobSpec Made() {
  v1::JobSpec s;
  s.set_dataset_id(kBinary.id());
  s.mutable_model()->set_family(v1::MODEL_FAMILY_MADE);
  s.mutable_model()->mutable_made()->set_hidden_units(4);
  return s;
}

void ExpectStatus(const absl::StatusOr<v1::JobSpec>& got, absl::StatusCode code,
                  const std::string& message) {
  EXPECT_EQ(got.status().code(), code) << got.status();
  EXPECT_EQ(got.status().message(), message);
}

TEST(ResolveJobSpecTest, FillsInTheTrainingAndModelDefaults) {
  const absl::StatusOr<v1::JobSpec> got = ResolveJobSpec(Made(), kBinary, nullptr);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->dataset_id(), kBinary.id());
  EXPECT_EQ(got->validation_case(), v1::JobSpec::kValidationFraction);
  EXPECT_EQ(got->validation_fraction(), 0.1);
  EXPECT_EQ(got->optimizer().learning_rate(), 1e-3);
  EXPECT_EQ(got->optimizer().weight_decay(), 0);
  EXPECT_EQ(got->batch_size(), 100);
  EXPECT_EQ(got->epochs(), 10);
  // The model spec as ResolveModelSpec makes it: MADE's defaults around the one field set.
  EXPECT_EQ(got->model().made().hidden_units(), 4);
  EXPECT_EQ(got->model().made().hidden_layers(), 1);
  EXPECT_EQ(got->model().made().num_masks(), 1);
  EXPECT_EQ(got->model().made().order(), v1::VARIABLE_ORDER_NATURAL);
  // Resolving an effective spec changes nothing.
  const absl::StatusOr<v1::JobSpec> again = ResolveJobSpec(*got, kBinary, nullptr);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->SerializeAsString(), got->SerializeAsString());
}

TEST(ResolveJobSpecTest, KeepsWhatIsSet) {
  v1::JobSpec s = Made();
  s.mutable_optimizer()->set_learning_rate(1);
  s.mutable_optimizer()->set_weight_decay(0.25);
  s.set_batch_size(65536);
  s.set_epochs(10000);
  s.set_validation_fraction(0.3);
  s.set_max_steps(5);
  s.set_max_seconds(3);
  s.set_early_stopping_patience(2);
  const absl::StatusOr<v1::JobSpec> got = ResolveJobSpec(s, kBinary, nullptr);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->optimizer().learning_rate(), 1);
  EXPECT_EQ(got->optimizer().weight_decay(), 0.25);
  EXPECT_EQ(got->batch_size(), 65536);
  EXPECT_EQ(got->epochs(), 10000);
  EXPECT_EQ(got->validation_fraction(), 0.3);
  EXPECT_EQ(got->max_steps(), 5);
  EXPECT_EQ(got->max_seconds(), 3);
  EXPECT_EQ(got->early_stopping_patience(), 2);
}

TEST(ResolveJobSpecTest, DefaultValidationFractionHoldsOutAtLeastOneRecord) {
  const absl::StatusOr<v1::JobSpec> three =
      ResolveJobSpec(Made(), Data(v1::DATA_KIND_BINARY, 3, 16, 2), nullptr);
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_EQ(three->validation_fraction(), 1.0 / 3);
  ExpectStatus(ResolveJobSpec(Made(), Data(v1::DATA_KIND_BINARY, 1, 16, 2), nullptr),
               absl::StatusCode::kInvalidArgument,
               "the dataset has one record: give spec.validation_dataset_id");
}

TEST(ResolveJobSpecTest, ValidationFractionMustLeaveBothSetsNonEmpty) {
  for (double f : {0.0, 1.0, 1.5, -0.1, std::nan("")}) {
    v1::JobSpec s = Made();
    s.set_validation_fraction(f);
    const absl::StatusOr<v1::JobSpec> got = ResolveJobSpec(s, kBinary, nullptr);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << f;
    EXPECT_EQ(got.status().message().rfind("spec.validation_fraction must be in (0, 1), got ", 0),
              0u)
        << got.status();
  }
  v1::JobSpec s = Made();
  s.set_validation_fraction(0.01);
  ExpectStatus(ResolveJobSpec(s, kBinary, nullptr), absl::StatusCode::kInvalidArgument,
               "spec.validation_fraction 0.01 of 40 records leaves an empty training or "
               "validation set");
}

TEST(ResolveJobSpecTest, ValidationDatasetMustMatchTheTrainingData) {
  v1::JobSpec s = Made();
  s.set_validation_dataset_id("ds-valid");
  absl::StatusOr<v1::Dataset> same = Data(v1::DATA_KIND_BINARY, 300, 16, 2);
  const absl::StatusOr<v1::JobSpec> got = ResolveJobSpec(s, kBinary, &same);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->validation_dataset_id(), "ds-valid");  // no fraction is added

  absl::StatusOr<v1::Dataset> narrow = Data(v1::DATA_KIND_BINARY, 40, 8, 2);
  ExpectStatus(ResolveJobSpec(s, kBinary, &narrow), absl::StatusCode::kInvalidArgument,
               "spec.validation_dataset_id: binary data of dim 8 does not match the training "
               "data (binary, dim 16)");
  absl::StatusOr<v1::Dataset> continuous = Data(v1::DATA_KIND_CONTINUOUS, 40, 16, 0);
  ExpectStatus(ResolveJobSpec(s, kBinary, &continuous), absl::StatusCode::kInvalidArgument,
               "spec.validation_dataset_id: continuous data of dim 16 does not match the "
               "training data (binary, dim 16)");
  // Categorical data with another K.
  const v1::Dataset cat = Data(v1::DATA_KIND_CATEGORICAL, 40, 4, 5);
  absl::StatusOr<v1::Dataset> cat6 = Data(v1::DATA_KIND_CATEGORICAL, 40, 4, 6);
  ExpectStatus(ResolveJobSpec(s, cat, &cat6), absl::StatusCode::kInvalidArgument,
               "spec.validation_dataset_id: categorical data of dim 4 does not match the "
               "training data (categorical, dim 4)");
  // A one-record training set is fine with a validation dataset.
  EXPECT_TRUE(ResolveJobSpec(s, Data(v1::DATA_KIND_BINARY, 1, 16, 2), &same).ok());
}

TEST(ResolveJobSpecTest, ValidationLookupErrorsComeAfterTheModelSpec) {
  v1::JobSpec s = Made();
  s.set_validation_dataset_id("ds-missing");
  const absl::StatusOr<v1::Dataset> missing = absl::NotFoundError("dataset 'ds-missing' not found");
  ExpectStatus(ResolveJobSpec(s, kBinary, &missing), absl::StatusCode::kNotFound,
               "validation dataset 'ds-missing' not found");
  const absl::StatusOr<v1::Dataset> lost = absl::DataLossError("catalog: corrupt row");
  ExpectStatus(ResolveJobSpec(s, kBinary, &lost), absl::StatusCode::kDataLoss,
               "catalog: corrupt row");
  // A bad model spec is reported first.
  s.mutable_model()->mutable_made()->set_hidden_layers(9);
  ExpectStatus(ResolveJobSpec(s, kBinary, &missing), absl::StatusCode::kInvalidArgument,
               "model.made.hidden_layers must be in [1, 8], got 9");
  // The caller must look up the dataset the spec names.
  v1::JobSpec unlooked = Made();
  unlooked.set_validation_dataset_id("ds-x");
  EXPECT_EQ(ResolveJobSpec(unlooked, kBinary, nullptr).status().code(),
            absl::StatusCode::kInternal);
}

TEST(ResolveJobSpecTest, ModelSpecErrorsAreResolveModelSpecs) {
  v1::JobSpec s = Made();
  s.mutable_model()->set_family(v1::MODEL_FAMILY_UNSPECIFIED);
  ExpectStatus(ResolveJobSpec(s, kBinary, nullptr), absl::StatusCode::kInvalidArgument,
               "model.family is required");
  s = Made();
  s.mutable_model()->set_family(v1::MODEL_FAMILY_GAUSSIAN);
  ExpectStatus(ResolveJobSpec(s, kBinary, nullptr), absl::StatusCode::kFailedPrecondition,
               "model family gaussian does not support binary data (it models continuous data)");
}

TEST(ResolveJobSpecTest, BadTrainingFieldsAreNamedInOrder) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  struct Case {
    std::function<void(v1::JobSpec*)> edit;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](v1::JobSpec* s) { s->mutable_optimizer()->set_learning_rate(0); },
       "spec.optimizer.learning_rate must be in (0, 1], got 0"},
      {[](v1::JobSpec* s) { s->mutable_optimizer()->set_learning_rate(1.5); },
       "spec.optimizer.learning_rate must be in (0, 1], got 1.5"},
      {[&](v1::JobSpec* s) { s->mutable_optimizer()->set_learning_rate(nan); },
       "spec.optimizer.learning_rate must be in (0, 1], got nan"},
      {[](v1::JobSpec* s) { s->mutable_optimizer()->set_weight_decay(-1); },
       "spec.optimizer.weight_decay must be finite and >= 0, got -1"},
      {[&](v1::JobSpec* s) { s->mutable_optimizer()->set_weight_decay(inf); },
       "spec.optimizer.weight_decay must be finite and >= 0, got inf"},
      {[](v1::JobSpec* s) { s->set_batch_size(0); },
       "spec.batch_size must be in [1, 65536], got 0"},
      {[](v1::JobSpec* s) { s->set_batch_size(65537); },
       "spec.batch_size must be in [1, 65536], got 65537"},
      {[](v1::JobSpec* s) { s->set_max_steps(-1); },
       "spec.max_steps must be >= 0 (0: no limit), got -1"},
      {[&](v1::JobSpec* s) { s->set_max_seconds(nan); },
       "spec.max_seconds must be finite and >= 0 (0: no limit), got nan"},
      {[](v1::JobSpec* s) { s->set_early_stopping_patience(-1); },
       "spec.early_stopping_patience must be >= 0 (0: off), got -1"},
      {[](v1::JobSpec* s) { s->set_epochs(0); }, "spec.epochs must be in [1, 10000], got 0"},
      {[](v1::JobSpec* s) { s->set_epochs(10001); },
       "spec.epochs must be in [1, 10000], got 10001"},
      // Two bad fields: the first in that order is named.
      {[](v1::JobSpec* s) {
         s->set_batch_size(0);
         s->set_epochs(0);
       },
       "spec.batch_size must be in [1, 65536], got 0"},
      {[](v1::JobSpec* s) {
         s->set_validation_fraction(2);
         s->mutable_optimizer()->set_learning_rate(-3);
       },
       "spec.validation_fraction must be in (0, 1), got 2"},
      {[](v1::JobSpec* s) {
         s->mutable_model()->mutable_regularization()->set_l1(-3);
         s->mutable_optimizer()->set_learning_rate(-3);
       },
       "model.regularization.l1 must be in [0, 1e+06], got -3"},
  };
  for (const Case& c : cases) {
    v1::JobSpec s = Made();
    c.edit(&s);
    SCOPED_TRACE(s.ShortDebugString());
    ExpectStatus(ResolveJobSpec(s, kBinary, nullptr), absl::StatusCode::kInvalidArgument,
                 c.message);
  }
}

}  // namespace
}  // namespace logp
