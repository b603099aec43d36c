// InProcessServer: the in-process logpd of an integration test. A Core on the test binary's
// catalogue (test_catalog.h) in a data directory, a LogpServer on 127.0.0.1:0 and a Client
// connected to it; Stop and Start again are a restart on the same data directory (and the same
// PostgreSQL database). Header-only, like test_catalog.h; not thread-safe.
#ifndef LOGP_TESTS_INTEGRATION_IN_PROCESS_SERVER_H_
#define LOGP_TESTS_INTEGRATION_IN_PROCESS_SERVER_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "server/core/core.h"
#include "server/grpc/server.h"
#include "tests/integration/test_catalog.h"

namespace logp {

class InProcessServer {
 public:
  ~InProcessServer() {
    Stop();
    catalog_.Close();
  }

  // Opens a Core with `core` (its data_dir must be set; its catalog is the test's) and starts a
  // server with `server` (listening on 127.0.0.1:0 unless set), then connects client() with
  // `client`.
  absl::Status Start(CoreOptions core, ServerOptions server = {}, ClientOptions client = {}) {
    Stop();
    absl::StatusOr<Catalog*> catalog = catalog_.Open(core.data_dir);
    if (!catalog.ok()) return catalog.status();
    core.catalog = *catalog;
    absl::StatusOr<std::unique_ptr<Core>> opened = Core::Open(core);
    if (!opened.ok()) return opened.status();
    core_ = std::move(*opened);
    if (server.listen_address.empty()) server.listen_address = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<LogpServer>> started = LogpServer::Start(core_.get(), server);
    if (!started.ok()) return started.status();
    server_ = std::move(*started);
    absl::StatusOr<std::unique_ptr<Client>> connected = Connect(client);
    if (!connected.ok()) return connected.status();
    client_ = std::move(*connected);
    return absl::OkStatus();
  }

  // Another client of the running server (e.g. with another token).
  absl::StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options = {}) const {
    return Client::Connect(absl::StrCat("127.0.0.1:", server_->port()), options);
  }

  // Client, server and Core, in that order (the catalogue's database stays). Idempotent.
  void Stop() {
    client_.reset();
    if (server_) server_->Shutdown(absl::Seconds(2));
    server_.reset();
    core_.reset();
  }

  Client& client() { return *client_; }
  Core& core() { return *core_; }
  LogpServer& server() { return *server_; }

 private:
  TestCatalog catalog_;
  std::unique_ptr<Core> core_;
  std::unique_ptr<LogpServer> server_;
  std::unique_ptr<Client> client_;
};

// Runs `spec` to its end through `client` and returns the model it published; a test failure
// (and "") when the job cannot be created or does not succeed.
inline std::string TrainToModel(Client& client, const v1::JobSpec& spec) {
  absl::StatusOr<v1::Job> job = client.CreateJob(spec);
  EXPECT_TRUE(job.ok()) << job.status();
  if (!job.ok()) return "";
  absl::StatusOr<v1::Job> done = client.WaitForJob(job->id());
  EXPECT_TRUE(done.ok()) << done.status();
  if (!done.ok()) return "";
  EXPECT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED) << done->error();
  return done->model_id();
}

}  // namespace logp

#endif  // LOGP_TESTS_INTEGRATION_IN_PROCESS_SERVER_H_
