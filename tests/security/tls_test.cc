// Transport security end to end: an in-process logpd (Core + LogpServer on 127.0.0.1:0) over TLS
// and mutual TLS, driven by the C++ client, with certificates that tests/security/
// make_test_certs.sh makes with Debian's openssl for each run. Also: certificate reload without a
// restart, the plaintext health port, reflection off, the peer identities of client
// certificates, the bearer token's metadata, and the exposure warnings.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "proto/cc/records.h"
#include "server/auth/credentials.h"
#include "server/core/core.h"
#include "server/grpc/server.h"
#include "server/grpc/transport.h"
#include "tests/integration/test_catalog.h"
#include "tests/server/test_util.h"

namespace logp {
namespace {

using absl::StatusCode;
using Strings = std::vector<std::string>;

// How long a test waits for reloaded certificates to be served: ServerCertificates reads the
// files every second, gRPC's watcher reads its copy every second.
constexpr absl::Duration kReloadWait = absl::Seconds(8);

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Overwrites `path` in place (truncate, then write), as a careless rotation script would.
void Overwrite(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// One unary call of `method` with raw request bytes over `channel`.
struct RawReply {
  grpc::Status status;
  std::string response;
};
RawReply RawUnary(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                  const std::string& request) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice slice(request);
  grpc::ByteBuffer req(&slice, 1), resp;
  RawReply reply;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp, [&](grpc::Status s) {
    std::lock_guard<std::mutex> lock(mu);
    reply.status = std::move(s);
    done = true;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  if (reply.status.ok()) {
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(resp.Dump(&slices).ok());
    for (const auto& s : slices)
      reply.response.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return reply;
}

std::shared_ptr<grpc::Channel> Plaintext(int port) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                             grpc::InsecureChannelCredentials());
}

constexpr char kHealthCheck[] = "/grpc.health.v1.Health/Check";
constexpr char kReflection[] = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
const std::string kServing("\x08\x01", 2);     // HealthCheckResponse{status: SERVING}
const std::string kNotServing("\x08\x02", 2);  // HealthCheckResponse{status: NOT_SERVING}
// ServerReflectionRequest{list_services: ""}
const std::string kListServices("\x3a\x00", 2);

// The certificates of make_test_certs.sh, made once for the whole test binary.
class Certificates {
 public:
  static const Certificates& Get() {
    static const Certificates certs;  // removed at exit
    return certs;
  }
  std::string operator()(const std::string& name) const { return dir_.path() + "/" + name; }

 private:
  Certificates() {
    const std::string cmd = std::string("bash ") + LOGP_SOURCE_DIR +
                            "/tests/security/make_test_certs.sh " + dir_.path() + " >/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  TempDir dir_;
};

std::string Cert(const std::string& name) { return Certificates::Get()(name); }

TlsOptions ServerTls(bool mutual = false) {
  TlsOptions tls;
  tls.cert_file = Cert("server.pem");
  tls.key_file = Cert("server.key");
  if (mutual) tls.client_ca_file = Cert("ca.pem");
  return tls;
}

// Client options trusting CA `ca` ("ca.pem"), with client certificate `client` ("client-san")
// if given; one attempt per call, so that refusals return at once.
ClientOptions ClientTls(const std::string& ca, const std::string& client = "") {
  ClientOptions o;
  o.tls_ca_file = Cert(ca);
  if (!client.empty()) {
    o.tls_cert_file = Cert(client + ".pem");
    o.tls_key_file = Cert(client + ".key");
  }
  o.max_attempts = 1;
  o.rpc_timeout = absl::Seconds(10);
  return o;
}

ClientOptions ClientPlain() {
  ClientOptions o;
  o.max_attempts = 1;
  o.rpc_timeout = absl::Seconds(10);
  return o;
}

class TlsTest : public ::testing::Test {
 protected:
  void TearDown() override { StopServer(); }

  // A Core on a fresh data directory and a LogpServer on 127.0.0.1:0 with `options`.
  void StartServer(ServerOptions options) {
    auto core = OpenCore();
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = std::move(*core);
    options.listen_address = "127.0.0.1:0";
    auto server = LogpServer::Start(core_.get(), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  void StopServer() {
    if (server_) server_->Shutdown(absl::Seconds(1));
    server_.reset();
    core_.reset();
    catalog_.Close();
  }
  // A Core on the fixture's data directory (and catalogue, tests/integration/test_catalog.h).
  absl::StatusOr<std::unique_ptr<Core>> OpenCore() {
    CoreOptions co;
    co.data_dir = data_.path() + "/data";
    absl::StatusOr<Catalog*> catalog = catalog_.Open(co.data_dir);
    if (!catalog.ok()) return catalog.status();
    co.catalog = *catalog;
    return Core::Open(co);
  }
  // "127.0.0.1:PORT" (the server certificate names localhost and 127.0.0.1).
  std::string Target() const { return "127.0.0.1:" + std::to_string(server_->port()); }

  // The status of one call (ListDatasets) by a new client with `options`.
  absl::Status CallWith(const ClientOptions& options, const std::string& target = "") {
    auto client = Client::Connect(target.empty() ? Target() : target, options);
    if (!client.ok()) return client.status();
    return (*client)->ListDatasets().status();
  }

  TempDir data_;
  TestCatalog catalog_;  // outlives core_
  std::unique_ptr<Core> core_;
  std::unique_ptr<LogpServer> server_;
};

TEST_F(TlsTest, TlsClientWorks) {
  ServerOptions so;
  so.tls = ServerTls();
  StartServer(so);
  EXPECT_TRUE(Is(CallWith(ClientTls("ca.pem")), StatusCode::kOk));
  // By name: the certificate carries DNS:localhost too.
  EXPECT_TRUE(Is(CallWith(ClientTls("ca.pem"), "localhost:" + std::to_string(server_->port())),
                 StatusCode::kOk));
}

TEST_F(TlsTest, ListOfServersChecksTheFirstAddressesNameUnlessOverridden) {
  ServerOptions so;
  so.tls = ServerTls();
  StartServer(so);
  // The same server twice stands for two replicas; the certificate names 127.0.0.1.
  const std::string list = Target() + "," + Target();
  EXPECT_TRUE(Is(CallWith(ClientTls("ca.pem"), list), StatusCode::kOk));
  ClientOptions named = ClientTls("ca.pem");
  named.tls_server_name = "elsewhere.example";
  EXPECT_TRUE(Is(CallWith(named, list), StatusCode::kUnavailable,
                 "its certificate does not carry the name elsewhere.example"));
}

TEST_F(TlsTest, PlaintextClientOfTlsServerIsToldItMayRequireTls) {
  ServerOptions so;
  so.tls = ServerTls();
  StartServer(so);
  EXPECT_TRUE(Is(CallWith(ClientPlain()), StatusCode::kUnavailable,
                 "the server at " + Target() +
                     " closed the connection during the handshake: it may require TLS"));
  EXPECT_TRUE(Is(CallWith(ClientPlain()), StatusCode::kUnavailable, "--tls_ca_file"));
}

TEST_F(TlsTest, TlsClientOfPlaintextServerIsToldItMayNotServeTls) {
  StartServer(ServerOptions());
  EXPECT_TRUE(Is(CallWith(ClientTls("ca.pem")), StatusCode::kUnavailable,
                 "TLS handshake with " + Target() + " failed: it may not serve TLS"));
  EXPECT_TRUE(Is(CallWith(ClientPlain()), StatusCode::kOk));
}

TEST_F(TlsTest, ServerCertificateMustChainToTheClientsCa) {
  ServerOptions so;
  so.tls = ServerTls();
  StartServer(so);
  EXPECT_TRUE(Is(CallWith(ClientTls("ca2.pem")), StatusCode::kUnavailable,
                 "its certificate is not signed by a trusted CA (--tls_ca_file"));
}

TEST_F(TlsTest, ServerNameOverride) {
  ServerOptions so;
  so.tls = ServerTls();
  StartServer(so);
  ClientOptions named = ClientTls("ca.pem");
  named.tls_server_name = "localhost";  // checked instead of 127.0.0.1
  EXPECT_TRUE(Is(CallWith(named), StatusCode::kOk));
  named.tls_server_name = "elsewhere.example";
  EXPECT_TRUE(Is(CallWith(named), StatusCode::kUnavailable,
                 "its certificate does not carry the name elsewhere.example (--tls_server_name)"));
}

TEST_F(TlsTest, MutualTlsRefusesMissingForeignAndExpiredClientCertificates) {
  ServerOptions so;
  so.tls = ServerTls(/*mutual=*/true);
  StartServer(so);
  EXPECT_TRUE(Is(CallWith(ClientTls("ca.pem")), StatusCode::kUnavailable,
                 "it may require a client certificate (--tls_cert_file and --tls_key_file)"));
  for (const char* refused : {"client-other", "client-expired"}) {
    SCOPED_TRACE(refused);
    EXPECT_TRUE(Is(CallWith(ClientTls("ca.pem", refused)), StatusCode::kUnavailable,
                   "it may refuse the client certificate --tls_cert_file " +
                       Cert(std::string(refused) + ".pem")));
  }
  EXPECT_TRUE(Is(CallWith(ClientPlain()), StatusCode::kUnavailable, "it may require TLS"));
  EXPECT_TRUE(Is(CallWith(ClientTls("ca.pem", "client-san")), StatusCode::kOk));
  EXPECT_TRUE(Is(CallWith(ClientTls("ca.pem", "client-cn")), StatusCode::kOk));
}

// With mutual TLS and a tokens file, a client certificate mapped by a `cert:` line is a
// credential of its own: no token needed. An unmapped certificate passes the handshake but is
// not a credential; a token still wins over the certificate.
TEST_F(TlsTest, MappedClientCertificateAuthenticatesWithoutAToken) {
  const std::string tokens_path = data_.path() + "/tokens";
  std::ofstream(tokens_path) << "cert:team-a-client team-a writer\n"
                             << "reader-b-token team-b reader\n";
  auto tokens = AuthTokensFile::Open(tokens_path, absl::ZeroDuration());
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ServerOptions so;
  so.tls = ServerTls(/*mutual=*/true);
  so.auth_tokens = tokens->get();
  StartServer(so);
  // client-san carries DNS:team-a-client: team-a's writer.
  auto a = Client::Connect(Target(), ClientTls("ca.pem", "client-san"));
  ASSERT_TRUE(a.ok()) << a.status();
  RecordMatrix records = ValueOf(RecordMatrix::Empty(v1::DATA_KIND_BINARY, 2, 2));
  records.rows = 2;
  records.u8 = {0, 1, 1, 0};
  absl::StatusOr<v1::Dataset> ds = (*a)->UploadDataset("mapped", records);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->tenant(), "team-a");
  // client-cn (CN=team-b-client) is mapped to nothing: UNAUTHENTICATED, saying so.
  EXPECT_TRUE(Is(CallWith(ClientTls("ca.pem", "client-cn")), StatusCode::kUnauthenticated,
                 "mapped to no tenant"));
  // A token on top of a mapped certificate decides: team-b's reader sees none of team-a's.
  ClientOptions with_token = ClientTls("ca.pem", "client-san");
  with_token.token = "reader-b-token";
  auto b = Client::Connect(Target(), with_token);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(Is((*b)->GetDataset(ds->id()).status(), StatusCode::kNotFound));
  absl::StatusOr<v1::ListDatasetsResponse> listed = (*b)->ListDatasets();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->datasets_size(), 0);
  EXPECT_TRUE(Is((*b)->UploadDataset("denied", records).status(), StatusCode::kPermissionDenied,
                 "role reader may not call CreateDataset"));
}

TEST_F(TlsTest, StartRefusesBadTlsOptionsNamingTheFlag) {
  auto core = OpenCore();
  ASSERT_TRUE(core.ok()) << core.status();
  ServerOptions so;
  so.listen_address = "127.0.0.1:0";
  so.tls.cert_file = Cert("server.pem");
  so.tls.key_file = Cert("server2.key");
  EXPECT_TRUE(Is(LogpServer::Start(core->get(), so).status(), StatusCode::kInvalidArgument,
                 "--tls_key_file " + Cert("server2.key") + " is not the key of the certificate"));
}

// --- certificate reload ---

// A copy of the server's files that a test may rewrite.
struct LiveFiles {
  TempDir dir;
  std::string cert = dir.path() + "/cert.pem";
  std::string key = dir.path() + "/key.pem";
  LiveFiles() {
    Overwrite(cert, ReadAll(Cert("server.pem")));
    Overwrite(key, ReadAll(Cert("server.key")));
  }
  TlsOptions Options() const {
    TlsOptions tls;
    tls.cert_file = cert;
    tls.key_file = key;
    return tls;
  }
};

// Polls `ok` until it holds or `wait` passes.
bool Eventually(const std::function<bool()>& ok, absl::Duration wait = kReloadWait) {
  const absl::Time deadline = absl::Now() + wait;
  while (true) {
    if (ok()) return true;
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(200));
  }
}

TEST_F(TlsTest, RotatedCertificateIsServedWithoutRestart) {
  LiveFiles live;
  ServerOptions so;
  so.tls = live.Options();
  StartServer(so);
  auto connected = Client::Connect(Target(), ClientTls("ca.pem"));
  ASSERT_TRUE(connected.ok());
  ASSERT_TRUE(Is((*connected)->ListDatasets().status(), StatusCode::kOk));
  EXPECT_TRUE(Is(CallWith(ClientTls("ca2.pem")), StatusCode::kUnavailable));

  // Rewritten in place, the key first: between the two writes they do not match.
  Overwrite(live.key, ReadAll(Cert("server2.key")));
  Overwrite(live.cert, ReadAll(Cert("server2.pem")));
  EXPECT_TRUE(Eventually([&] { return CallWith(ClientTls("ca2.pem")).ok(); }))
      << CallWith(ClientTls("ca2.pem"));
  // New connections get CA 2's certificate; the open connection keeps working.
  EXPECT_TRUE(
      Is(CallWith(ClientTls("ca.pem")), StatusCode::kUnavailable, "not signed by a trusted CA"));
  EXPECT_TRUE(Is((*connected)->ListDatasets().status(), StatusCode::kOk));
}

// gRPC alone would hand a key and a certificate that do not match to its handshaker and fail
// every new handshake; ServerCertificates keeps serving the last pair that matched.
TEST_F(TlsTest, PairThatDoesNotMatchIsNotTakenAndTheLastGoodOneKeepsServing) {
  LiveFiles live;
  ServerOptions so;
  so.tls = live.Options();
  StartServer(so);
  Overwrite(live.cert, ReadAll(Cert("server2.pem")));  // the key is still CA 1's server's
  // For three refresh periods and more, new clients trusting CA 1 still connect.
  const absl::Time until = absl::Now() + absl::Seconds(3.5);
  int calls = 0;
  while (absl::Now() < until) {
    ASSERT_TRUE(Is(CallWith(ClientTls("ca.pem")), StatusCode::kOk)) << "after " << calls;
    ++calls;
    absl::SleepFor(absl::Milliseconds(300));
  }
  // A truncated certificate is not taken either.
  const std::string cert2 = ReadAll(Cert("server2.pem"));
  Overwrite(live.key, ReadAll(Cert("server2.key")));
  Overwrite(live.cert, cert2.substr(0, cert2.size() / 2));
  absl::SleepFor(absl::Seconds(2.5));
  EXPECT_TRUE(Is(CallWith(ClientTls("ca.pem")), StatusCode::kOk));
  // Once both files are right, the new pair is served.
  Overwrite(live.cert, cert2);
  EXPECT_TRUE(Eventually([&] { return CallWith(ClientTls("ca2.pem")).ok(); }));
}

TEST(ServerCertificatesTest, StagesEachNewValidSetOnceAndRemovesItsCopy) {
  LiveFiles live;
  std::string copy_dir;
  {
    auto certs = ServerCertificates::Load(live.Options());
    ASSERT_TRUE(certs.ok()) << certs.status();
    EXPECT_EQ((*certs)->TEST_generation(), 1);
    absl::SleepFor(absl::Seconds(2.5));  // unchanged files: nothing new
    EXPECT_EQ((*certs)->TEST_generation(), 1);
    Overwrite(live.cert, ReadAll(Cert("server2.pem")));  // does not match the key
    absl::SleepFor(absl::Seconds(2.5));
    EXPECT_EQ((*certs)->TEST_generation(), 1);
    Overwrite(live.key, ReadAll(Cert("server2.key")));
    EXPECT_TRUE(Eventually([&] { return (*certs)->TEST_generation() == 2; }));
    copy_dir = (*certs)->TEST_copy_dir();
    EXPECT_TRUE(std::filesystem::exists(copy_dir + "/current/key.pem")) << copy_dir;
    EXPECT_EQ(std::filesystem::status(copy_dir).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_all);
  }
  EXPECT_FALSE(std::filesystem::exists(copy_dir)) << copy_dir;
}

// --- the health port and reflection ---

TEST_F(TlsTest, HealthPortServesHealthAloneInPlaintextAndFollowsTheServer) {
  ServerOptions so;
  so.tls = ServerTls(/*mutual=*/true);
  so.health_listen_address = "127.0.0.1:0";
  StartServer(so);
  ASSERT_GT(server_->health_port(), 0);
  RawReply health = RawUnary(Plaintext(server_->health_port()), kHealthCheck, "");
  ASSERT_TRUE(health.status.ok()) << health.status.error_message();
  EXPECT_EQ(health.response, kServing);
  // The main port answers nothing in plaintext; the health port nothing but health.
  EXPECT_EQ(RawUnary(Plaintext(server_->port()), kHealthCheck, "").status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(RawUnary(Plaintext(server_->health_port()), "/logp.v1.DatasetService/ListDatasets", "")
                .status.error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(
      RawUnary(Plaintext(server_->health_port()), kReflection, kListServices).status.error_code(),
      grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_TRUE(Is(CallWith(ClientPlain(), "127.0.0.1:" + std::to_string(server_->health_port())),
                 StatusCode::kUnimplemented));

  server_->Drain(absl::ZeroDuration());
  health = RawUnary(Plaintext(server_->health_port()), kHealthCheck, "");
  ASSERT_TRUE(health.status.ok()) << health.status.error_message();
  EXPECT_EQ(health.response, kNotServing);
  const int health_port = server_->health_port();
  server_->Close();
  EXPECT_EQ(RawUnary(Plaintext(health_port), kHealthCheck, "").status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, ReflectionCanBeTurnedOff) {
  StartServer(ServerOptions());
  RawReply on = RawUnary(Plaintext(server_->port()), kReflection, kListServices);
  ASSERT_TRUE(on.status.ok()) << on.status.error_message();
  EXPECT_TRUE(absl::StrContains(on.response, "logp.v1.DatasetService"));
  StopServer();

  ServerOptions off;
  off.reflection = false;
  StartServer(off);
  EXPECT_EQ(RawUnary(Plaintext(server_->port()), kReflection, kListServices).status.error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_TRUE(
      Is(CallWith(ClientPlain(), "127.0.0.1:" + std::to_string(server_->port())), StatusCode::kOk));
  EXPECT_EQ(RawUnary(Plaintext(server_->port()), kHealthCheck, "").response, kServing);
}

// --- what a server sees of a call: peer identities and the token ---

// A server whose every method records the call's PeerCertificateIdentities and authorization
// metadata, then answers UNIMPLEMENTED.
class RecordingServer : public grpc::CallbackGenericService {
 public:
  explicit RecordingServer(std::shared_ptr<grpc::ServerCredentials> credentials) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", credentials, &port_);
    builder.RegisterCallbackGenericService(this);
    server_ = builder.BuildAndStart();
  }
  ~RecordingServer() override { server_->Shutdown(std::chrono::system_clock::now()); }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    {
      absl::MutexLock lock(&mu_);
      identities_ = PeerCertificateIdentities(*ctx->auth_context());
      authorization_.clear();
      const auto& md = ctx->client_metadata();
      for (auto it = md.find("authorization"); it != md.end() && it->first == "authorization";
           ++it) {
        authorization_.emplace_back(it->second.data(), it->second.size());
      }
    }
    class Unimplemented : public grpc::ServerGenericBidiReactor {
     public:
      Unimplemented() { Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "recorded")); }
      void OnDone() override { delete this; }
    };
    return new Unimplemented;
  }
  std::vector<std::string> identities() {
    absl::MutexLock lock(&mu_);
    return identities_;
  }
  std::vector<std::string> authorization() {
    absl::MutexLock lock(&mu_);
    return authorization_;
  }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  absl::Mutex mu_;
  std::vector<std::string> identities_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> authorization_ ABSL_GUARDED_BY(mu_);
};

// Calls ListDatasets on `server` with `options`; the recording server answers UNIMPLEMENTED.
void CallRecorded(RecordingServer& server, const ClientOptions& options) {
  auto client = Client::Connect(server.target(), options);
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE(Is((*client)->ListDatasets().status(), StatusCode::kUnimplemented, "recorded"));
}

TEST(PeerIdentityTest, SubjectAlternativeNamesWhenPresentElseCommonName) {
  auto certs = ServerCertificates::Load(ServerTls(/*mutual=*/true));
  ASSERT_TRUE(certs.ok()) << certs.status();
  RecordingServer server((*certs)->credentials());
  CallRecorded(server, ClientTls("ca.pem", "client-san"));
  // The certificate's CN (client-san-cn) is not an identity when it has SANs.
  EXPECT_EQ(server.identities(), (Strings{"team-a-client", "urn:logp:team-a-client"}));
  CallRecorded(server, ClientTls("ca.pem", "client-cn"));
  EXPECT_EQ(server.identities(), (Strings{"team-b-client"}));
}

TEST(PeerIdentityTest, NoneWithoutAClientCertificate) {
  auto certs = ServerCertificates::Load(ServerTls());  // TLS, no client certificates asked for
  ASSERT_TRUE(certs.ok()) << certs.status();
  RecordingServer tls((*certs)->credentials());
  CallRecorded(tls, ClientTls("ca.pem", "client-san"));
  EXPECT_EQ(tls.identities(), Strings());
  RecordingServer plain(grpc::InsecureServerCredentials());
  CallRecorded(plain, ClientPlain());
  EXPECT_EQ(plain.identities(), Strings());
}

TEST(TokenTest, EveryCallCarriesTheBearerTokenOverPlaintextOrTls) {
  RecordingServer plain(grpc::InsecureServerCredentials());
  CallRecorded(plain, ClientPlain());
  EXPECT_EQ(plain.authorization(), Strings());
  ClientOptions with_token = ClientPlain();
  with_token.token = "s3cret-token";
  CallRecorded(plain, with_token);
  EXPECT_EQ(plain.authorization(), (Strings{"Bearer s3cret-token"}));

  auto certs = ServerCertificates::Load(ServerTls());
  ASSERT_TRUE(certs.ok()) << certs.status();
  RecordingServer tls((*certs)->credentials());
  ClientOptions tls_token = ClientTls("ca.pem");
  tls_token.token = "s3cret-token";
  CallRecorded(tls, tls_token);
  EXPECT_EQ(tls.authorization(), (Strings{"Bearer s3cret-token"}));
}

TEST(TokenTest, TokenThatMetadataCannotCarryIsRefusedWithoutQuotingIt) {
  ClientOptions o;
  o.token = "line1\nline2";
  const absl::Status s = Client::Connect("localhost:1", o).status();
  EXPECT_TRUE(Is(s, StatusCode::kInvalidArgument, "the token"));
  EXPECT_FALSE(absl::StrContains(s.message(), "line1")) << s;
}

TEST(ClientTlsOptionsTest, BadFilesAreInvalidArgumentNamingTheFlag) {
  ClientOptions o;
  o.tls_cert_file = Cert("client-san.pem");
  EXPECT_TRUE(Is(Client::Connect("localhost:1", o).status(), StatusCode::kInvalidArgument,
                 "--tls_cert_file and --tls_key_file go together"));
  ClientOptions missing;
  missing.tls_ca_file = "/nonexistent/ca.pem";
  EXPECT_TRUE(Is(Client::Connect("localhost:1", missing).status(), StatusCode::kInvalidArgument,
                 "cannot read --tls_ca_file /nonexistent/ca.pem"));
  EXPECT_TRUE(ClientOptions{}.tls() == false);
  ClientOptions system_roots;
  system_roots.use_tls = true;
  EXPECT_TRUE(system_roots.tls());
  EXPECT_TRUE(Client::Connect("localhost:1", system_roots).ok());
}

// --- the TLS files' checks ---

TEST(ReadTlsMaterialTest, IncompleteCombinationsNameTheFlags) {
  TlsOptions cert_only;
  cert_only.cert_file = Cert("server.pem");
  EXPECT_TRUE(Is(ReadTlsMaterial(cert_only).status(), StatusCode::kInvalidArgument,
                 "--tls_cert_file is set but --tls_key_file is not"));
  TlsOptions key_only;
  key_only.key_file = Cert("server.key");
  EXPECT_TRUE(Is(ReadTlsMaterial(key_only).status(), StatusCode::kInvalidArgument,
                 "--tls_key_file is set but --tls_cert_file is not"));
  TlsOptions ca_only;
  ca_only.client_ca_file = Cert("ca.pem");
  EXPECT_TRUE(Is(ReadTlsMaterial(ca_only).status(), StatusCode::kInvalidArgument,
                 "--tls_client_ca_file needs --tls_cert_file and --tls_key_file"));
}

TEST(ReadTlsMaterialTest, UnreadableUnparsableAndMismatchedFilesNameFlagAndFile) {
  TlsOptions o = ServerTls(/*mutual=*/true);
  ASSERT_TRUE(ReadTlsMaterial(o).ok());
  TlsOptions missing = o;
  missing.cert_file = "/nonexistent/cert.pem";
  EXPECT_TRUE(Is(ReadTlsMaterial(missing).status(), StatusCode::kInvalidArgument,
                 "cannot read --tls_cert_file /nonexistent/cert.pem: No such file"));
  TlsOptions key_as_cert = o;
  key_as_cert.cert_file = Cert("server.key");
  EXPECT_TRUE(Is(ReadTlsMaterial(key_as_cert).status(), StatusCode::kInvalidArgument,
                 "--tls_cert_file " + Cert("server.key") + " holds no PEM certificate"));
  TlsOptions cert_as_key = o;
  cert_as_key.key_file = Cert("server.pem");
  EXPECT_TRUE(Is(ReadTlsMaterial(cert_as_key).status(), StatusCode::kInvalidArgument,
                 "--tls_key_file " + Cert("server.pem") + " holds no PEM private key"));
  TlsOptions other_key = o;
  other_key.key_file = Cert("server2.key");
  EXPECT_TRUE(Is(ReadTlsMaterial(other_key).status(), StatusCode::kInvalidArgument,
                 "is not the key of the certificate in --tls_cert_file " + Cert("server.pem")));
  TlsOptions bad_ca = o;
  bad_ca.client_ca_file = Cert("ca.key");
  EXPECT_TRUE(Is(ReadTlsMaterial(bad_ca).status(), StatusCode::kInvalidArgument,
                 "--tls_client_ca_file " + Cert("ca.key") + " holds no PEM certificate"));

  // A chain whose second certificate is cut off: the first one alone would parse.
  TempDir dir;
  const std::string chain = dir.path() + "/chain.pem";
  const std::string ca = ReadAll(Cert("ca.pem"));
  Overwrite(chain, ReadAll(Cert("server.pem")) + ca.substr(0, ca.size() - 40));
  TlsOptions truncated = o;
  truncated.cert_file = chain;
  EXPECT_TRUE(Is(ReadTlsMaterial(truncated).status(), StatusCode::kInvalidArgument,
                 "does not parse as PEM certificates (1 read before the error)"));
}

// --- the exposure warnings ---

TEST(ExposureWarningsTest, LoopbackAddressesAreNotExposed) {
  for (const char* a : {"127.0.0.1:50051", "127.4.5.6:1", "[::1]:50051", "localhost:50051",
                        "LOCALHOST:0", "[::ffff:127.0.0.1]:5", "unix:/run/logpd.sock"}) {
    EXPECT_TRUE(IsLoopbackListenAddress(a)) << a;
    EXPECT_EQ(ExposureWarnings(a, /*tls_enabled=*/false, /*auth_enabled=*/false), Strings()) << a;
  }
  for (const char* a :
       {"0.0.0.0:50051", "[::]:50051", ":50051", "10.1.2.3:50051", "128.0.0.1:1",
        "[2001:db8::1]:50051", "logp.example.com:50051", "localhost.example.com:1"}) {
    EXPECT_FALSE(IsLoopbackListenAddress(a)) << a;
  }
}

TEST(ExposureWarningsTest, ExposedAddressWarnsOfWhatIsMissing) {
  const std::string all = absl::StrJoin(ExposureWarnings("0.0.0.0:50051", false, false), "\n");
  EXPECT_TRUE(absl::StrContains(all, "0.0.0.0:50051")) << all;
  EXPECT_TRUE(absl::StrContains(all, "in plaintext and without authentication")) << all;
  EXPECT_TRUE(absl::StrContains(all, "--tls_cert_file")) << all;
  EXPECT_TRUE(absl::StrContains(all, "--auth_tokens_file")) << all;
  EXPECT_GE(ExposureWarnings("0.0.0.0:50051", false, false).size(), 4u);

  const std::string plaintext = absl::StrJoin(ExposureWarnings("[::]:1", false, true), "\n");
  EXPECT_TRUE(absl::StrContains(plaintext, "in plaintext:")) << plaintext;
  EXPECT_FALSE(absl::StrContains(plaintext, "--auth_tokens_file")) << plaintext;

  const std::string no_auth = absl::StrJoin(ExposureWarnings("10.0.0.1:1", true, false), "\n");
  EXPECT_TRUE(absl::StrContains(no_auth, "without authentication")) << no_auth;
  EXPECT_FALSE(absl::StrContains(no_auth, "plaintext")) << no_auth;

  EXPECT_EQ(ExposureWarnings("0.0.0.0:50051", true, true), Strings());
}

}  // namespace
}  // namespace logp
