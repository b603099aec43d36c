#include "server/core/conditionals.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "models/conditional.h"
#include "proto/cc/json_rows.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace {

// The request's records (records or rows, exactly as ScoreRecords reads them).
template <typename Request>
absl::StatusOr<RecordMatrix> ReadRecords(const Request& request, const DataShape& shape,
                                         int64_t max_records, const char* rpc) {
  ASSIGN_OR_RETURN(RecordMatrix records,
                   RecordMatrix::Empty(shape.kind, shape.dim, shape.num_categories));
  if (request.has_rows()) {
    if (request.has_records()) {
      return absl::InvalidArgumentError("give the records either as records or as rows, not both");
    }
    RETURN_IF_ERROR(AppendRows(request.rows(), max_records, &records));
    return records;
  }
  const auto& block = request.records();
  if (static_cast<int64_t>(block.num_records()) > max_records) {
    return absl::ResourceExhaustedError(absl::StrCat("a ", rpc, " request may carry at most ",
                                                     max_records, " records, got ",
                                                     block.num_records()));
  }
  if (block.dim() != shape.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("records have dim ", block.dim(), ", the model expects ", shape.dim));
  }
  RETURN_IF_ERROR(DecodeAppend(block, 0, &records));
  return records;
}

template <typename Request>
absl::StatusOr<ConditionalOptions> ReadOptions(const Request& request, const DataShape& shape,
                                               const ConditionalLimits& limits,
                                               std::vector<int64_t>* observed) {
  observed->assign(request.observed_dims().begin(), request.observed_dims().end());
  RETURN_IF_ERROR(CheckObservedDims(*observed, shape.dim));
  ConditionalOptions options;
  if (request.has_importance_samples()) {
    const int32_t k = request.importance_samples();
    if (k < 2 || k > 10000) {
      return absl::InvalidArgumentError(
          absl::StrCat("importance_samples must be in [2, 10000], got ", k));
    }
    options.importance_samples = k;
  }
  options.seed = request.seed();
  options.max_forward_rows = limits.max_forward_rows;
  return options;
}

}  // namespace

absl::StatusOr<v1::MarginalResponse> MarginalRecords(const ModelResolver& models,
                                                     const v1::MarginalRequest& request,
                                                     const ConditionalLimits& limits,
                                                     const CallControl& call) {
  ASSIGN_OR_RETURN(ResolvedModel resolved, models(request.model_id(), request.job_id()));
  const Model& model = *resolved.model;
  ASSIGN_OR_RETURN(RecordMatrix records,
                   ReadRecords(request, model.shape(), limits.max_records, "Marginal"));
  std::vector<int64_t> observed;
  ASSIGN_OR_RETURN(ConditionalOptions options,
                   ReadOptions(request, model.shape(), limits, &observed));
  RETURN_IF_ERROR(call.Check("marginal"));
  options.stop = call.AsStopPoll();
  absl::StatusOr<MarginalScores> got = Marginal(model, records, observed, options);
  if (!got.ok()) return call.Explain(got.status(), "marginal");
  v1::MarginalResponse response;
  response.mutable_log_prob()->Assign(got->log_prob.begin(), got->log_prob.end());
  response.mutable_standard_error()->Assign(got->standard_error.begin(), got->standard_error.end());
  response.set_score_kind(got->kind);
  response.set_importance_samples(got->importance_samples);
  response.set_method(got->method);
  response.set_checkpoint_step(resolved.checkpoint_step);
  return response;
}

absl::StatusOr<v1::ImputeResponse> ImputeRecords(const ModelResolver& models,
                                                 const v1::ImputeRequest& request,
                                                 const ConditionalLimits& limits,
                                                 const CallControl& call) {
  ASSIGN_OR_RETURN(ResolvedModel resolved, models(request.model_id(), request.job_id()));
  const Model& model = *resolved.model;
  ASSIGN_OR_RETURN(RecordMatrix records,
                   ReadRecords(request, model.shape(), limits.max_records, "Impute"));
  std::vector<int64_t> observed;
  ASSIGN_OR_RETURN(ConditionalOptions options,
                   ReadOptions(request, model.shape(), limits, &observed));
  const int64_t n = request.num_samples();
  if (n == 0) return absl::InvalidArgumentError("num_samples must be at least 1");
  const int64_t per_record = model.shape().dim * n;
  if (per_record > limits.max_imputed_values ||
      records.rows > limits.max_imputed_values / per_record) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "records x num_samples x dim = ", records.rows, " x ", n, " x ", model.shape().dim,
        " exceeds the limit of ", limits.max_imputed_values, " imputed values per call"));
  }
  RETURN_IF_ERROR(call.Check("imputation"));
  options.stop = call.AsStopPoll();
  absl::StatusOr<Imputations> got = Impute(model, records, observed, n, options);
  if (!got.ok()) return call.Explain(got.status(), "imputation");
  v1::ImputeResponse response;
  *response.mutable_samples() = Encode(got->samples, 0, got->samples.rows);
  response.set_num_samples(static_cast<uint32_t>(n));
  response.mutable_conditional_mean()->Assign(got->conditional_mean.begin(),
                                              got->conditional_mean.end());
  response.set_exact(got->exact);
  response.mutable_effective_sample_size()->Assign(got->effective_sample_size.begin(),
                                                   got->effective_sample_size.end());
  response.set_importance_samples(got->importance_samples);
  response.set_method(got->method);
  response.set_checkpoint_step(resolved.checkpoint_step);
  return response;
}

}  // namespace logp
