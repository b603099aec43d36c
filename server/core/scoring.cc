#include "server/core/scoring.h"

#include "absl/strings/str_cat.h"
#include "models/export.h"
#include "models/stats.h"
#include "proto/cc/json_rows.h"
#include "proto/cc/status_macros.h"
#include "server/core/scope.h"
#include "server/core/score_analysis.h"

namespace logp {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

template <typename Request>
absl::StatusOr<ResolvedModel> LoadModel(const ModelResolver& models, const Request& request) {
  return models(request.model_id(), request.job_id());
}

// ScoreRequest.per_dimension: the chain-rule terms, N x D, within the request's cap.
absl::StatusOr<std::vector<double>> PerDimensionTerms(const Model& model,
                                                      const RecordMatrix& records,
                                                      const ScoringLimits& limits,
                                                      const CallControl& call) {
  if (records.rows * records.cols > limits.max_dimension_log_probs) {
    return absl::ResourceExhaustedError(
        absl::StrCat("per_dimension: ", records.rows, " records x dim ", records.cols, " = ",
                     records.rows * records.cols, " terms; a Score request may ask for at most ",
                     limits.max_dimension_log_probs, " (send fewer records per request)"));
  }
  absl::StatusOr<std::vector<double>> terms = model.PerDimensionLogProb(records, call.AsStopPoll());
  if (!terms.ok()) return call.Explain(terms.status(), "scoring");
  return terms;
}

}  // namespace

absl::StatusOr<v1::ScoreResponse> ScoreRecords(const ModelResolver& models,
                                               const v1::ScoreRequest& request,
                                               const ScoringLimits& limits, const CallControl& call,
                                               ScoreBatcher* batcher) {
  ASSIGN_OR_RETURN(ResolvedModel resolved, LoadModel(models, request));
  const std::shared_ptr<const Model>& model = resolved.model;
  const auto& block = request.records();
  const DataShape& shape = model->shape();
  ASSIGN_OR_RETURN(RecordMatrix records,
                   RecordMatrix::Empty(shape.kind, shape.dim, shape.num_categories));
  if (request.has_rows()) {
    if (request.has_records()) {
      return absl::InvalidArgumentError("give the records either as records or as rows, not both");
    }
    RETURN_IF_ERROR(AppendRows(request.rows(), limits.max_score_records, &records));
  } else {
    if (static_cast<int64_t>(block.num_records()) > limits.max_score_records) {
      return absl::ResourceExhaustedError(absl::StrCat("a Score request may carry at most ",
                                                       limits.max_score_records, " records, got ",
                                                       block.num_records()));
    }
    if (block.dim() != shape.dim) {
      return absl::InvalidArgumentError(
          absl::StrCat("records have dim ", block.dim(), ", the model expects ", shape.dim));
    }
    RETURN_IF_ERROR(DecodeAppend(block, 0, &records));
  }
  ASSIGN_OR_RETURN(ScoreOptions options, ToScoreOptions(request));
  // Anomaly p-values, typicality, likelihood ratio (score_analysis.h).
  ASSIGN_OR_RETURN(const ScoreAnalysis analysis,
                   PrepareScoreAnalysis(models, request, resolved, records.rows));
  RETURN_IF_ERROR(call.Check("scoring"));
  options.stop = call.AsStopPoll();
  std::vector<double> dimension_log_prob;
  if (request.per_dimension()) {
    ASSIGN_OR_RETURN(dimension_log_prob, PerDimensionTerms(*model, records, limits, call));
  }
  absl::StatusOr<Scores> scored = batcher != nullptr ? batcher->Score(model, records, options, call)
                                                     : model->Score(records, options);
  if (!scored.ok()) return call.Explain(scored.status(), "scoring");
  Scores& scores = *scored;
  v1::ScoreResponse response;
  response.mutable_log_prob()->Assign(scores.log_prob.begin(), scores.log_prob.end());
  response.mutable_standard_error()->Assign(scores.standard_error.begin(),
                                            scores.standard_error.end());
  response.set_score_kind(scores.kind);
  response.set_importance_samples(scores.importance_samples);
  response.set_checkpoint_step(resolved.checkpoint_step);
  response.mutable_dimension_log_prob()->Assign(dimension_log_prob.begin(),
                                                dimension_log_prob.end());
  RETURN_IF_ERROR(ApplyScoreAnalysis(analysis, request, records, scores, call, &response));
  return response;
}

absl::StatusOr<v1::EvaluateResponse> EvaluateDataset(const ModelResolver& models,
                                                     DatasetStore& datasets,
                                                     const v1::EvaluateRequest& request,
                                                     const CallControl& call) {
  ASSIGN_OR_RETURN(ResolvedModel resolved, LoadModel(models, request));
  const std::shared_ptr<const Model>& model = resolved.model;
  if (request.dataset_id().empty()) return absl::InvalidArgumentError("dataset_id is required");
  auto data = datasets.Load(request.dataset_id());
  if (absl::IsNotFound(data.status())) {
    return UnknownIdError("dataset", request.dataset_id());
  }
  RETURN_IF_ERROR(data.status());
  ASSIGN_OR_RETURN(ScoreOptions options, ToScoreOptions(request));
  RETURN_IF_ERROR(call.Check("evaluation"));
  options.stop = call.AsStopPoll();
  absl::StatusOr<Scores> scored = model->Score(**data, options);
  if (!scored.ok()) return call.Explain(scored.status(), "evaluation");
  const Scores& scores = *scored;
  const NllSummary s = SummarizeLogProbs(scores.log_prob, model->shape().dim);
  v1::EvaluateResponse r;
  r.set_num_records(static_cast<uint64_t>(s.count));
  r.set_mean_nll(s.mean_nll);
  r.set_standard_error(s.standard_error);
  r.set_ci95_low(s.ci95_low);
  r.set_ci95_high(s.ci95_high);
  r.set_bits_per_dim(s.bits_per_dim);
  r.set_score_kind(scores.kind);
  r.set_importance_samples(scores.importance_samples);
  r.set_checkpoint_step(resolved.checkpoint_step);
  return r;
}

absl::Status SampleRecords(const ModelResolver& models, const v1::SampleRequest& request,
                           const ScoringLimits& limits,
                           const std::function<bool(const v1::SampleResponse&)>& write,
                           const CallControl& call) {
  ASSIGN_OR_RETURN(ResolvedModel resolved, LoadModel(models, request));
  const std::shared_ptr<const Model>& model = resolved.model;
  const int64_t n = static_cast<int64_t>(request.num_samples());
  if (request.num_samples() == 0) return absl::InvalidArgumentError("num_samples must be > 0");
  if (request.num_samples() > static_cast<uint64_t>(limits.max_samples)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "num_samples may be at most ", limits.max_samples, ", got ", request.num_samples()));
  }
  int64_t chunk_index = 0;
  for (int64_t done = 0; done < n; done += limits.sample_chunk_records, ++chunk_index) {
    RETURN_IF_ERROR(call.Check("sampling"));
    const int64_t k = std::min(limits.sample_chunk_records, n - done);
    absl::StatusOr<RecordMatrix> sampled =
        model->Sample(k, SplitMix64(request.seed() ^ SplitMix64(chunk_index)), call.AsStopPoll());
    if (!sampled.ok()) return call.Explain(sampled.status(), "sampling");
    const RecordMatrix& s = *sampled;
    v1::SampleResponse response;
    *response.mutable_records() = Encode(s, 0, s.rows);
    if (!write(response)) return absl::CancelledError("the client stopped reading samples");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ExportModelFile(const ModelResolver& models,
                                            const v1::ExportModelRequest& request) {
  if (request.id().empty()) return absl::InvalidArgumentError("id is required");
  ASSIGN_OR_RETURN(const ResolvedModel resolved, models(request.id(), ""));
  return ExportTorchScript(*resolved.model);
}

}  // namespace logp
