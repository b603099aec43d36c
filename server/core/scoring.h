// Score, Evaluate and Sample: the gRPC-free core of ModelService.
#ifndef LOGP_SERVER_CORE_SCORING_H_
#define LOGP_SERVER_CORE_SCORING_H_

#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "logp/v1/model_service.pb.h"
#include "server/core/dataset_store.h"
#include "server/core/job_manager.h"

namespace logp {

struct ScoringLimits {
  // Records one Score request may carry (default 100,000).
  int64_t max_score_records = 100000;
  // Samples one Sample request may ask for (default 100,000).
  int64_t max_samples = 100000;
  // Samples per streamed SampleResponse (default 1,024). Part of the seed-to-samples mapping.
  int64_t sample_chunk_records = 1024;
};

// Finds the model a request names: (model_id, job_id), exactly one non-empty.
using ModelResolver =
    std::function<absl::StatusOr<ResolvedModel>(const std::string&, const std::string&)>;

// NOT_FOUND for an unknown model or job; RESOURCE_EXHAUSTED over max_score_records;
// INVALID_ARGUMENT for records that do not fit the model (naming record and column).
absl::StatusOr<v1::ScoreResponse> ScoreRecords(const ModelResolver& models,
                                               const v1::ScoreRequest& request,
                                               const ScoringLimits& limits);

// Mean NLL of a stored dataset with its standard error, 95% interval and bits/dim.
absl::StatusOr<v1::EvaluateResponse> EvaluateDataset(const ModelResolver& models,
                                                     DatasetStore& datasets,
                                                     const v1::EvaluateRequest& request);

// Streams num_samples samples in chunks through `write` (false: the client went away, CANCELLED).
// `cancelled` is polled between chunks. INVALID_ARGUMENT for 0 samples, RESOURCE_EXHAUSTED over
// max_samples. Equal seeds give equal samples.
absl::Status SampleRecords(const ModelResolver& models, const v1::SampleRequest& request,
                           const ScoringLimits& limits,
                           const std::function<bool(const v1::SampleResponse&)>& write,
                           const std::function<bool()>& cancelled);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_SCORING_H_
