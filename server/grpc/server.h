// LogpServer: the gRPC face of a Core — DatasetService, JobService, ModelService, the standard
// health service and server reflection; over TLS or mutual TLS if asked (see transport.h), with
// an optional second, plaintext port that serves only the health service.
#ifndef LOGP_SERVER_GRPC_SERVER_H_
#define LOGP_SERVER_GRPC_SERVER_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/auth/audit.h"
#include "server/auth/credentials.h"
#include "server/core/core.h"
#include "server/grpc/transport.h"

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
  // TLS on listen_address (default: none, plaintext). See TlsOptions.
  TlsOptions tls;
  // If set, "host:port" of a second port, always plaintext, that serves only the standard
  // health service, whose status follows the main port's (SERVING once started, NOT_SERVING
  // from Drain on): for probes that cannot present a client certificate. Port 0 picks a free
  // port (see health_port()). Default: none.
  std::string health_listen_address;
  // gRPC's sync server: threads kept polling for new calls between calls (the main port). 0:
  // gRPC's defaults (1 and 2), under which a burst of concurrent calls starts a thread for each
  // and ends it after. Larger values keep those threads (fewer thread starts under load).
  int sync_min_pollers = 0;
  int sync_max_pollers = 0;
  // Serve gRPC server reflection on listen_address (default true).
  bool reflection = true;
  // Authentication (see authentication.h): the credentials file, or null for none (every call
  // is the tenant "default" with role admin). Must outlive the server.
  AuthTokensFile* auth_tokens = nullptr;
  // Where the audit records of mutating calls go; null: the log (GlogAuditSink).
  AuditSink* audit = nullptr;
  // Makers of the interceptor factories of the main port (e.g. ServerMetrics::InterceptorFactory),
  // each called once by Start, in order; whatever the factories refer to must outlive the
  // server. Default: none.
  std::vector<
      std::function<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>()>>
      interceptors;
};

class LogpServer {
 public:
  // `core` must outlive the server. UNAVAILABLE if an address cannot be bound; INVALID_ARGUMENT
  // naming the flag and file if the TLS files are incomplete, unreadable or do not match.
  static absl::StatusOr<std::unique_ptr<LogpServer>> Start(Core* core,
                                                           const ServerOptions& options);
  ~LogpServer();

  int port() const { return port_; }
  // The health port's number; 0 without one.
  int health_port() const { return health_ ? health_->port() : 0; }
  // An in-process channel to this server (for tests).
  std::shared_ptr<grpc::Channel> InProcessChannel();
  // Graceful shutdown: Drain(grace), then Close(). Idempotent.
  void Shutdown(absl::Duration grace);
  // Marks the health service NOT_SERVING (on both ports), refuses new calls (UNAVAILABLE), stops
  // training (running jobs checkpoint and stay queued), ends watch streams and stops Score,
  // Evaluate and Sample at their next batch (UNAVAILABLE), and lets the other calls in flight
  // finish for up to `grace`. After it the process may exit at once: running jobs are checkpointed,
  // and a call still in flight leaves no more than a crash would (recovered at the next start).
  void Drain(absl::Duration grace);
  // Closes every connection (after Drain(0) if not drained), cancelling what is left (clients see
  // UNAVAILABLE), and waits for gRPC's handlers to return; it does not wait for clients to close
  // their connections. What can hold it up: a handler in a long scoring batch (it stops at the
  // batch's end), and, under gRPC 1.51, a connection whose client stopped reading in the middle
  // of a stream (its TCP window closed), which closes only once the kernel gives up on it (gRPC
  // sets a 20 s TCP user timeout); a handler writing to it returns only then.
  void Close();

  // Calls counted in flight (see InFlightCalls).
  int TEST_CallsInFlight();

 private:
  struct Services;
  LogpServer() = default;
  Core* core_ = nullptr;
  int port_ = 0;
  std::unique_ptr<Services> services_;
  std::unique_ptr<ServerCertificates> certificates_;  // TLS only; outlives server_
  std::unique_ptr<HealthOnlyServer> health_;          // with a health port only
  std::unique_ptr<grpc::Server> server_;
  bool drained_ = false;
  bool closed_ = false;
};

}  // namespace logp

#endif  // LOGP_SERVER_GRPC_SERVER_H_
