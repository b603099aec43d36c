#include "server/http/http_server.h"

#include <glog/logging.h>
#include <httplib.h>

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/grpc/server.h"
#include "server/http/rest_gateway.h"

namespace logp {
namespace {

// Splits "host:port" / "[v6]:port".
absl::Status SplitAddress(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), port) ||
      *port < 0 || *port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http_listen: '", address, "' is not HOST:PORT"));
  }
  *host = address.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  if (host->empty()) *host = "0.0.0.0";
  return absl::OkStatus();
}

// /metrics: with tokens, an admin's only.
grpc::Status AdmitScrape(AuthTokensFile* tokens, const httplib::Request& req) {
  if (tokens == nullptr) return grpc::Status::OK;
  std::optional<std::string_view> header;
  const auto range = req.headers.equal_range("Authorization");
  if (std::distance(range.first, range.second) > 1) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "more than one authorization header");
  }
  std::string value;
  if (range.first != range.second) {
    value = range.first->second;
    header = value;
  }
  absl::StatusOr<Principal> who = tokens->Authenticate(header, {});
  if (!who.ok()) return ToGrpcStatus(who.status());
  if (who->role != Role::kAdmin) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        "/metrics shows every tenant's figures: it needs the admin role");
  }
  return grpc::Status::OK;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    const HttpOptions& options, std::shared_ptr<grpc::Channel> channel) {
  std::string host;
  int port = 0;
  if (absl::Status split = SplitAddress(options.listen_address, &host, &port); !split.ok()) {
    return split;
  }
  std::unique_ptr<HttpServer> s(new HttpServer());
  if (options.tls.enabled()) {
    if (auto material = ReadTlsMaterial(options.tls); !material.ok()) return material.status();
    auto tls = std::make_unique<httplib::SSLServer>(
        options.tls.cert_file.c_str(), options.tls.key_file.c_str(),
        options.tls.mutual() ? options.tls.client_ca_file.c_str() : nullptr);
    if (!tls->is_valid()) {
      return absl::InvalidArgumentError(
          "the HTTP port cannot load --tls_cert_file / --tls_key_file");
    }
    s->server_ = std::move(tls);
  } else {
    s->server_ = std::make_unique<httplib::Server>();
  }
  httplib::Server& server = *s->server_;
  const int threads = std::max(2, options.threads);
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server.set_payload_max_length(options.max_body_bytes);
  server.set_keep_alive_timeout(2);
  s->gateway_ = std::make_unique<RestGateway>(std::move(channel));
  s->gateway_->Register(&server);
  if (options.metrics) {
    server.Get("/metrics", [tokens = options.auth_tokens, metrics = options.metrics](
                               const httplib::Request& req, httplib::Response& res) {
      if (grpc::Status admitted = AdmitScrape(tokens, req); !admitted.ok()) {
        ReplyError(admitted, &res);
        return;
      }
      res.set_content(metrics(), "text/plain; version=0.0.4; charset=utf-8");
    });
  }
  if (options.static_files) {
    server.Get(R"(/|/[A-Za-z0-9_./-]*)", [files = options.static_files](const httplib::Request& req,
                                                                        httplib::Response& res) {
      std::optional<StaticFile> file = files(req.path);
      if (!file.has_value() || req.path.find("..") != std::string::npos) {
        ReplyError(grpc::Status(grpc::StatusCode::NOT_FOUND, "no such page: " + req.path), &res);
        return;
      }
      res.set_header("Cache-Control", "no-cache");
      res.set_content(std::string(file->body), std::string(file->content_type));
    });
  }
  server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler's own error
    const grpc::StatusCode code = res.status == 404   ? grpc::StatusCode::NOT_FOUND
                                  : res.status == 413 ? grpc::StatusCode::RESOURCE_EXHAUSTED
                                  : res.status == 405 ? grpc::StatusCode::UNIMPLEMENTED
                                  : res.status < 500  ? grpc::StatusCode::INVALID_ARGUMENT
                                                      : grpc::StatusCode::INTERNAL;
    const int http = res.status;
    ReplyError(grpc::Status(code, absl::StrCat("HTTP ", http, " for ", req.method, " ", req.path)),
               &res);
    res.status = http;
  });
  s->port_ =
      port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (s->port_ <= 0) {
    return absl::UnavailableError("cannot listen on " + options.listen_address + " (HTTP)");
  }
  s->thread_ = std::thread([&server] { server.listen_after_bind(); });
  return s;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (stopped_ || server_ == nullptr) return;
  stopped_ = true;
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace logp
