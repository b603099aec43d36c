// CompareModels: the gRPC-free core of ModelService.CompareModels. Two published models score
// every record of one stored dataset; analytics/statistics.h's ComparePaired tests the paired
// differences of their log-likelihoods.
#ifndef LOGP_SERVER_CORE_COMPARE_H_
#define LOGP_SERVER_CORE_COMPARE_H_

#include "absl/status/statusor.h"
#include "logp/v1/compare.pb.h"
#include "server/core/call_control.h"
#include "server/core/dataset_store.h"
#include "server/core/scoring.h"

namespace logp {

// The paired comparison of model_a_id and model_b_id on dataset_id (see compare.proto for what
// each field means). `models` resolves a published model's id (the tenant's visibility is the
// resolver's and the caller's business: TenantView). Polls `call` between batches of 512
// records of each model's scoring, and stops with DEADLINE_EXCEEDED or CANCELLED as it says.
//
// Errors, in the order they are checked: INVALID_ARGUMENT for an empty model_a_id, model_b_id
// or dataset_id; NOT_FOUND for an unknown model; FAILED_PRECONDITION naming both models when
// their data kind, dim or number of categories differ; NOT_FOUND for an unknown dataset;
// INVALID_ARGUMENT for a negative importance_samples or a dataset that does not fit the models
// (as Evaluate: the message names the dim, kind or record).
absl::StatusOr<v1::CompareModelsResponse> CompareModelsOnDataset(
    const ModelResolver& models, DatasetStore& datasets, const v1::CompareModelsRequest& request,
    const CallControl& call);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_COMPARE_H_
