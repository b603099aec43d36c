// Marginal and Impute: the gRPC-free core of ModelService's conditionals (models/conditional.h
// does the mathematics).
#ifndef LOGP_SERVER_CORE_CONDITIONALS_H_
#define LOGP_SERVER_CORE_CONDITIONALS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "logp/v1/conditional.pb.h"
#include "server/core/call_control.h"
#include "server/core/scoring.h"

namespace logp {

struct ConditionalLimits {
  // Records one Marginal or Impute request may carry (default 10,000).
  int64_t max_records = 10000;
  // Values of one ImputeResponse, records x num_samples x dim (default 500,000: 2 MB of float32,
  // inside gRPC's default 4 MB message).
  int64_t max_imputed_values = 500000;
  // Forward-pass rows one call may evaluate (records x completions, x importance samples or x
  // draws; default 2^22).
  int64_t max_forward_rows = int64_t{1} << 22;
};

// Both poll `call` between batches and stop with DEADLINE_EXCEEDED or CANCELLED as it says.
// NOT_FOUND for an unknown model or job; INVALID_ARGUMENT for records that do not fit the model,
// bad observed_dims (naming the index), importance_samples outside [2, 10000] or (Impute)
// num_samples 0; RESOURCE_EXHAUSTED over a limit (naming it); FAILED_PRECONDITION when the
// family has no exact or sound estimated answer for the observed set.
absl::StatusOr<v1::MarginalResponse> MarginalRecords(const ModelResolver& models,
                                                     const v1::MarginalRequest& request,
                                                     const ConditionalLimits& limits,
                                                     const CallControl& call);
absl::StatusOr<v1::ImputeResponse> ImputeRecords(const ModelResolver& models,
                                                 const v1::ImputeRequest& request,
                                                 const ConditionalLimits& limits,
                                                 const CallControl& call);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_CONDITIONALS_H_
