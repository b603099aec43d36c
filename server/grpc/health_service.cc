#include "server/grpc/health_service.h"

#include <optional>

#include "absl/time/time.h"

namespace logp {
namespace {

using grpc::health::v1::HealthCheckResponse;

// How often a Watch with nothing to send looks whether its client went away (a sync handler
// is not told).
constexpr absl::Duration kWatchCancelPoll = absl::Milliseconds(500);

}  // namespace

void HealthService::SetServing(bool serving) {
  absl::MutexLock lock(&mu_);
  if (serving_ == serving) return;
  serving_ = serving;
  ++changes_;
}

void HealthService::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  shut_down_ = true;
  ++changes_;
}

grpc::Status HealthService::Check(grpc::ServerContext*,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  HealthCheckResponse* response) {
  if (!request->service().empty()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "service name unknown");
  }
  absl::MutexLock lock(&mu_);
  response->set_status(serving_ ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING);
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(grpc::ServerContext* ctx,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  grpc::ServerWriter<HealthCheckResponse>* writer) {
  const bool known = request->service().empty();
  std::optional<HealthCheckResponse::ServingStatus> sent;
  int64_t seen = -1;
  while (true) {
    HealthCheckResponse::ServingStatus status;
    {
      absl::MutexLock lock(&mu_);
      auto changed = [this, &seen]()
                         ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return changes_ != seen; };
      while (!mu_.AwaitWithTimeout(absl::Condition(&changed), kWatchCancelPoll)) {
        if (ctx->IsCancelled()) {
          return grpc::Status(grpc::StatusCode::CANCELLED, "health watch cancelled");
        }
      }
      if (shut_down_) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down");
      }
      seen = changes_;
      status = !known     ? HealthCheckResponse::SERVICE_UNKNOWN
               : serving_ ? HealthCheckResponse::SERVING
                          : HealthCheckResponse::NOT_SERVING;
    }
    if (sent == status) continue;
    HealthCheckResponse response;
    response.set_status(status);
    if (!writer->Write(response)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "health watch stream broken");
    }
    sent = status;
  }
}

}  // namespace logp
