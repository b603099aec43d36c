// Score, Evaluate and Sample: the gRPC-free core of ModelService.
#ifndef LOGP_SERVER_CORE_SCORING_H_
#define LOGP_SERVER_CORE_SCORING_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "logp/v1/model_service.pb.h"
#include "server/core/call_control.h"
#include "server/core/dataset_store.h"
#include "server/core/job_manager.h"
#include "server/core/score_batcher.h"

namespace logp {

struct ScoringLimits {
  // Records one Score request may carry (default 100,000).
  int64_t max_score_records = 100000;
  // Samples one Sample request may ask for (default 100,000).
  int64_t max_samples = 100000;
  // Samples per streamed SampleResponse (default 1,024). Part of the seed-to-samples mapping.
  int64_t sample_chunk_records = 1024;
  // Per-dimension terms (records x dim) one Score request with per_dimension may ask for
  // (default 4,000,000: 32 MB of doubles, well inside the 64 MiB message limit).
  int64_t max_dimension_log_probs = 4000000;
  // Longest a Score, Evaluate or Sample call may run, in seconds, whatever (or whether) the
  // client's deadline; DEADLINE_EXCEEDED past it. 0: no server-side cap (default).
  double max_request_seconds = 0;
  // Dynamic batching of Score (score_batcher.h): default on, 256 records, 1 ms.
  ScoreBatchingOptions batching;
};

// The ScoreOptions of a request with optional importance_samples and a seed (Score, Evaluate,
// CompareModels): INVALID_ARGUMENT for importance_samples < 0.
template <typename Request>
absl::StatusOr<ScoreOptions> ToScoreOptions(const Request& request) {
  ScoreOptions options;
  if (request.has_importance_samples()) {
    if (request.importance_samples() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("importance_samples must be >= 0, got ", request.importance_samples()));
    }
    options.importance_samples = request.importance_samples();
  }
  options.seed = request.seed();
  return options;
}

// Finds the model a request names: (model_id, job_id), exactly one non-empty.
using ModelResolver =
    std::function<absl::StatusOr<ResolvedModel>(const std::string&, const std::string&)>;

// Each of the three polls `call` between batches of 512 records (Score, Evaluate) or between
// the dimensions of a sequential sampler (Sample), and stops with DEADLINE_EXCEEDED or CANCELLED
// as the call says.

// NOT_FOUND for an unknown model or job; RESOURCE_EXHAUSTED over max_score_records;
// INVALID_ARGUMENT for records that do not fit the model (naming record and column). With
// per_dimension: also the terms log p(x_d | x_<d) (Model::PerDimensionLogProb);
// FAILED_PRECONDITION for a family without them, RESOURCE_EXHAUSTED over
// max_dimension_log_probs. With a `batcher`, the forward pass may be shared with concurrent
// calls on the same model (ScoreBatcher; same scores); null: scored alone.
absl::StatusOr<v1::ScoreResponse> ScoreRecords(const ModelResolver& models,
                                               const v1::ScoreRequest& request,
                                               const ScoringLimits& limits, const CallControl& call,
                                               ScoreBatcher* batcher = nullptr);

// Mean NLL of a stored dataset with its standard error, 95% interval and bits/dim.
absl::StatusOr<v1::EvaluateResponse> EvaluateDataset(const ModelResolver& models,
                                                     DatasetStore& datasets,
                                                     const v1::EvaluateRequest& request,
                                                     const CallControl& call);

// Streams num_samples samples in chunks through `write` (false: the client went away, CANCELLED).
// INVALID_ARGUMENT for 0 samples, RESOURCE_EXHAUSTED over max_samples. Equal seeds give equal
// samples.
absl::Status SampleRecords(const ModelResolver& models, const v1::SampleRequest& request,
                           const ScoringLimits& limits,
                           const std::function<bool(const v1::SampleResponse&)>& write,
                           const CallControl& call);

// The published model `request.id` as a TorchScript file (models/export.h). INVALID_ARGUMENT for
// an empty id; NOT_FOUND for an unknown model; UNIMPLEMENTED for a family whose export is not
// built.
absl::StatusOr<std::string> ExportModelFile(const ModelResolver& models,
                                            const v1::ExportModelRequest& request);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_SCORING_H_
