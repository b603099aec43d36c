// HealthService: the standard health protocol (grpc.health.v1.Health, Check and Watch) on gRPC's
// sync API, for the main port and the health-only port.
//
// It replaces gRPC's default health service, which in gRPC 1.51 is served on the callback API:
// serving any callback method starts gRPC's "nexting" threads, which sleep 100 ms at a time and
// stall the sync server's calls now and then (see watch_job_service.h).
//
// It knows one service, "" (the server as a whole): Check("") answers SERVING or NOT_SERVING;
// Check of any other name is NOT_FOUND, as gRPC's own service answers. Watch sends the status (or
// SERVICE_UNKNOWN for another name) at once and again at each change, until the client goes away
// (CANCELLED) or Shutdown (UNAVAILABLE). Each Watch holds a sync thread of the server while it
// runs. NOT_SERVING until SetServing(true).
//
// Thread-safe.
#ifndef LOGP_SERVER_GRPC_HEALTH_SERVICE_H_
#define LOGP_SERVER_GRPC_HEALTH_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace logp {

class HealthService final : public grpc::health::v1::Health::Service {
 public:
  void SetServing(bool serving) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends every Watch (UNAVAILABLE) and refuses new ones; Check goes on answering. Call it before
  // the server's Shutdown, which waits for the sync handlers to return. Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  grpc::Status Check(grpc::ServerContext* ctx, const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;
  grpc::Status Watch(grpc::ServerContext* ctx, const grpc::health::v1::HealthCheckRequest* request,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override;

 private:
  absl::Mutex mu_;
  bool serving_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  int64_t changes_ ABSL_GUARDED_BY(mu_) = 0;  // SetServing and Shutdown calls so far
};

}  // namespace logp

#endif  // LOGP_SERVER_GRPC_HEALTH_SERVICE_H_
