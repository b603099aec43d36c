// A client target of several servers: the list becomes one gRPC target, calls go round robin
// over the servers, and a server going down does not fail calls that are safe to retry. Two
// in-process servers with their own data directories stand in for replicas: a dataset stored on
// one only tells which server answered.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "client/client.h"
#include "server/core/core.h"
#include "server/grpc/server.h"
#include "tests/integration/test_catalog.h"

namespace logp {
namespace {

TEST(GrpcTargetTest, ListsBecomeOneTargetAndEverythingElseIsLeftAlone) {
  EXPECT_EQ(GrpcTarget("localhost:50051").value(), "localhost:50051");
  EXPECT_EQ(GrpcTarget("dns:///logpd.example:50051").value(), "dns:///logpd.example:50051");
  EXPECT_EQ(GrpcTarget("ipv4:10.0.0.1:1,10.0.0.2:2").value(), "ipv4:10.0.0.1:1,10.0.0.2:2");
  EXPECT_EQ(GrpcTarget("10.0.0.1:50051,10.0.0.2:50051").value(),
            "ipv4:10.0.0.1:50051,10.0.0.2:50051");
  EXPECT_EQ(GrpcTarget("127.0.0.1:1, 127.0.0.1:2").value(), "ipv4:127.0.0.1:1,127.0.0.1:2");
  EXPECT_EQ(GrpcTarget("[::1]:1,[::1]:2").value(), "ipv6:[::1]:1,[::1]:2");
}

TEST(GrpcTargetTest, BadListsAreInvalidArgumentsThatSayWhy) {
  struct Case {
    const char* target;
    const char* says;
  } cases[] = {
      {"127.0.0.1:1,", "empty entry"},
      {"127.0.0.1:1,127.0.0.1", "has no port"},
      {"127.0.0.1:1,127.0.0.1:x", "no valid port"},
      {"127.0.0.1:1,127.0.0.1:70000", "no valid port"},
      {"127.0.0.1:1,logpd-1:50051", "dns:///NAME:PORT"},
      {"127.0.0.1:1,::1:2", "not an IP address"},
      {"127.0.0.1:1,[::1]:2", "mixes IPv4 and IPv6"},
  };
  for (const Case& c : cases) {
    const absl::StatusOr<std::string> t = GrpcTarget(c.target);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << c.target;
    EXPECT_NE(t.status().message().find(c.says), absl::string_view::npos)
        << c.target << ": " << t.status();
  }
  ClientOptions options;
  options.load_balancing = "random";
  EXPECT_EQ(Client::Connect("127.0.0.1:1", options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Client::Connect("127.0.0.1:1,nohost:2").status().code(),
            absl::StatusCode::kInvalidArgument);
}

class ReplicaTargetsTest : public ::testing::Test {
 protected:
  struct Replica {
    std::string dir;
    TestCatalog catalog;  // a database of its own: the servers share nothing
    std::unique_ptr<Core> core;
    std::unique_ptr<LogpServer> server;
    std::string address;
  };

  void SetUp() override {
    for (Replica& r : replicas_) {
      char tmpl[] = "/tmp/logp-replica-XXXXXX";
      ASSERT_NE(mkdtemp(tmpl), nullptr);
      r.dir = tmpl;
      CoreOptions o;
      o.data_dir = r.dir;
      auto catalog = r.catalog.Open(o.data_dir);
      ASSERT_TRUE(catalog.ok()) << catalog.status();
      o.catalog = *catalog;
      auto core = Core::Open(o);
      ASSERT_TRUE(core.ok()) << core.status();
      r.core = std::move(*core);
      ServerOptions so;
      so.listen_address = "127.0.0.1:0";
      auto server = LogpServer::Start(r.core.get(), so);
      ASSERT_TRUE(server.ok()) << server.status();
      r.server = std::move(*server);
      r.address = "127.0.0.1:" + std::to_string(r.server->port());
    }
    // A dataset on the first server only.
    auto first = Client::Connect(replicas_[0].address);
    ASSERT_TRUE(first.ok());
    RecordMatrix records = RecordMatrix::Empty(v1::DATA_KIND_BINARY, 4, 2).value();
    records.u8 = {0, 1, 0, 1, 1, 1, 0, 0};
    records.rows = 2;
    auto dataset = (*first)->UploadDataset("only-on-0", records);
    ASSERT_TRUE(dataset.ok()) << dataset.status();
    dataset_id_ = dataset->id();
  }

  void TearDown() override {
    for (Replica& r : replicas_) {
      r.server.reset();
      r.core.reset();
      r.catalog.Close();
      if (!r.dir.empty()) std::filesystem::remove_all(r.dir);
    }
  }

  Replica replicas_[2];
  std::string dataset_id_;
};

TEST_F(ReplicaTargetsTest, CallsGoRoundRobinAndSurviveAServerGoingDown) {
  auto client = Client::Connect(replicas_[0].address + "," + replicas_[1].address);
  ASSERT_TRUE(client.ok()) << client.status();
  // Both servers answer: the first finds the dataset, the second does not know it. (The first
  // calls may all go to whichever connection is ready first, hence up to 200 tries.)
  int found = 0, not_found = 0;
  for (int i = 0; i < 200 && (found < 3 || not_found < 3); ++i) {
    const absl::StatusOr<v1::Dataset> d = (*client)->GetDataset(dataset_id_);
    if (d.ok()) {
      ++found;
    } else {
      ASSERT_EQ(d.status().code(), absl::StatusCode::kNotFound) << d.status();
      ++not_found;
    }
  }
  EXPECT_GE(found, 3);
  EXPECT_GE(not_found, 3);

  // The second server goes down: every call still succeeds, on the first.
  replicas_[1].server->Drain(absl::ZeroDuration());
  replicas_[1].server->Close();
  replicas_[1].server.reset();
  for (int i = 0; i < 20; ++i) {
    const absl::StatusOr<v1::Dataset> d = (*client)->GetDataset(dataset_id_);
    EXPECT_TRUE(d.ok()) << "call " << i << ": " << d.status();
  }
}

TEST_F(ReplicaTargetsTest, PickFirstStaysOnOneServer) {
  ClientOptions options;
  options.load_balancing = "pick_first";
  auto client = Client::Connect(replicas_[0].address + "," + replicas_[1].address, options);
  ASSERT_TRUE(client.ok()) << client.status();
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE((*client)->GetDataset(dataset_id_).ok()) << "call " << i;
  }
}

}  // namespace
}  // namespace logp
