// How logpd is reached: TLS and mutual TLS on the main port (certificates re-read when their files
// change), the identities of a verified client certificate, a plaintext port that serves only the
// health service, server reflection off, and the warnings for an exposed plaintext port.
#ifndef LOGP_SERVER_GRPC_TRANSPORT_H_
#define LOGP_SERVER_GRPC_TRANSPORT_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/security/tls_certificate_provider.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "server/grpc/health_service.h"

namespace logp {

// TLS on the main port. All files empty (the default): plaintext. Each field's error messages
// name it by its logpd flag (--tls_cert_file, --tls_key_file, --tls_client_ca_file).
struct TlsOptions {
  // PEM certificate chain, the server's certificate first. With key_file: TLS.
  std::string cert_file;
  // PEM private key of that certificate, unencrypted.
  std::string key_file;
  // PEM bundle of the CAs that sign client certificates. Set: mutual TLS, every client must
  // present a certificate that chains to one of them and is within its validity period, or its
  // handshake fails (clients see UNAVAILABLE). Needs cert_file and key_file.
  std::string client_ca_file;
  // How often the three files are read again (default every second). A set of files that
  // reads, parses and matches (key and certificate) and differs from the one in use replaces it
  // for new connections within about 2 * refresh_seconds; open connections keep theirs. One
  // that does not (a rewrite in progress, a key that does not match its certificate, a file
  // removed) is logged once and ignored: the last good set stays in use. See ServerCertificates.
  int refresh_seconds = 1;

  bool enabled() const {
    return !cert_file.empty() || !key_file.empty() || !client_ca_file.empty();
  }
  bool mutual() const { return !client_ca_file.empty(); }
};

// The contents of a TlsOptions' files, checked: every file is read; each certificate file holds
// one or more PEM certificates, every block of them whole (a truncated block fails); the key
// file holds a PEM private key that matches the first certificate (X509_check_private_key).
struct TlsMaterial {
  std::string cert_chain;
  std::string private_key;
  std::string client_ca;  // empty without mutual TLS

  bool operator==(const TlsMaterial& o) const {
    return cert_chain == o.cert_chain && private_key == o.private_key && client_ca == o.client_ca;
  }
};

// INVALID_ARGUMENT, naming the flag and the file, when a combination is incomplete (a
// certificate without a key or the reverse, a client CA without both), a file cannot be read,
// does not parse, or the key does not match the certificate.
absl::StatusOr<TlsMaterial> ReadTlsMaterial(const TlsOptions& options);

// The server's TLS credentials and what keeps them current.
//
// gRPC's FileWatcherCertificateProvider (1.51) re-reads its files every interval and hands
// whatever it read to the handshaker without checking it: a key and a certificate that do not
// match (one file rewritten before the other) or a half-written file make every new handshake
// fail until the files are right again (only a file it cannot read keeps the previous pair). So
// the provider does not watch the configured files: it watches a private copy (a directory
// that only the server's user can read, under /dev/shm, else $TMPDIR, else /tmp, removed at
// shutdown) into which a thread of this class puts each new set that ReadTlsMaterial accepts,
// in a fresh directory behind one symbolic link renamed atomically, with modification times
// that differ from the previous set's (the provider rereads when a file's time changes while
// it reads). A set it refuses is logged once and the last good one stays in use.
//
// Thread-safe. The credentials stay valid as long as this object.
class ServerCertificates {
 public:
  // Checks and copies the files (ReadTlsMaterial's errors), starts the watching thread.
  static absl::StatusOr<std::unique_ptr<ServerCertificates>> Load(const TlsOptions& options);
  ~ServerCertificates();  // stops the thread, removes the private copy

  std::shared_ptr<grpc::ServerCredentials> credentials() const { return credentials_; }
  // Sets of files handed to gRPC so far (1 after Load), and the private copy's directory; for
  // tests.
  int TEST_generation() const;
  const std::string& TEST_copy_dir() const { return dir_; }

 private:
  ServerCertificates() = default;
  absl::Status Stage(const TlsMaterial& material);
  void Watch();

  TlsOptions options_;
  std::string dir_;  // the private copy
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider_;
  std::shared_ptr<grpc::ServerCredentials> credentials_;
  absl::Notification stop_;
  std::thread watcher_;

  // Used by Load, then only by the watching thread.
  TlsMaterial staged_;
  int64_t first_mtime_ = 0;  // the modification time of the first set (seconds)
  std::string last_error_;   // of the last refused read, logged once
  std::atomic<int> generation_{0};
};

// The identities of the client's verified certificate: its subject alternative names (DNS,
// URI, e-mail and IP entries, in the certificate's order) when it has any, else its subject
// common name — gRPC's own choice of the "peer identity" (grpc_ssl_peer_to_auth_context in gRPC
// 1.51's ssl_utils.cc). Empty without a client certificate: a plaintext or in-process call, or a
// TLS connection without mutual TLS. logpd never accepts a client certificate it has not
// verified (it either requires and verifies one, or does not ask for any), so whatever this
// returns was verified against --tls_client_ca_file.
std::vector<std::string> PeerCertificateIdentities(const grpc::AuthContext& context);

// A ServerBuilder option that leaves out the server reflection plugin. libgrpc++_reflection
// registers that plugin for every ServerBuilder of the process as soon as it is loaded;
// ServerBuilder offers no other way to take it off one server.
std::unique_ptr<grpc::ServerBuilderOption> WithoutServerReflection();

// A plaintext server of the standard health service (grpc.health.v1.Health) alone: no logp
// service, no reflection (every other method is UNIMPLEMENTED). For probes that cannot speak
// TLS or present client certificates. NOT_SERVING until SetServing(true).
class HealthOnlyServer {
 public:
  // UNAVAILABLE if `address` ("host:port", port 0: any free one) cannot be bound.
  static absl::StatusOr<std::unique_ptr<HealthOnlyServer>> Start(const std::string& address);
  ~HealthOnlyServer();  // Shutdown()

  int port() const { return port_; }
  void SetServing(bool serving);
  // Closes the port at once. Idempotent.
  void Shutdown();

 private:
  HealthOnlyServer() = default;
  // Every other method is UNIMPLEMENTED (gRPC's own answer for a method no service serves).
  HealthService health_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

// True for a listen address reachable only from this machine: a host in 127.0.0.0/8, ::1 (or
// its IPv4-mapped 127.x form), "localhost", or a unix: socket. "0.0.0.0", "[::]", an empty host
// and any other host are exposed.
bool IsLoopbackListenAddress(const std::string& listen_address);

// The lines of the warning logpd logs at start when `listen_address` is exposed (see
// IsLoopbackListenAddress) and served without TLS or without authentication (token
// authentication or client certificates): what the exposure means and which flags close it.
// Empty when there is nothing to warn about.
std::vector<std::string> ExposureWarnings(const std::string& listen_address, bool tls_enabled,
                                          bool auth_enabled);

}  // namespace logp

#endif  // LOGP_SERVER_GRPC_TRANSPORT_H_
