// Client::Marginal and Client::Impute (declared in client.h).
#include "client/client.h"

namespace logp {

absl::StatusOr<v1::MarginalResponse> Client::Marginal(const v1::MarginalRequest& request) {
  v1::MarginalResponse response;
  absl::Status status = Call(
      [&](grpc::ClientContext* context) { return models_->Marginal(context, request, &response); },
      /*retry=*/true);
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::ImputeResponse> Client::Impute(const v1::ImputeRequest& request) {
  v1::ImputeResponse response;
  absl::Status status = Call(
      [&](grpc::ClientContext* context) { return models_->Impute(context, request, &response); },
      /*retry=*/true);
  if (!status.ok()) return status;
  return response;
}

}  // namespace logp
