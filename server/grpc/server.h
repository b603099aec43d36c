// LogpServer: the gRPC face of a Core — DatasetService, JobService, ModelService, the standard
// health service and server reflection.
#ifndef LOGP_SERVER_GRPC_SERVER_H_
#define LOGP_SERVER_GRPC_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/core/core.h"

namespace logp {

// Longest status message sent to a client; longer ones are cut.
inline constexpr size_t kMaxStatusMessageBytes = 1024;

// The one conversion from the core's statuses to gRPC's (messages cut to
// kMaxStatusMessageBytes).
grpc::Status ToGrpcStatus(const absl::Status& status);

struct ServerOptions {
  // "host:port"; port 0 picks a free port (see LogpServer::port()).
  std::string listen_address = "0.0.0.0:50051";
  // Largest request or response message (default 64 MiB).
  int max_message_bytes = 64 << 20;
};

class LogpServer {
 public:
  // `core` must outlive the server. UNAVAILABLE if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<LogpServer>> Start(Core* core,
                                                           const ServerOptions& options);
  ~LogpServer();

  int port() const { return port_; }
  // An in-process channel to this server (for tests).
  std::shared_ptr<grpc::Channel> InProcessChannel();
  // Graceful shutdown: marks the health service NOT_SERVING, stops training (running jobs stay
  // queued), refuses new calls, lets calls in flight finish for up to `grace`, then cancels them.
  void Shutdown(absl::Duration grace);

 private:
  struct Services;
  LogpServer() = default;
  Core* core_ = nullptr;
  int port_ = 0;
  std::unique_ptr<Services> services_;
  std::unique_ptr<grpc::Server> server_;
  bool shut_down_ = false;
};

}  // namespace logp

#endif  // LOGP_SERVER_GRPC_SERVER_H_
