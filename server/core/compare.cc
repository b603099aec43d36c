#include "server/core/compare.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "analytics/statistics.h"
#include "proto/cc/status_macros.h"
#include "server/core/scope.h"

namespace logp {
namespace {

std::string DataWords(const DataShape& s) {
  std::string words = absl::StrCat(v1::DataKind_Name(s.kind), ", dim ", s.dim);
  if (s.kind == v1::DATA_KIND_CATEGORICAL) {
    absl::StrAppend(&words, ", ", s.num_categories, " categories");
  }
  return words;
}

bool SameData(const DataShape& a, const DataShape& b) {
  return a.kind == b.kind && a.dim == b.dim && a.num_categories == b.num_categories;
}

}  // namespace

absl::StatusOr<v1::CompareModelsResponse> CompareModelsOnDataset(
    const ModelResolver& models, DatasetStore& datasets, const v1::CompareModelsRequest& request,
    const CallControl& call) {
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"model_a_id", &request.model_a_id()},
        {"model_b_id", &request.model_b_id()},
        {"dataset_id", &request.dataset_id()}}) {
    if (value->empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  }
  // Published models only: an empty job id makes the resolver look up a model.
  ASSIGN_OR_RETURN(const ResolvedModel a, models(request.model_a_id(), ""));
  ASSIGN_OR_RETURN(const ResolvedModel b, models(request.model_b_id(), ""));
  const DataShape& shape = a.model->shape();
  if (!SameData(shape, b.model->shape())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "models '", request.model_a_id(), "' (", DataWords(shape), ") and '", request.model_b_id(),
        "' (", DataWords(b.model->shape()), ") model different data and cannot be compared"));
  }
  auto data = datasets.Load(request.dataset_id());
  if (absl::IsNotFound(data.status())) return UnknownIdError("dataset", request.dataset_id());
  RETURN_IF_ERROR(data.status());
  ASSIGN_OR_RETURN(ScoreOptions options, ToScoreOptions(request));
  options.stop = call.AsStopPoll();

  RETURN_IF_ERROR(call.Check("comparison"));
  absl::StatusOr<Scores> scores_a = a.model->Score(**data, options);
  if (!scores_a.ok()) return call.Explain(scores_a.status(), "comparison");
  RETURN_IF_ERROR(call.Check("comparison"));
  absl::StatusOr<Scores> scores_b = b.model->Score(**data, options);
  if (!scores_b.ok()) return call.Explain(scores_b.status(), "comparison");

  const PairedComparison c = ComparePaired(scores_a->log_prob, scores_b->log_prob);
  double sum_a = 0, sum_b = 0;
  for (double v : scores_a->log_prob) sum_a += v;
  for (double v : scores_b->log_prob) sum_b += v;
  const double n = static_cast<double>(c.num_records);
  v1::CompareModelsResponse r;
  r.set_num_records(static_cast<uint64_t>(c.num_records));
  r.set_mean_log_prob_a(n > 0 ? sum_a / n : 0);
  r.set_mean_log_prob_b(n > 0 ? sum_b / n : 0);
  r.set_mean_difference(c.mean_difference);
  r.set_standard_error(c.standard_error);
  r.set_ci95_low(c.ci95_low);
  r.set_ci95_high(c.ci95_high);
  r.set_z(c.z);
  r.set_p_value(c.p_value);
  r.set_score_kind_a(scores_a->kind);
  r.set_score_kind_b(scores_b->kind);
  r.set_importance_samples_a(scores_a->importance_samples);
  r.set_importance_samples_b(scores_b->importance_samples);
  return r;
}

}  // namespace logp
