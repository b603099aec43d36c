#include "client/connection_flags.h"

#include <cstdlib>
#include <optional>
#include <string>

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, load_balancing, "",
          "How calls spread over the servers --server stands for: round_robin or pick_first "
          "(default: round_robin for a list of addresses, pick_first for one name; a dns:/// name "
          "of several replicas wants round_robin)");

ABSL_FLAG(bool, tls, false,
          "Connect over TLS (implied by any --tls_* flag); without --tls_ca_file the server's "
          "certificate must chain to one of the system's CAs");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM CA certificates the server's certificate must chain to (turns TLS on)");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM client certificate, for servers that require one (with --tls_key_file)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name the server's certificate must carry, if not the host of --server");
ABSL_FLAG(double, rpc_timeout_seconds, 60,
          "Deadline of each unary call (Evaluate of a large set under a slow model needs more); "
          "0: none");
ABSL_FLAG(std::optional<std::string>, token, std::nullopt,
          "Bearer token sent with every call (default: the environment variable LOGP_TOKEN); "
          "never printed");

namespace logp {

ClientOptions ConnectionOptionsFromFlags() {
  ClientOptions options;
  options.load_balancing = absl::GetFlag(FLAGS_load_balancing);
  const double timeout = absl::GetFlag(FLAGS_rpc_timeout_seconds);
  options.rpc_timeout = timeout > 0 ? absl::Seconds(timeout) : absl::InfiniteDuration();
  options.use_tls = absl::GetFlag(FLAGS_tls);
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  if (const std::optional<std::string> token = absl::GetFlag(FLAGS_token); token.has_value()) {
    options.token = *token;
  } else if (const char* env = std::getenv("LOGP_TOKEN"); env != nullptr) {
    options.token = env;
  }
  return options;
}

}  // namespace logp
