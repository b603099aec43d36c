#include "server/grpc/transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <glog/logging.h>
#include <grpc/grpc_security_constants.h>
#include <grpcpp/impl/server_builder_plugin.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace {

// The flags TlsOptions' fields are set from, for error messages.
constexpr char kCertFlag[] = "--tls_cert_file";
constexpr char kKeyFlag[] = "--tls_key_file";
constexpr char kClientCaFlag[] = "--tls_client_ca_file";

// The private copy's file names, behind the "current" link.
constexpr char kCurrent[] = "current";
constexpr char kStagedKey[] = "key.pem";
constexpr char kStagedCert[] = "cert.pem";
constexpr char kStagedClientCa[] = "client_ca.pem";

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

// The reason of OpenSSL's most recent error on this thread (and clears the queue).
std::string OpenSslReason() {
  const unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (e == 0) return "no reason given";
  const char* reason = ERR_reason_error_string(e);
  return reason != nullptr ? reason : absl::StrCat("OpenSSL error ", e);
}

// Never asks for a pass phrase (OpenSSL's default would prompt on the terminal).
int NoPassphrase(char*, int, int, void*) { return 0; }

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

BioPtr MemoryBio(const std::string& bytes) {
  return BioPtr(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

absl::StatusOr<std::string> ReadFile(const char* flag, const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return Invalid(absl::StrCat("cannot read ", flag, " ", path, ": ", std::strerror(errno)));
  }
  std::string bytes;
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int read_errno = errno;
  std::fclose(f);
  if (failed) {
    return Invalid(absl::StrCat("cannot read ", flag, " ", path, ": ", std::strerror(read_errno)));
  }
  return bytes;
}

// The certificates of a PEM file, in order; every PEM certificate block must parse, and there
// must be at least one.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const char* flag, const std::string& path,
                                                       const std::string& pem) {
  ERR_clear_error();
  BioPtr bio = MemoryBio(pem);
  std::vector<X509Ptr> certs;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr)) {
    certs.emplace_back(x);
  }
  // The loop ends at the end of the input (no further PEM block) or at a block that does not
  // parse.
  const unsigned long e = ERR_peek_last_error();
  if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
    ERR_clear_error();
    if (certs.empty()) {
      return Invalid(absl::StrCat(flag, " ", path, " holds no PEM certificate"));
    }
    return certs;
  }
  return Invalid(absl::StrCat(flag, " ", path, " does not parse as PEM certificates (",
                              certs.size(), " read before the error): ", OpenSslReason()));
}

// "CN=localhost, valid until Dec  1 13:42:23 2036 GMT", for the log.
std::string Describe(X509* cert) {
  char subject[256];
  X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
  BioPtr bio(BIO_new(BIO_s_mem()));
  ASN1_TIME_print(bio.get(), X509_get0_notAfter(cert));
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return absl::StrCat(subject, ", valid until ", std::string(data, std::max(0L, len)));
}

absl::Status WriteNewFile(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("create ", path, ": ", std::strerror(errno)));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      return absl::InternalError(absl::StrCat("write ", path, ": ", std::strerror(e)));
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) {
    return absl::InternalError(absl::StrCat("close ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status SetModificationTime(const std::string& path, int64_t seconds) {
  struct timespec times[2];
  times[0].tv_sec = times[1].tv_sec = static_cast<time_t>(seconds);
  times[0].tv_nsec = times[1].tv_nsec = 0;
  if (::utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) {
    return absl::InternalError(absl::StrCat("utimensat ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// Where the private copies go: memory if the machine offers it (/dev/shm), else $TMPDIR, else
// /tmp.
std::string StagingParent() {
  const char* const candidates[] = {"/dev/shm", std::getenv("TMPDIR"), "/tmp"};
  for (const char* dir : candidates) {
    if (dir == nullptr || *dir == '\0') continue;
    struct stat st;
    if (::stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && ::access(dir, W_OK | X_OK) == 0) {
      return dir;
    }
  }
  return "/tmp";
}

// Removes the private copies left by logpd processes of this user that died without removing
// theirs ("logpd-tls-PID-XXXXXX" whose PID no longer runs).
void RemoveStaleCopies(const std::string& parent) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(parent, ec)) {
    const std::string name = entry.path().filename().string();
    if (!absl::StartsWith(name, "logpd-tls-")) continue;
    const std::string rest = name.substr(std::strlen("logpd-tls-"));
    int pid = 0;
    if (!absl::SimpleAtoi(rest.substr(0, rest.find('-')), &pid) || pid <= 0) continue;
    struct stat st;
    if (::lstat(entry.path().c_str(), &st) != 0 || st.st_uid != ::geteuid()) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::filesystem::remove_all(entry.path(), ec);
  }
}

// Takes the reflection plugin out of one ServerBuilder.
class WithoutReflectionOption final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->erase(std::remove_if(plugins->begin(), plugins->end(),
                                  [](const std::unique_ptr<grpc::ServerBuilderPlugin>& p) {
                                    return p->name() == "proto_server_reflection";
                                  }),
                   plugins->end());
  }
};

}  // namespace

absl::StatusOr<TlsMaterial> ReadTlsMaterial(const TlsOptions& o) {
  if (!o.cert_file.empty() && o.key_file.empty()) {
    return Invalid(absl::StrCat(kCertFlag, " is set but ", kKeyFlag,
                                " is not: TLS needs the certificate's private key too"));
  }
  if (o.cert_file.empty() && !o.key_file.empty()) {
    return Invalid(absl::StrCat(kKeyFlag, " is set but ", kCertFlag,
                                " is not: TLS needs the certificate of that key too"));
  }
  if (o.cert_file.empty() && !o.client_ca_file.empty()) {
    return Invalid(absl::StrCat(kClientCaFlag, " needs ", kCertFlag, " and ", kKeyFlag,
                                ": client certificates are checked over TLS only"));
  }
  if (o.cert_file.empty()) return Invalid("no TLS certificate given");
  if (o.refresh_seconds < 1) {
    return Invalid(
        absl::StrCat("TLS refresh interval must be at least 1 s, not ", o.refresh_seconds));
  }
  TlsMaterial m;
  ASSIGN_OR_RETURN(m.cert_chain, ReadFile(kCertFlag, o.cert_file));
  ASSIGN_OR_RETURN(m.private_key, ReadFile(kKeyFlag, o.key_file));
  ASSIGN_OR_RETURN(std::vector<X509Ptr> chain,
                   ParseCertificates(kCertFlag, o.cert_file, m.cert_chain));
  ERR_clear_error();
  BioPtr bio = MemoryBio(m.private_key);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    return Invalid(absl::StrCat(kKeyFlag, " ", o.key_file,
                                " holds no PEM private key (an encrypted key is not supported; "
                                "OpenSSL says: ",
                                OpenSslReason(), ")"));
  }
  if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
    ERR_clear_error();
    return Invalid(absl::StrCat(kKeyFlag, " ", o.key_file, " is not the key of the certificate in ",
                                kCertFlag, " ", o.cert_file, " (", Describe(chain.front().get()),
                                ")"));
  }
  if (o.mutual()) {
    ASSIGN_OR_RETURN(m.client_ca, ReadFile(kClientCaFlag, o.client_ca_file));
    RETURN_IF_ERROR(ParseCertificates(kClientCaFlag, o.client_ca_file, m.client_ca).status());
  }
  return m;
}

absl::StatusOr<std::unique_ptr<ServerCertificates>> ServerCertificates::Load(
    const TlsOptions& options) {
  ASSIGN_OR_RETURN(TlsMaterial material, ReadTlsMaterial(options));
  std::unique_ptr<ServerCertificates> c(new ServerCertificates());
  c->options_ = options;
  const std::string parent = StagingParent();
  RemoveStaleCopies(parent);
  std::string tmpl = absl::StrCat(parent, "/logpd-tls-", ::getpid(), "-XXXXXX");
  if (::mkdtemp(tmpl.data()) == nullptr) {  // mode 0700
    return absl::InternalError(
        absl::StrCat("cannot create a private directory in ", parent, ": ", std::strerror(errno)));
  }
  c->dir_ = tmpl;
  c->first_mtime_ = absl::ToUnixSeconds(absl::Now());
  RETURN_IF_ERROR(c->Stage(material));
  c->staged_ = std::move(material);

  const std::string current = absl::StrCat(c->dir_, "/", kCurrent, "/");
  c->provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      current + kStagedKey, current + kStagedCert,
      options.mutual() ? current + kStagedClientCa : std::string(),
      static_cast<unsigned int>(options.refresh_seconds));
  grpc::experimental::TlsServerCredentialsOptions tls(c->provider_);
  tls.watch_identity_key_cert_pairs();
  if (options.mutual()) {
    tls.watch_root_certs();
    tls.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    tls.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  c->credentials_ = grpc::experimental::TlsServerCredentials(tls);
  if (c->credentials_ == nullptr) return absl::InternalError("gRPC refused the TLS options");
  c->watcher_ = std::thread([raw = c.get()] { raw->Watch(); });
  return c;
}

ServerCertificates::~ServerCertificates() {
  stop_.Notify();
  if (watcher_.joinable()) watcher_.join();
  // The provider may read the copy until the server that uses it is gone; its owner destroys
  // the server first.
  provider_.reset();
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

int ServerCertificates::TEST_generation() const { return generation_.load(); }

absl::Status ServerCertificates::Stage(const TlsMaterial& m) {
  const int gen = generation_.load() + 1;
  const std::string name = absl::StrCat("g", gen);
  const std::string dir = absl::StrCat(dir_, "/", name);
  if (::mkdir(dir.c_str(), 0700) != 0) {
    return absl::InternalError(absl::StrCat("mkdir ", dir, ": ", std::strerror(errno)));
  }
  std::vector<std::pair<const char*, const std::string*>> files = {{kStagedKey, &m.private_key},
                                                                   {kStagedCert, &m.cert_chain}};
  if (options_.mutual()) files.push_back({kStagedClientCa, &m.client_ca});
  for (const auto& [file, bytes] : files) {
    const std::string path = absl::StrCat(dir, "/", file);
    RETURN_IF_ERROR(WriteNewFile(path, *bytes));
    // Distinct from every earlier set's times, so that gRPC's reader, which compares a file's
    // modification time (in seconds) before and after it reads, notices the link changing
    // under it and reads again.
    RETURN_IF_ERROR(SetModificationTime(path, first_mtime_ + gen));
  }
  const std::string link = absl::StrCat(dir_, "/", kCurrent);
  const std::string tmp = link + ".tmp";
  ::unlink(tmp.c_str());
  if (::symlink(name.c_str(), tmp.c_str()) != 0 || ::rename(tmp.c_str(), link.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("link ", link, ": ", std::strerror(errno)));
  }
  generation_.store(gen);
  // The set before this one stays a little: a reader may still be in it.
  if (gen >= 3) {
    std::error_code ignored;
    std::filesystem::remove_all(absl::StrCat(dir_, "/g", gen - 2), ignored);
  }
  BioPtr bio = MemoryBio(m.cert_chain);
  X509Ptr leaf(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
  LOG(INFO) << "TLS: " << (gen == 1 ? "serving" : "new connections now get") << " certificate "
            << (leaf ? Describe(leaf.get()) : "?") << " from " << options_.cert_file
            << (options_.mutual() ? ", client certificates required, CAs from " : "")
            << (options_.mutual() ? options_.client_ca_file : "");
  return absl::OkStatus();
}

void ServerCertificates::Watch() {
  const absl::Duration interval = absl::Seconds(options_.refresh_seconds);
  while (!stop_.WaitForNotificationWithTimeout(interval)) {
    absl::StatusOr<TlsMaterial> m = ReadTlsMaterial(options_);
    if (!m.ok()) {
      const std::string error(m.status().message());
      if (error != last_error_) {
        LOG(WARNING) << "TLS: files not taken (yet): " << error
                     << "; new connections keep the certificate in use";
        last_error_ = error;
      }
      continue;
    }
    last_error_.clear();
    if (*m == staged_) continue;
    if (absl::Status s = Stage(*m); !s.ok()) {
      LOG(ERROR) << "TLS: cannot copy the new files: " << s << "; keeping the ones in use";
      continue;
    }
    staged_ = *std::move(m);
  }
}

std::vector<std::string> PeerCertificateIdentities(const grpc::AuthContext& context) {
  std::vector<std::string> ids;
  if (!context.IsPeerAuthenticated()) return ids;
  for (const char* property : {GRPC_X509_SAN_PROPERTY_NAME, GRPC_X509_CN_PROPERTY_NAME}) {
    for (const grpc::string_ref& v : context.FindPropertyValues(property)) {
      if (!v.empty()) ids.emplace_back(v.data(), v.size());
    }
    if (!ids.empty()) break;  // subject alternative names, when there are any, else the CN
  }
  return ids;
}

std::unique_ptr<grpc::ServerBuilderOption> WithoutServerReflection() {
  return std::make_unique<WithoutReflectionOption>();
}

absl::StatusOr<std::unique_ptr<HealthOnlyServer>> HealthOnlyServer::Start(
    const std::string& address) {
  std::unique_ptr<HealthOnlyServer> h(new HealthOnlyServer());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &h->port_);
  builder.SetOption(WithoutServerReflection());
  builder.RegisterService(&h->health_);
  h->server_ = builder.BuildAndStart();
  if (h->server_ == nullptr || h->port_ == 0) {
    return absl::UnavailableError("cannot listen on " + address + " (--health_listen)");
  }
  h->SetServing(false);
  return h;
}

HealthOnlyServer::~HealthOnlyServer() { Shutdown(); }

void HealthOnlyServer::SetServing(bool serving) {
  if (server_ != nullptr && !shut_down_) {
    health_.SetServing(serving);
  }
}

void HealthOnlyServer::Shutdown() {
  if (server_ == nullptr || shut_down_) return;
  shut_down_ = true;
  health_.Shutdown();  // ends its Watch streams, which the server would wait for
  server_->Shutdown(std::chrono::system_clock::now());
}

bool IsLoopbackListenAddress(const std::string& listen_address) {
  const absl::string_view a = listen_address;
  if (absl::StartsWith(a, "unix:") || absl::StartsWith(a, "unix-abstract:")) return true;
  std::string host;
  if (absl::StartsWith(a, "[")) {
    const size_t end = a.find(']');
    if (end == absl::string_view::npos) return false;
    host = std::string(a.substr(1, end - 1));
  } else {
    const size_t colon = a.rfind(':');
    host = std::string(colon == absl::string_view::npos ? a : a.substr(0, colon));
  }
  if (host.empty()) return false;  // every interface
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

std::vector<std::string> ExposureWarnings(const std::string& listen_address, bool tls_enabled,
                                          bool auth_enabled) {
  if (IsLoopbackListenAddress(listen_address) || (tls_enabled && auth_enabled)) return {};
  const std::string rule(78, '*');
  std::vector<std::string> lines = {rule};
  const std::string where = absl::StrCat("WARNING: logpd listens on ", listen_address,
                                         ", which other machines can reach,");
  if (!tls_enabled && !auth_enabled) {
    lines.push_back(where + " in plaintext and without authentication:");
    lines.push_back(
        "anyone who can connect can read, change and delete every dataset, job and model, and "
        "anyone on the network path can read and alter the traffic.");
  } else if (!tls_enabled) {
    lines.push_back(where + " in plaintext:");
    lines.push_back(
        "credentials and records cross the network unencrypted: anyone on the path can read "
        "them, alter them and replay the credentials.");
  } else {
    lines.push_back(where + " without authentication:");
    lines.push_back(
        "anyone who can connect can read, change and delete every dataset, job and model.");
  }
  if (!tls_enabled) {
    lines.push_back(
        "Serve TLS: --tls_cert_file=CERT.pem --tls_key_file=KEY.pem (add "
        "--tls_client_ca_file=CA.pem to require client certificates).");
  }
  if (!auth_enabled) {
    lines.push_back(
        "Authenticate clients: --auth_tokens_file=FILE, or client certificates with "
        "--tls_client_ca_file=CA.pem.");
  }
  lines.push_back("Or listen on this machine only: --listen=127.0.0.1:PORT.");
  lines.push_back(rule);
  return lines;
}

}  // namespace logp
