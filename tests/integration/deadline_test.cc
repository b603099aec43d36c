// Deadlines and cancellation over the wire: Score, Evaluate and Sample stop within one batch of
// the client's deadline or cancellation (or of the server's --max_request_seconds cap), the
// server's CPU goes idle, and it answers the next call at once; a shutdown stops them too. An
// in-process logpd on 127.0.0.1:0 with a MADE on D = 784 large enough that finishing the work
// instead of stopping would keep the CPU busy for seconds.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "logp/v1/model_service.grpc.pb.h"
#include "server/core/core.h"
#include "server/grpc/server.h"
#include "tests/integration/test_catalog.h"

namespace logp {
namespace {

constexpr int64_t kDim = 784;

double ProcessCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

// CPU seconds the whole process (the in-process server's threads included) spends in `window`,
// measured after waiting `settle` for work that is stopping to stop.
double CpuDuring(absl::Duration settle, absl::Duration window) {
  absl::SleepFor(settle);
  const double before = ProcessCpuSeconds();
  absl::SleepFor(window);
  return ProcessCpuSeconds() - before;
}

RecordMatrix RandomBinary(int64_t n, uint32_t seed) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_BINARY, kDim, 2).value();
  std::mt19937 rng(seed);
  m.u8.resize(n * kDim);
  for (auto& v : m.u8) v = static_cast<uint8_t>(rng() & 1);
  m.rows = n;
  return m;
}

class DeadlineTest : public ::testing::Test {
 protected:
  // `num_masks` > 1 multiplies the cost of scoring (one pass per mask).
  void Start(double max_request_seconds, int num_masks = 1) {
    char tmpl[] = "/tmp/logp-deadline-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    CoreOptions o;
    o.data_dir = dir_;
    o.scoring.max_score_records = 100000;
    o.scoring.max_samples = 100000;
    o.scoring.max_request_seconds = max_request_seconds;
    o.jobs.training_slots = 1;
    auto catalog = catalog_.Open(o.data_dir);
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    o.catalog = *catalog;
    auto core = Core::Open(o);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = std::move(*core);
    ServerOptions so;
    so.listen_address = "127.0.0.1:0";
    auto server = LogpServer::Start(core_.get(), so);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    target_ = "127.0.0.1:" + std::to_string(server_->port());
    auto client = Client::Connect(target_);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    stub_ =
        v1::ModelService::NewStub(grpc::CreateChannel(target_, grpc::InsecureChannelCredentials()));
    // A MADE 784 x 500 after one step: its weights do not matter, its cost does.
    auto ds = client_->UploadDataset("train", RandomBinary(200, 1));
    ASSERT_TRUE(ds.ok()) << ds.status();
    v1::JobSpec spec;
    spec.set_dataset_id(ds->id());
    spec.set_validation_fraction(0.2);
    spec.mutable_model()->set_family(v1::MODEL_FAMILY_MADE);
    spec.mutable_model()->mutable_made()->set_hidden_units(500);
    spec.mutable_model()->mutable_made()->set_num_masks(num_masks);
    spec.set_batch_size(100);
    spec.set_epochs(1);
    spec.set_max_steps(1);
    auto job = client_->CreateJob(spec);
    ASSERT_TRUE(job.ok()) << job.status();
    auto done = client_->WaitForJob(job->id());
    ASSERT_TRUE(done.ok()) << done.status();
    ASSERT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED) << done->error();
    model_id_ = done->model_id();
  }
  void TearDown() override {
    client_.reset();
    stub_.reset();
    if (server_) server_->Shutdown(absl::Seconds(2));
    server_.reset();
    core_.reset();
    catalog_.Close();
    if (!dir_.empty()) system(("rm -rf " + dir_).c_str());
  }

  // The stopped call has left the server (within 5 s: its batch ends, however loaded the
  // machine), which is then idle (less than 20% of one core over half a second, 0.3 s later) and
  // answers single-record Scores at once (median of five under 100 ms).
  void ExpectIdleAndResponsive() {
    const absl::Time until = absl::Now() + absl::Seconds(5);
    while (server_->TEST_CallsInFlight() > 0 && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_EQ(server_->TEST_CallsInFlight(), 0) << "the stopped call is still running after 5 s";
    const double cpu = CpuDuring(absl::Milliseconds(300), absl::Milliseconds(500));
    EXPECT_LT(cpu, 0.1) << "CPU seconds used 0.3-0.8 s after the call ended";
    std::vector<double> ms;
    const RecordMatrix one = RandomBinary(1, 9);
    for (int i = 0; i < 5; ++i) {
      const absl::Time t0 = absl::Now();
      auto s = client_->Score(model_id_, one);
      ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
      ASSERT_TRUE(s.ok()) << s.status();
    }
    std::sort(ms.begin(), ms.end());
    EXPECT_LT(ms[2], 100.0) << "median single-record Score latency (ms)";
  }

  std::string dir_, target_, model_id_;
  TestCatalog catalog_;  // outlives core_
  std::unique_ptr<Core> core_;
  std::unique_ptr<LogpServer> server_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<v1::ModelService::Stub> stub_;
};

TEST_F(DeadlineTest, EvaluateStopsAtTheClientsDeadline) {
  Start(0);
  auto big = client_->UploadDataset("big", RandomBinary(100000, 2));
  ASSERT_TRUE(big.ok()) << big.status();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(50));
  v1::EvaluateRequest req;
  req.set_model_id(model_id_);
  req.set_dataset_id(big->id());
  v1::EvaluateResponse resp;
  const grpc::Status st = stub_->Evaluate(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << st.error_message();
  ExpectIdleAndResponsive();
  // The same dataset evaluates in full without a deadline (the work was really there).
  auto full = client_->Evaluate(model_id_, big->id());
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->num_records(), 100000u);
}

TEST_F(DeadlineTest, ScoreStopsAtTheClientsDeadline) {
  Start(0, /*num_masks=*/8);  // scoring all records takes seconds
  const RecordMatrix records = RandomBinary(100000, 3);
  v1::ScoreRequest req;
  req.set_model_id(model_id_);
  *req.mutable_records() = Encode(records, 0, records.rows);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  v1::ScoreResponse resp;
  const grpc::Status st = stub_->Score(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << st.error_message();
  ExpectIdleAndResponsive();
}

TEST_F(DeadlineTest, CancelledSampleStopsWithinItsChunk) {
  Start(0);
  // 100,000 samples of this MADE take seconds (about 30 ms per chunk of 1,024 on one thread),
  // the call is cancelled after 0.3 s.
  grpc::ClientContext ctx;
  v1::SampleRequest req;
  req.set_model_id(model_id_);
  req.set_num_samples(100000);
  req.set_seed(1);
  auto reader = stub_->Sample(&ctx, req);
  absl::SleepFor(absl::Milliseconds(300));
  ctx.TryCancel();
  v1::SampleResponse resp;
  while (reader->Read(&resp)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ExpectIdleAndResponsive();
}

// --max_request_seconds bounds a call that has no deadline of its own; the message says so.
TEST_F(DeadlineTest, ServerCapBoundsACallWithoutADeadline) {
  Start(0.2);
  auto big = client_->UploadDataset("big", RandomBinary(100000, 4));
  ASSERT_TRUE(big.ok()) << big.status();
  grpc::ClientContext ctx;  // no deadline
  v1::EvaluateRequest req;
  req.set_model_id(model_id_);
  req.set_dataset_id(big->id());
  v1::EvaluateResponse resp;
  const grpc::Status st = stub_->Evaluate(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << st.error_message();
  EXPECT_NE(st.error_message().find("deadline"), std::string::npos) << st.error_message();
  ExpectIdleAndResponsive();
  // A cheap call within the cap still succeeds.
  auto small = client_->Score(model_id_, RandomBinary(10, 5));
  EXPECT_TRUE(small.ok()) << small.status();
}

// A shutdown stops the Score, Evaluate and Sample calls in flight at their next batch: each
// answers UNAVAILABLE (the work was not done; the client may retry elsewhere) instead of running
// to its end within the grace period given here.
TEST_F(DeadlineTest, ShutdownStopsCallsInFlightWithUnavailable) {
  Start(0, /*num_masks=*/8);  // scoring or evaluating all records takes seconds
  auto big = client_->UploadDataset("big", RandomBinary(100000, 6));
  ASSERT_TRUE(big.ok()) << big.status();
  const RecordMatrix records = RandomBinary(100000, 7);
  grpc::Status score, evaluate, sample;
  std::thread score_thread([&] {
    v1::ScoreRequest req;
    req.set_model_id(model_id_);
    *req.mutable_records() = Encode(records, 0, records.rows);
    grpc::ClientContext ctx;
    v1::ScoreResponse resp;
    score = stub_->Score(&ctx, req, &resp);
  });
  std::thread evaluate_thread([&] {
    v1::EvaluateRequest req;
    req.set_model_id(model_id_);
    req.set_dataset_id(big->id());
    grpc::ClientContext ctx;
    v1::EvaluateResponse resp;
    evaluate = stub_->Evaluate(&ctx, req, &resp);
  });
  std::thread sample_thread([&] {
    v1::SampleRequest req;
    req.set_model_id(model_id_);
    req.set_num_samples(100000);  // seconds of sampling: still running when the shutdown begins
    grpc::ClientContext ctx;
    auto reader = stub_->Sample(&ctx, req);
    v1::SampleResponse resp;
    while (reader->Read(&resp)) {
    }
    sample = reader->Finish();
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (server_->TEST_CallsInFlight() < 3 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_->TEST_CallsInFlight(), 3) << "calls in flight when the shutdown begins";
  // The calls end by themselves once the server drains, before it closes the connections (which
  // would cancel them whatever they were doing).
  server_->Drain(absl::Seconds(120));
  score_thread.join();
  evaluate_thread.join();
  sample_thread.join();
  server_->Close();
  for (const grpc::Status* st : {&score, &evaluate, &sample}) {
    EXPECT_EQ(st->error_code(), grpc::StatusCode::UNAVAILABLE) << st->error_message();
    EXPECT_EQ(st->error_message(), "server is shutting down");
  }
}

}  // namespace
}  // namespace logp
