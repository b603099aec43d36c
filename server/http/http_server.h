// HttpServer: logpd's HTTP port (--http_listen): the REST/JSON gateway (rest_gateway.h), the
// Prometheus scrape endpoint /metrics, and the dashboard's static files, over TLS when the gRPC
// port has it. One thread per connection from a pool (event streams hold theirs while open).
//
// Authentication: the REST calls are gRPC calls and authenticate as those do (the Authorization
// header). /metrics, when tokens are configured, needs a token of role admin (it shows every
// tenant's figures): 401 without a valid one, 403 for another role. The dashboard's files are
// served to anyone (they hold no data; the page asks for a token when its calls answer 401).
// With mutual TLS, clients must present a certificate signed by the client CA (verified by
// OpenSSL), but calls authenticate by token: certificate identities (cert: lines) are not mapped
// on the HTTP port. Unlike the gRPC port's, the HTTP port's certificate files are read once, at
// start.
#ifndef LOGP_SERVER_HTTP_HTTP_SERVER_H_
#define LOGP_SERVER_HTTP_HTTP_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"
#include "server/auth/credentials.h"
#include "server/grpc/transport.h"

namespace httplib {
class Server;
}

namespace logp {

class RestGateway;

// A static file: its media type and contents.
struct StaticFile {
  std::string_view content_type;
  std::string_view body;
};

struct HttpOptions {
  // "host:port" ("[::]:port" for IPv6); port 0 picks a free one (see HttpServer::port()).
  std::string listen_address;
  // As the gRPC port's (the same files): empty, plaintext.
  TlsOptions tls;
  // Connections served at once (each open event stream holds one).
  int threads = 16;
  // Largest request body (bytes).
  size_t max_body_bytes = size_t{64} << 20;
  // The credentials of the gRPC port, for /metrics (null: no authentication).
  AuthTokensFile* auth_tokens = nullptr;
  // The text of /metrics (Prometheus exposition format); null: no /metrics (404).
  std::function<std::string()> metrics;
  // The static file at a path ("/", "/assets/app.js"), or nullopt; null: none.
  std::function<std::optional<StaticFile>(std::string_view path)> static_files;
};

class HttpServer {
 public:
  // Serves `channel` (an in-process channel to the gRPC server, which must outlive this) and
  // the options' endpoints. UNAVAILABLE if the address cannot be bound, INVALID_ARGUMENT for a
  // bad address or TLS files that do not load.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpOptions& options,
                                                           std::shared_ptr<grpc::Channel> channel);
  ~HttpServer();  // Stop()

  int port() const { return port_; }
  // Stops accepting, ends the connections when their requests end (event streams end when the
  // gRPC server drains), joins the threads. Idempotent.
  void Stop();

 private:
  HttpServer() = default;
  std::unique_ptr<RestGateway> gateway_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  bool stopped_ = false;
};

}  // namespace logp

#endif  // LOGP_SERVER_HTTP_HTTP_SERVER_H_
