// End-to-end tests over the wire: an in-process logpd (Core + LogpServer on 127.0.0.1:0) and the
// C++ client. Every error is checked for its exact status code, and for the record/column or
// field its message must name. Torch-free on purpose: it only talks to the server.
#include "server/grpc/server.h"

#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"
#include "proto/cc/field_limits.h"
#include "server/core/core.h"
#include "server/core/file_system.h"
#include "server/grpc/protobuf_log.h"
#include "tests/integration/raw_call.h"
#include "tests/integration/test_catalog.h"

namespace logp {
namespace {

using absl::StatusCode;

// Passes when `status` has exactly `code` and its message contains `needle`.
::testing::AssertionResult Is(const absl::Status& status, StatusCode code,
                              const std::string& needle = "") {
  if (status.code() != code) {
    return ::testing::AssertionFailure()
           << "expected " << absl::StatusCodeToString(code) << ", got " << status;
  }
  if (!absl::StrContains(status.message(), needle)) {
    return ::testing::AssertionFailure()
           << "message of " << status << " does not contain \"" << needle << "\"";
  }
  return ::testing::AssertionSuccess();
}

// N binary records of dim D with structure: column 0 is a fair coin, each further column copies
// the previous one with probability 0.7 and is a fair coin otherwise.
RecordMatrix Structured(int64_t n, int64_t d, uint32_t seed) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_BINARY, d, 2).value();
  std::mt19937 rng(seed);
  std::bernoulli_distribution coin(0.5), copy(0.7);
  m.u8.resize(n * d);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < d; ++c) {
      const bool copies = c > 0 && copy(rng);
      m.u8[r * d + c] = copies ? m.u8[r * d + c - 1] : static_cast<uint8_t>(coin(rng));
    }
  }
  m.rows = n;
  return m;
}

RecordMatrix Continuous(int64_t n, int64_t d, uint32_t seed) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, d, 0).value();
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  for (int64_t i = 0; i < n * d; ++i) m.f32.push_back(normal(rng));
  m.rows = n;
  return m;
}

v1::CreateDatasetRequest Header(v1::DataKind kind, uint32_t dim, uint64_t n, uint32_t k = 0) {
  v1::CreateDatasetRequest r;
  auto* h = r.mutable_header();
  h->set_name("raw");
  h->set_kind(kind);
  h->set_dim(dim);
  h->set_num_records(n);
  h->set_num_categories(k);
  return r;
}

v1::CreateDatasetRequest Chunk(v1::Encoding encoding, uint64_t n, uint32_t dim, std::string data) {
  v1::CreateDatasetRequest r;
  auto* c = r.mutable_chunk();
  c->set_encoding(encoding);
  c->set_num_records(n);
  c->set_dim(dim);
  c->set_data(std::move(data));
  return r;
}

std::string Floats(const std::vector<float>& values) {
  std::string s(values.size() * sizeof(float), '\0');
  std::memcpy(&s[0], values.data(), s.size());
  return s;
}

// A MADE job that finishes in well under a second on 400 x 16 records.
v1::JobSpec MadeSpec(const std::string& dataset_id, int epochs, int batch_size = 50) {
  v1::JobSpec spec;
  spec.set_dataset_id(dataset_id);
  spec.set_validation_fraction(0.2);
  spec.mutable_model()->set_family(v1::MODEL_FAMILY_MADE);
  spec.mutable_model()->mutable_made()->set_hidden_units(32);
  spec.mutable_optimizer()->set_learning_rate(0.03);
  spec.set_batch_size(batch_size);
  spec.set_epochs(epochs);
  spec.set_seed(11);
  return spec;
}

v1::JobSpec BernoulliSpec(const std::string& dataset_id) {
  v1::JobSpec spec;
  spec.set_dataset_id(dataset_id);
  spec.set_validation_fraction(0.2);
  spec.mutable_model()->set_family(v1::MODEL_FAMILY_BERNOULLI);
  spec.mutable_model()->mutable_bernoulli()->set_pseudo_count(0.5);
  spec.set_batch_size(50);
  spec.set_epochs(1);
  spec.set_seed(11);
  return spec;
}

std::vector<v1::JobState> StateChanges(const std::vector<v1::JobEvent>& events) {
  std::vector<v1::JobState> out;
  for (const auto& e : events) {
    if (e.has_state_change()) out.push_back(e.state_change().state());
  }
  return out;
}

// seq runs 1, 2, 3, ... with no gaps.
void ExpectContiguous(const std::vector<v1::JobEvent>& events, int64_t first = 1) {
  for (size_t i = 0; i < events.size(); ++i) {
    ASSERT_EQ(events[i].seq(), first + static_cast<int64_t>(i)) << "event " << i;
  }
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/logp-it-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    StartServer();
  }
  void TearDown() override {
    StopServer();
    system(("rm -rf " + dir_).c_str());
  }

  CoreOptions Options() const {
    CoreOptions o;
    o.data_dir = dir_;
    o.scoring.max_score_records = 1000;
    o.scoring.max_samples = 500;
    o.scoring.sample_chunk_records = 64;  // Sample streams several chunks
    o.jobs.max_queued = 2;
    o.jobs.progress_interval_seconds = 0.05;
    o.jobs.training_slots = 1;
    o.jobs.checkpoint_interval_steps = checkpoint_interval_steps_;
    o.jobs.max_job_memory_bytes = max_job_memory_bytes_;
    return o;
  }
  // On `port`, or a free one if 0.
  void StartServer(int port = 0) {
    CoreOptions options = Options();
    auto catalog = catalog_.Open(options.data_dir);
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    options.catalog = *catalog;
    auto core = Core::Open(options);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = std::move(*core);
    ServerOptions so;
    so.listen_address = "127.0.0.1:" + std::to_string(port);
    auto server = LogpServer::Start(core_.get(), so);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
    auto client = Client::Connect("127.0.0.1:" + std::to_string(server_->port()));
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }
  void StopServer() {
    client_.reset();
    if (server_) server_->Shutdown(absl::Seconds(2));
    server_.reset();
    core_.reset();
    catalog_.Close();
  }

  v1::Dataset Upload(const RecordMatrix& m, const std::string& name = "data") {
    auto ds = client_->UploadDataset(name, m);
    EXPECT_TRUE(ds.ok()) << ds.status();
    return ds.ok() ? *ds : v1::Dataset();
  }
  // Every event of the job from `from_seq` until it ends.
  std::vector<v1::JobEvent> Events(const std::string& job_id, int64_t from_seq = 0) {
    std::vector<v1::JobEvent> out;
    absl::Status st = client_->WatchJob(job_id, from_seq, [&](const v1::JobEvent& e) {
      out.push_back(e);
      return true;
    });
    EXPECT_TRUE(st.ok()) << st;
    return out;
  }
  // Blocks until the job has a RUNNING state change.
  // Waits until the job's current state is RUNNING (its history may hold earlier RUNNINGs, e.g.
  // before a restart, so the history is not enough).
  void WaitUntilRunning(const std::string& job_id) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      auto job = client_->GetJob(job_id);
      ASSERT_TRUE(job.ok()) << job.status();
      if (job->state() == v1::JOB_STATE_RUNNING) return;
      ASSERT_TRUE(job->state() == v1::JOB_STATE_QUEUED)
          << "job " << job_id << " ended without running: " << v1::JobState_Name(job->state());
      absl::SleepFor(absl::Milliseconds(5));
    }
    FAIL() << "job " << job_id << " did not start within 60 s";
  }
  // Creates the job and waits for it to succeed; returns the final job.
  v1::Job Train(const v1::JobSpec& spec) {
    auto job = client_->CreateJob(spec);
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return v1::Job();
    auto done = client_->WaitForJob(job->id());
    EXPECT_TRUE(done.ok()) << done.status();
    if (!done.ok()) return v1::Job();
    EXPECT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED) << done->error();
    return *done;
  }

  std::shared_ptr<grpc::Channel> Channel() const {
    return grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                               grpc::InsecureChannelCredentials());
  }

  int64_t checkpoint_interval_steps_ = 0;  // by time only (60 s) unless a test says
  int64_t max_job_memory_bytes_ = 0;       // no limit unless a test says
  std::string dir_;
  TestCatalog catalog_;  // the data directory's catalogue, across restarts
  std::unique_ptr<Core> core_;
  std::unique_ptr<LogpServer> server_;
  std::unique_ptr<Client> client_;
};

// ------------------------------------------------------------------------------ 1. the loop

TEST_F(ServerTest, UploadTrainScoreEvaluateSample) {
  const RecordMatrix data = Structured(400, 16, 1);
  const v1::Dataset uploaded = Upload(data, "structured");
  auto ds = client_->GetDataset(uploaded.id());
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->id(), uploaded.id());
  EXPECT_EQ(ds->name(), "structured");
  EXPECT_EQ(ds->num_records(), 400u);
  EXPECT_EQ(ds->dim(), 16u);
  EXPECT_EQ(ds->kind(), v1::DATA_KIND_BINARY);
  EXPECT_EQ(ds->num_categories(), 2u);
  EXPECT_FALSE(ds->content_hash().empty());
  EXPECT_EQ(ds->content_hash(), uploaded.content_hash());

  // Train MADE and watch it live.
  constexpr int kEpochs = 5;
  auto created = client_->CreateJob(MadeSpec(ds->id(), kEpochs));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->state(), v1::JOB_STATE_QUEUED);
  std::vector<v1::JobEvent> events;
  auto job = client_->WaitForJob(created->id(), [&](const v1::JobEvent& e) {
    events.push_back(e);
    return true;
  });
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  ASSERT_FALSE(events.empty());
  ExpectContiguous(events);
  EXPECT_EQ(job->last_seq(), events.back().seq());
  const std::vector<v1::JobState> states = StateChanges(events);
  EXPECT_EQ(states, (std::vector<v1::JobState>{v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING,
                                               v1::JOB_STATE_SUCCEEDED}));
  EXPECT_TRUE(events.front().has_state_change());
  EXPECT_TRUE(events.back().has_state_change());
  double best_nll = std::numeric_limits<double>::infinity();
  std::set<int> epochs_seen;
  for (const auto& e : events) {
    if (e.has_progress()) {
      EXPECT_TRUE(std::isfinite(e.progress().train_nll())) << e.DebugString();
      EXPECT_GE(e.progress().epoch(), 1);
      EXPECT_LE(e.progress().epoch(), kEpochs);
    }
    if (!e.has_epoch_summary()) continue;
    const auto& s = e.epoch_summary();
    epochs_seen.insert(s.epoch());
    EXPECT_TRUE(std::isfinite(s.train_nll())) << s.DebugString();
    EXPECT_TRUE(std::isfinite(s.validation_nll())) << s.DebugString();
    EXPECT_GT(s.validation_nll(), 0);
    EXPECT_NEAR(s.validation_bits_per_dim(), s.validation_nll() / (16 * std::log(2.0)), 1e-9);
    EXPECT_GT(s.validation_standard_error(), 0);
    best_nll = std::min(best_nll, s.validation_nll());
  }
  std::set<int> all_epochs;
  for (int e = 1; e <= kEpochs; ++e) all_epochs.insert(e);
  EXPECT_EQ(epochs_seen, all_epochs);
  EXPECT_GT(job->total_steps(), 0);
  EXPECT_EQ(job->step(), job->total_steps());
  EXPECT_DOUBLE_EQ(job->best_validation_nll(), best_nll);
  ASSERT_FALSE(job->model_id().empty());

  // The published model.
  auto model = client_->GetModel(job->model_id());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->id(), job->model_id());
  EXPECT_EQ(model->job_id(), job->id());
  EXPECT_EQ(model->dataset_id(), ds->id());
  EXPECT_EQ(model->kind(), v1::DATA_KIND_BINARY);
  EXPECT_EQ(model->dim(), 16u);
  EXPECT_GT(model->num_parameters(), 0u);
  EXPECT_EQ(model->score_kind(), v1::SCORE_KIND_EXACT);
  EXPECT_DOUBLE_EQ(model->validation_nll(), best_nll);

  // Score every training record: log-probabilities of binary records are finite and < 0.
  auto scores = client_->Score(model->id(), data);
  ASSERT_TRUE(scores.ok()) << scores.status();
  ASSERT_EQ(scores->size(), 400u);
  double sum_nll = 0;
  for (double lp : *scores) {
    EXPECT_TRUE(std::isfinite(lp));
    EXPECT_LT(lp, 0);
    sum_nll -= lp;
  }
  const double mean_nll = sum_nll / 400;
  // The same records sent one byte per value score the same, in batches of any size.
  {
    v1::ScoreRequest req;
    req.set_model_id(model->id());
    req.mutable_records()->set_encoding(v1::ENCODING_UINT8);
    req.mutable_records()->set_num_records(7);
    req.mutable_records()->set_dim(16);
    req.mutable_records()->set_data(std::string(data.u8.begin(), data.u8.begin() + 7 * 16));
    auto r = client_->ScoreRaw(req);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->score_kind(), v1::SCORE_KIND_EXACT);
    ASSERT_EQ(r->log_prob_size(), 7);
    // Scores are computed in float32 and GEMM blocking depends on the batch shape, so a
    // record's score may move in the last float bits with its neighbours: compare to 1e-6.
    for (int i = 0; i < 7; ++i) {
      EXPECT_NEAR(r->log_prob(i), (*scores)[i], 1e-6 * std::abs((*scores)[i])) << i;
    }
    auto batched = client_->Score(model->id(), data, 33);
    ASSERT_TRUE(batched.ok()) << batched.status();
    ASSERT_EQ(batched->size(), 400u);
    for (int i = 0; i < 400; ++i) {
      EXPECT_NEAR((*batched)[i], (*scores)[i], 1e-6 * std::abs((*scores)[i])) << i;
    }
  }

  // Evaluate agrees with the per-record scores.
  auto ev = client_->Evaluate(model->id(), ds->id());
  ASSERT_TRUE(ev.ok()) << ev.status();
  EXPECT_EQ(ev->num_records(), 400u);
  EXPECT_NEAR(ev->mean_nll(), mean_nll, 1e-6 * mean_nll);
  EXPECT_GT(ev->standard_error(), 0);
  EXPECT_LT(ev->ci95_low(), ev->mean_nll());
  EXPECT_GT(ev->ci95_high(), ev->mean_nll());
  EXPECT_NEAR(ev->ci95_high() - ev->mean_nll(), 1.96 * ev->standard_error(), 1e-9 * ev->mean_nll());
  EXPECT_NEAR(ev->bits_per_dim(), ev->mean_nll() / (16 * std::log(2.0)), 1e-12);
  EXPECT_EQ(ev->score_kind(), v1::SCORE_KIND_EXACT);

  // Sampling is reproducible by seed.
  auto a = client_->Sample(model->id(), 20, 3);
  auto b = client_->Sample(model->id(), 20, 3);
  auto c = client_->Sample(model->id(), 20, 4);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(a->rows, 20);
  EXPECT_EQ(a->cols, 16);
  EXPECT_EQ(a->kind, v1::DATA_KIND_BINARY);
  ASSERT_EQ(a->u8.size(), 20u * 16);
  for (uint8_t v : a->u8) EXPECT_LE(v, 1);
  EXPECT_EQ(a->u8, b->u8);
  EXPECT_NE(a->u8, c->u8);

  // Independent Bernoulli on the same split cannot see the chain structure: it is worse.
  const v1::Job bern = Train(BernoulliSpec(ds->id()));
  ASSERT_FALSE(bern.model_id().empty());
  auto bern_model = client_->GetModel(bern.model_id());
  ASSERT_TRUE(bern_model.ok()) << bern_model.status();
  EXPECT_GT(bern_model->validation_nll(), model->validation_nll())
      << "bernoulli " << bern_model->validation_nll() << " vs made " << model->validation_nll();
  EXPECT_GT(bern.best_validation_nll(), job->best_validation_nll());

  // A late watcher gets the whole history and the stream ends.
  const std::vector<v1::JobEvent> replay = Events(job->id(), 0);
  ASSERT_EQ(replay.size(), events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(replay[i].SerializeAsString(), events[i].SerializeAsString()) << i;
  }
  const std::vector<v1::JobEvent> tail = Events(job->id(), 3);
  ASSERT_EQ(tail.size(), events.size() - 2);
  ExpectContiguous(tail, 3);
  EXPECT_TRUE(Events(job->id(), job->last_seq() + 1).empty());
  EXPECT_TRUE(Is(client_->WatchJob(job->id(), -1, nullptr), StatusCode::kInvalidArgument));
}

// ------------------------------------------------------------------------- 2. bad uploads

TEST_F(ServerTest, BadUploadsAreRefusedAndLeaveNothingBehind) {
  const v1::Dataset good1 = Upload(Structured(50, 16, 2), "good1");
  const v1::Dataset good2 = Upload(Continuous(30, 3, 3), "good2");
  const v1::Encoding kU8 = v1::ENCODING_UINT8;
  const v1::Encoding kBits = v1::ENCODING_BITPACKED;
  const v1::Encoding kF32 = v1::ENCODING_FLOAT32_LE;
  auto bad = [&](const std::vector<v1::CreateDatasetRequest>& reqs, const std::string& needle) {
    return Is(client_->UploadRaw(reqs).status(), StatusCode::kInvalidArgument, needle);
  };
  const auto kBinary = v1::DATA_KIND_BINARY;

  // Wrong byte length: 2 records of dim 16 in uint8 are 32 bytes, not 31.
  EXPECT_TRUE(bad({Header(kBinary, 16, 2), Chunk(kU8, 2, 16, std::string(31, '\0'))}, "bytes"));
  // Bit-packed: 2 bytes per record of dim 16.
  EXPECT_TRUE(bad({Header(kBinary, 16, 2), Chunk(kBits, 2, 16, std::string(3, '\0'))}, "bytes"));
  // A chunk whose dim differs from the header's.
  EXPECT_TRUE(bad({Header(kBinary, 16, 1), Chunk(kU8, 1, 8, std::string(8, '\0'))}, "dim"));

  // A 2 in binary data: record indices count across chunks (3 + 1 = record 4).
  {
    std::string second(3 * 16, '\0');
    second[1 * 16 + 5] = 2;
    EXPECT_TRUE(bad({Header(kBinary, 16, 6), Chunk(kU8, 3, 16, std::string(3 * 16, '\1')),
                     Chunk(kU8, 3, 16, second)},
                    "record 4, column 5"));
  }
  // Categorical value >= K, in uint8 (K = 3) and uint16 (K = 300).
  {
    std::string first(2 * 4, '\2'), second(2 * 4, '\0');
    second[0 * 4 + 1] = 3;
    EXPECT_TRUE(bad({Header(v1::DATA_KIND_CATEGORICAL, 4, 4, 3), Chunk(kU8, 2, 4, first),
                     Chunk(kU8, 2, 4, second)},
                    "record 2, column 1"));
    std::string wide(3 * 2 * 2, '\0');
    wide[(2 * 2 + 1) * 2] = static_cast<char>(300 & 0xFF);
    wide[(2 * 2 + 1) * 2 + 1] = static_cast<char>(300 >> 8);
    EXPECT_TRUE(bad(
        {Header(v1::DATA_KIND_CATEGORICAL, 2, 3, 300), Chunk(v1::ENCODING_UINT16_LE, 3, 2, wide)},
        "record 2, column 1"));
  }
  // Continuous NaN and +Inf.
  {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    const auto kCont = v1::DATA_KIND_CONTINUOUS;
    EXPECT_TRUE(bad({Header(kCont, 3, 4), Chunk(kF32, 2, 3, Floats({0, 1, 2, 3, 4, 5})),
                     Chunk(kF32, 2, 3, Floats({0, 1, 2, 3, 4, nan}))},
                    "record 3, column 2"));
    EXPECT_TRUE(bad({Header(kCont, 3, 4), Chunk(kF32, 2, 3, Floats({0, 1, 2, 3, 4, 5})),
                     Chunk(kF32, 2, 3, Floats({inf, 1, 2, 3, 4, 5}))},
                    "record 2, column 0"));
    EXPECT_TRUE(
        bad({Header(kCont, 3, 1), Chunk(kF32, 1, 3, Floats({0, -inf, 2}))}, "record 0, column 1"));
    // Continuous data cannot come as bytes.
    EXPECT_TRUE(bad({Header(kCont, 3, 1), Chunk(kU8, 1, 3, std::string(3, '\0'))}, "encoding"));
  }
  // N = 0 and D = 0.
  EXPECT_TRUE(bad({Header(kBinary, 16, 0)}, "num_records"));
  EXPECT_TRUE(bad({Header(kBinary, 0, 1), Chunk(kU8, 1, 0, "")}, "dim"));
  // Declared N differs from what arrives: fewer, and more (in one chunk, and over two chunks).
  EXPECT_TRUE(bad({Header(kBinary, 16, 5), Chunk(kU8, 3, 16, std::string(48, '\1'))}, "declared"));
  EXPECT_TRUE(bad({Header(kBinary, 16, 2), Chunk(kU8, 3, 16, std::string(48, '\1'))}, "declared"));
  EXPECT_TRUE(bad({Header(kBinary, 16, 2), Chunk(kU8, 2, 16, std::string(32, '\1')),
                   Chunk(kU8, 1, 16, std::string(16, '\1'))},
                  "declared"));
  // Header missing, header repeated, nothing at all.
  EXPECT_TRUE(bad({Chunk(kU8, 1, 16, std::string(16, '\1'))}, "header"));
  EXPECT_TRUE(bad({Header(kBinary, 16, 2), Chunk(kU8, 1, 16, std::string(16, '\1')),
                   Header(kBinary, 16, 2), Chunk(kU8, 1, 16, std::string(16, '\1'))},
                  "header"));
  EXPECT_TRUE(bad({}, "header"));
  // Non-zero padding bits after the last column of a bit-packed record (dim 12: 4 pad bits).
  {
    std::string rows = {'\xFF', '\xF0', '\x0F', '\x01'};
    EXPECT_TRUE(bad({Header(kBinary, 12, 2), Chunk(kBits, 2, 12, rows)}, "record 1"));
  }
  // Categorical with K = 1 and an image shape that does not multiply to dim.
  EXPECT_TRUE(bad({Header(v1::DATA_KIND_CATEGORICAL, 4, 1, 1)}, "num_categories"));
  {
    auto h = Header(kBinary, 16, 1);
    h.mutable_header()->mutable_image_shape()->set_height(3);
    h.mutable_header()->mutable_image_shape()->set_width(5);
    h.mutable_header()->mutable_image_shape()->set_channels(1);
    EXPECT_TRUE(bad({h, Chunk(kU8, 1, 16, std::string(16, '\0'))}, "image_shape"));
    // A shape whose product overflows 64 bits to exactly D = 19456.
    auto wraps = Header(kBinary, 19456, 1);
    wraps.mutable_header()->mutable_image_shape()->set_height(3286804876u);
    wraps.mutable_header()->mutable_image_shape()->set_width(838136995u);
    wraps.mutable_header()->mutable_image_shape()->set_channels(1415789312u);
    EXPECT_TRUE(bad({wraps, Chunk(kU8, 1, 19456, std::string(19456, '\0'))}, "image_shape"));
  }

  // Exactly the good datasets are stored, unchanged, and no temporary file is left.
  auto list = client_->ListDatasets();
  ASSERT_TRUE(list.ok()) << list.status();
  std::set<std::string> ids;
  for (const auto& d : list->datasets()) ids.insert(d.id());
  EXPECT_EQ(ids, (std::set<std::string>{good1.id(), good2.id()}));
  for (const v1::Dataset& before : {good1, good2}) {
    auto after = client_->GetDataset(before.id());
    ASSERT_TRUE(after.ok()) << after.status();
    EXPECT_EQ(after->SerializeAsString(), before.SerializeAsString());
  }
  EXPECT_TRUE(FileSystem::Default()->ListDir(dir_ + "/tmp").empty());
  EXPECT_EQ(FileSystem::Default()->ListDir(dir_ + "/datasets").size(), 2u);

  // The server still serves: a good upload works and hashes equal content equally.
  const v1::Dataset good3 = Upload(Structured(50, 16, 2), "good3");
  EXPECT_FALSE(good3.id().empty());
  EXPECT_NE(good3.id(), good1.id());
  EXPECT_EQ(good3.content_hash(), good1.content_hash());
  EXPECT_EQ(client_->ListDatasets()->datasets_size(), 3);
}

// ------------------------------------------------------------------ 2b. bytes that do not parse

// Every method of the three services answers a request that is not a valid message with
// INVALID_ARGUMENT naming the message type (gRPC 1.51 alone says INTERNAL, or UNIMPLEMENTED on
// the callback API), and the server keeps serving.
TEST_F(ServerTest, BytesThatDoNotParseAreInvalidArgument) {
  const v1::Dataset ds = Upload(Structured(20, 16, 3));
  auto channel = Channel();
  const std::string garbage(16, '\xff');  // field 0 with wire type 7: never valid protobuf
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  int methods = 0;
  for (const char* name :
       {"logp.v1.DatasetService", "logp.v1.JobService", "logp.v1.ModelService"}) {
    const google::protobuf::ServiceDescriptor* service = pool->FindServiceByName(name);
    ASSERT_NE(service, nullptr) << name;
    for (int i = 0; i < service->method_count(); ++i) {
      const google::protobuf::MethodDescriptor* m = service->method(i);
      const std::string path = "/" + service->full_name() + "/" + m->name();
      RawReply r = RawCall(channel, path, {garbage});
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << path << ": " << r.status.error_message();
      EXPECT_TRUE(absl::StrContains(r.status.error_message(), m->input_type()->full_name()))
          << path << ": " << r.status.error_message();
      EXPECT_TRUE(r.responses.empty()) << path;
      ++methods;
    }
  }
  EXPECT_EQ(methods, 18);  // CompareModels the 16th, Marginal and Impute the 17th and 18th

  // Upload streams: garbage as the first message, after the header, and after the last chunk
  // (the declared records all arrived: without the check the upload would be stored).
  const std::string header = Header(v1::DATA_KIND_BINARY, 16, 2).SerializeAsString();
  const std::string chunk =
      Chunk(v1::ENCODING_UINT8, 2, 16, std::string(32, '\1')).SerializeAsString();
  for (const auto& stream : std::vector<std::vector<std::string>>{
           {garbage, header, chunk}, {header, garbage, chunk}, {header, chunk, garbage}}) {
    RawReply r = RawCall(channel, "/logp.v1.DatasetService/CreateDataset", stream);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << r.status.error_message();
    EXPECT_TRUE(absl::StrContains(r.status.error_message(), "logp.v1.CreateDatasetRequest"))
        << r.status.error_message();
  }
  auto list = client_->ListDatasets();
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->datasets_size(), 1);
  EXPECT_TRUE(FileSystem::Default()->ListDir(dir_ + "/tmp").empty());

  // The same bytes sent correctly still work, on the same channel, typed and raw.
  RawReply good = RawCall(channel, "/logp.v1.DatasetService/CreateDataset", {header, chunk});
  EXPECT_TRUE(good.status.ok()) << good.status.error_message();
  v1::GetDatasetRequest get;
  get.set_id(ds.id());
  RawReply got = RawCall(channel, "/logp.v1.DatasetService/GetDataset", {get.SerializeAsString()});
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  ASSERT_EQ(got.responses.size(), 1u);
  v1::Dataset parsed;
  ASSERT_TRUE(parsed.ParseFromString(got.responses[0]));
  EXPECT_EQ(parsed.id(), ds.id());
  v1::WatchJobRequest watch;
  watch.set_id("job-ffffffffffffffff");
  EXPECT_EQ(RawCall(channel, "/logp.v1.JobService/WatchJob", {watch.SerializeAsString()})
                .status.error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(client_->ListJobs().ok());
  EXPECT_EQ(client_->ListDatasets()->datasets_size(), 2);

  // The health service and server reflection still answer.
  RawReply health = RawCall(channel, "/grpc.health.v1.Health/Check", {""});
  ASSERT_TRUE(health.status.ok()) << health.status.error_message();
  EXPECT_EQ(health.responses, std::vector<std::string>{std::string("\x08\x01")});  // SERVING
  // ServerReflectionRequest{list_services: ""}.
  RawReply reflection = RawCall(
      channel, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", {{"\x3a\x00", 2}});
  ASSERT_TRUE(reflection.status.ok()) << reflection.status.error_message();
  ASSERT_EQ(reflection.responses.size(), 1u);
  for (const char* name :
       {"logp.v1.DatasetService", "logp.v1.JobService", "logp.v1.ModelService"}) {
    EXPECT_TRUE(absl::StrContains(reflection.responses[0], name)) << name;
  }
}

// A string field that is not UTF-8 makes the request unparsable (INVALID_ARGUMENT), and
// libprotobuf logs a line for each: a client must not be able to fill the log at will.
TEST_F(ServerTest, InvalidUtf8IsInvalidArgumentAndItsLogLinesAreBounded) {
  auto channel = Channel();
  const std::string bad_id = "\x0a\x02\xff\xfe";  // field 1 (id), 2 bytes that are not UTF-8
  ASSERT_FALSE(v1::GetDatasetRequest().ParseFromString(bad_id));  // the client-side check logs
  const ProtobufLogCounts before = TEST_ProtobufLogCounts();
  constexpr int kRequests = 200;
  ::testing::internal::CaptureStderr();
  int invalid = 0;
  for (int i = 0; i < kRequests; ++i) {
    const char* method =
        i % 2 ? "/logp.v1.DatasetService/GetDataset" : "/logp.v1.JobService/WatchJob";
    invalid += RawCall(channel, method, {bad_id}).status.error_code() ==
               grpc::StatusCode::INVALID_ARGUMENT;
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(invalid, kRequests);
  int lines = 0;
  for (size_t at = err.find("invalid UTF-8"); at != std::string::npos;
       at = err.find("invalid UTF-8", at + 1)) {
    ++lines;
  }
  EXPECT_LE(lines, kProtobufLogLinesPerMinute) << err.substr(0, 2000);
  const ProtobufLogCounts after = TEST_ProtobufLogCounts();
  EXPECT_LE(after.written - before.written, kProtobufLogLinesPerMinute);
  EXPECT_GE(after.suppressed - before.suppressed, kRequests - kProtobufLogLinesPerMinute);
  EXPECT_TRUE(client_->ListDatasets().ok());
}

// Ids (and tokens) over 128 bytes and other strings over 1 KiB are refused at the boundary with a
// short message: an echoed 9 KB id would exceed a default client's 8 KB metadata limit
// (RESOURCE_EXHAUSTED, then "Transport closed" on the next call of the channel).
TEST_F(ServerTest, LongIdsAndNamesAreInvalidArgumentWithAShortMessage) {
  const RecordMatrix data = Structured(20, 16, 4);
  const v1::Dataset ds = Upload(data);
  const v1::Job job = Train(BernoulliSpec(ds.id()));
  ASSERT_FALSE(job.model_id().empty());
  auto channel = Channel();
  auto short_and_says = [](const absl::Status& st,
                           const std::string& needle) -> ::testing::AssertionResult {
    if (st.code() == StatusCode::kInvalidArgument && absl::StrContains(st.message(), needle) &&
        st.message().size() < 200) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure()
           << "expected INVALID_ARGUMENT with a short message containing \"" << needle << "\", got "
           << absl::StatusCodeToString(st.code()) << " with a message of " << st.message().size()
           << " bytes: " << st.message().substr(0, 200);
  };
  for (size_t length : {size_t{129}, size_t{9 << 10}, size_t{100 << 10}}) {
    SCOPED_TRACE(length);
    const std::string id(length, 'x');
    const std::string longer = "is longer than 128 bytes";
    EXPECT_TRUE(short_and_says(client_->GetDataset(id).status(), "id " + longer));
    EXPECT_TRUE(short_and_says(client_->DeleteDataset(id), "id " + longer));
    EXPECT_TRUE(short_and_says(client_->GetJob(id).status(), "id " + longer));
    EXPECT_TRUE(short_and_says(client_->CancelJob(id).status(), "id " + longer));
    EXPECT_TRUE(short_and_says(client_->WatchJob(id, 0, nullptr), "id " + longer));
    EXPECT_TRUE(short_and_says(client_->GetModel(id).status(), "id " + longer));
    v1::ScoreRequest score;
    score.set_model_id(id);
    EXPECT_TRUE(short_and_says(client_->ScoreRaw(score).status(), "model_id " + longer));
    score.set_job_id(id);
    EXPECT_TRUE(short_and_says(client_->ScoreRaw(score).status(), "job_id " + longer));
    EXPECT_TRUE(
        short_and_says(client_->Evaluate(job.model_id(), id).status(), "dataset_id " + longer));
    v1::JobSpec spec = BernoulliSpec(id);
    EXPECT_TRUE(short_and_says(client_->CreateJob(spec).status(), "spec.dataset_id " + longer));
    spec = BernoulliSpec(ds.id());
    spec.set_validation_dataset_id(id);
    EXPECT_TRUE(
        short_and_says(client_->CreateJob(spec).status(), "spec.validation_dataset_id " + longer));
    EXPECT_TRUE(short_and_says(client_->ListDatasets(0, id).status(), "page_token " + longer));
    EXPECT_TRUE(short_and_says(client_->ListJobs(0, id).status(), "page_token " + longer));
    EXPECT_TRUE(short_and_says(client_->ListModels(0, id).status(), "page_token " + longer));
    // The raw Sample stream too (Client::Sample asks GetModel first).
    v1::SampleRequest sample;
    sample.set_model_id(id);
    sample.set_num_samples(1);
    RawReply r = RawCall(channel, "/logp.v1.ModelService/Sample", {sample.SerializeAsString()});
    EXPECT_TRUE(short_and_says(FromGrpcStatus(r.status), "model_id " + longer));
    // The next call on the same channels works.
    EXPECT_TRUE(client_->GetDataset(ds.id()).ok());
    EXPECT_TRUE(RawCall(channel, "/logp.v1.DatasetService/ListDatasets", {""}).status.ok());
  }
  // Names: the header's (at most 256 bytes), and any string over 1 KiB.
  for (size_t length : {size_t{257}, size_t{9 << 10}, size_t{100 << 10}}) {
    SCOPED_TRACE(length);
    auto header = Header(v1::DATA_KIND_BINARY, 16, 1);
    header.mutable_header()->set_name(std::string(length, 'n'));
    const absl::Status st =
        client_->UploadRaw({header, Chunk(v1::ENCODING_UINT8, 1, 16, std::string(16, '\1'))})
            .status();
    EXPECT_TRUE(short_and_says(st, "name")) << st;
  }
  EXPECT_EQ(client_->ListDatasets()->datasets_size(), 1);
  // Whatever the core says, what goes on the wire is bounded, cut at a UTF-8 boundary.
  EXPECT_EQ(ToGrpcStatus(absl::NotFoundError(std::string(100 << 10, 'x'))).error_message().size(),
            kMaxStatusMessageBytes + 3);
  EXPECT_EQ(Truncated("\xc3\xa9\xc3\xa9\xc3\xa9", 3), "\xc3\xa9...");
  // A 128-byte id is merely unknown.
  EXPECT_TRUE(Is(client_->GetDataset(std::string(128, 'x')).status(), StatusCode::kNotFound));
  EXPECT_TRUE(client_->Score(job.model_id(), data).ok());
}

// ---------------------------------------------------------------------------- 3. bad jobs

TEST_F(ServerTest, BadJobSpecsAreRefused) {
  const v1::Dataset binary = Upload(Structured(40, 16, 4));
  const v1::Dataset narrow = Upload(Structured(40, 8, 5));
  const v1::Dataset continuous = Upload(Continuous(40, 4, 6));
  auto refused = [&](const std::function<void(v1::JobSpec*)>& edit, StatusCode code,
                     const std::string& needle) {
    v1::JobSpec spec = MadeSpec(binary.id(), 2);
    edit(&spec);
    return Is(client_->CreateJob(spec).status(), code, needle);
  };
  const StatusCode kInvalid = StatusCode::kInvalidArgument;

  EXPECT_TRUE(refused([](v1::JobSpec* s) { s->mutable_optimizer()->set_learning_rate(0); },
                      kInvalid, "learning_rate"));
  EXPECT_TRUE(refused([](v1::JobSpec* s) { s->mutable_optimizer()->set_learning_rate(-1); },
                      kInvalid, "learning_rate"));
  EXPECT_TRUE(refused([](v1::JobSpec* s) { s->mutable_optimizer()->set_learning_rate(1.5); },
                      kInvalid, "learning_rate"));
  EXPECT_TRUE(refused(
      [](v1::JobSpec* s) {
        s->mutable_optimizer()->set_learning_rate(std::numeric_limits<double>::quiet_NaN());
      },
      kInvalid, "learning_rate"));
  EXPECT_TRUE(refused([](v1::JobSpec* s) { s->set_batch_size(0); }, kInvalid, "batch_size"));
  EXPECT_TRUE(refused([](v1::JobSpec* s) { s->set_batch_size(65537); }, kInvalid, "batch_size"));
  EXPECT_TRUE(refused([](v1::JobSpec* s) { s->set_epochs(0); }, kInvalid, "epochs"));
  EXPECT_TRUE(refused([](v1::JobSpec* s) { s->set_epochs(10001); }, kInvalid, "epochs"));
  EXPECT_TRUE(refused([](v1::JobSpec* s) { s->mutable_optimizer()->set_weight_decay(-1); },
                      kInvalid, "weight_decay"));
  EXPECT_TRUE(
      refused([](v1::JobSpec* s) { s->mutable_model()->set_family(v1::MODEL_FAMILY_UNSPECIFIED); },
              kInvalid, "family"));
  EXPECT_TRUE(refused(
      [](v1::JobSpec* s) { s->mutable_model()->set_family(static_cast<v1::ModelFamily>(77)); },
      kInvalid, "family"));
  EXPECT_TRUE(refused([](v1::JobSpec* s) { s->set_validation_fraction(1.5); }, kInvalid,
                      "validation_fraction"));
  EXPECT_TRUE(refused([](v1::JobSpec* s) { s->set_validation_fraction(0); }, kInvalid,
                      "validation_fraction"));
  EXPECT_TRUE(
      refused([](v1::JobSpec* s) { s->mutable_model()->mutable_made()->set_hidden_units(-1); },
              kInvalid, "hidden_units"));
  EXPECT_TRUE(
      refused([](v1::JobSpec* s) { s->mutable_model()->mutable_made()->set_hidden_layers(9); },
              kInvalid, "hidden_layers"));
  EXPECT_TRUE(refused(
      [](v1::JobSpec* s) {
        s->mutable_model()->set_family(v1::MODEL_FAMILY_BERNOULLI);
        s->mutable_model()->mutable_bernoulli()->set_pseudo_count(-0.5);
      },
      kInvalid, "pseudo_count"));
  EXPECT_TRUE(refused([](v1::JobSpec* s) { s->clear_dataset_id(); }, kInvalid, "dataset_id"));

  // Unknown datasets.
  EXPECT_TRUE(refused([](v1::JobSpec* s) { s->set_dataset_id("ds-0000000000000000"); },
                      StatusCode::kNotFound, "ds-0000000000000000"));
  EXPECT_TRUE(refused([](v1::JobSpec* s) { s->set_validation_dataset_id("ds-1111111111111111"); },
                      StatusCode::kNotFound, "ds-1111111111111111"));

  // Families that cannot model continuous data (MADE can: Gaussian conditionals).
  auto fvsbn_on_continuous = [&](v1::JobSpec* s) {
    s->set_dataset_id(continuous.id());
    s->mutable_model()->set_family(v1::MODEL_FAMILY_FVSBN);
  };
  EXPECT_TRUE(refused(fvsbn_on_continuous, StatusCode::kFailedPrecondition, "continuous"));
  EXPECT_TRUE(refused(fvsbn_on_continuous, StatusCode::kFailedPrecondition, "fvsbn"));
  EXPECT_TRUE(refused([&](v1::JobSpec* s) { *s = BernoulliSpec(continuous.id()); },
                      StatusCode::kFailedPrecondition, "continuous"));
  EXPECT_TRUE(refused([&](v1::JobSpec* s) { *s = BernoulliSpec(continuous.id()); },
                      StatusCode::kFailedPrecondition, "bernoulli"));

  // A validation dataset of another dim (or kind).
  EXPECT_TRUE(refused([&](v1::JobSpec* s) { s->set_validation_dataset_id(narrow.id()); }, kInvalid,
                      "validation_dataset_id"));
  EXPECT_TRUE(refused([&](v1::JobSpec* s) { s->set_validation_dataset_id(continuous.id()); },
                      kInvalid, "validation_dataset_id"));

  // No refused request left a job behind.
  auto jobs = client_->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_EQ(jobs->jobs_size(), 0);
}

// A job whose estimated peak memory is above the server's limit is refused before anything is
// stored; an accepted job carries its estimate, whose parameter count is the model's.
TEST_F(ServerTest, JobsAboveTheMemoryLimitAreRefused) {
  StopServer();
  max_job_memory_bytes_ = int64_t{64} << 20;
  StartServer();
  const v1::Dataset ds = Upload(Structured(40, 16, 4));
  auto refused = [&](const std::function<void(v1::JobSpec*)>& edit) {
    v1::JobSpec spec = MadeSpec(ds.id(), 1);
    edit(&spec);
    const absl::Status st = client_->CreateJob(spec).status();
    return Is(st, StatusCode::kResourceExhausted, "--max_job_memory_bytes") &&
           Is(st, StatusCode::kResourceExhausted, "estimated") &&
           Is(st, StatusCode::kResourceExhausted, "64.0 MiB");
  };
  // 8 x 8192 hidden units: 470M parameters with Adam (15 GiB).
  EXPECT_TRUE(refused([](v1::JobSpec* s) {
    s->mutable_model()->mutable_made()->set_hidden_layers(8);
    s->mutable_model()->mutable_made()->set_hidden_units(8192);
  }));
  // Few parameters, but a batch of 65,536 through 8192 x 4 hidden units.
  EXPECT_TRUE(refused([](v1::JobSpec* s) {
    s->set_batch_size(65536);
    s->mutable_model()->mutable_made()->set_hidden_layers(4);
    s->mutable_model()->mutable_made()->set_hidden_units(8192);
  }));
  auto none = client_->ListJobs();
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->jobs_size(), 0);

  const v1::Job job = Train(MadeSpec(ds.id(), 1));
  const v1::MemoryEstimate& e = job.memory_estimate();
  EXPECT_GT(e.total_bytes(), 0);
  EXPECT_LE(e.total_bytes(), max_job_memory_bytes_);
  EXPECT_EQ(e.total_bytes(), e.parameter_bytes() + e.activation_bytes() + e.data_bytes());
  auto model = client_->GetModel(job.model_id());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(static_cast<uint64_t>(e.parameters()), model->num_parameters());
}

// --------------------------------------------------------------------------- 4. not found

TEST_F(ServerTest, UnknownIdsAreNotFound) {
  const RecordMatrix data = Structured(40, 16, 7);
  const v1::Dataset ds = Upload(data);
  const v1::Job job = Train(BernoulliSpec(ds.id()));
  ASSERT_FALSE(job.model_id().empty());
  const std::string kDs = "ds-ffffffffffffffff", kJob = "job-ffffffffffffffff",
                    kModel = "model-ffffffffffffffff";
  const StatusCode kNotFound = StatusCode::kNotFound;

  EXPECT_TRUE(Is(client_->GetDataset(kDs).status(), kNotFound, kDs));
  EXPECT_TRUE(Is(client_->DeleteDataset(kDs), kNotFound, kDs));
  EXPECT_TRUE(Is(client_->GetJob(kJob).status(), kNotFound, kJob));
  EXPECT_TRUE(Is(client_->CancelJob(kJob).status(), kNotFound, kJob));
  EXPECT_TRUE(Is(client_->WatchJob(kJob, 0, nullptr), kNotFound, kJob));
  EXPECT_TRUE(Is(client_->GetModel(kModel).status(), kNotFound, kModel));
  EXPECT_TRUE(Is(client_->Score(kModel, data).status(), kNotFound, kModel));
  EXPECT_TRUE(Is(client_->Evaluate(kModel, ds.id()).status(), kNotFound, kModel));
  EXPECT_TRUE(Is(client_->Evaluate(job.model_id(), kDs).status(), kNotFound, kDs));
  EXPECT_TRUE(Is(client_->Sample(kModel, 5, 1).status(), kNotFound, kModel));
  // The raw Sample RPC too (Client::Sample asks GetModel first).
  {
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                       grpc::InsecureChannelCredentials());
    auto stub = v1::ModelService::NewStub(channel);
    grpc::ClientContext ctx;
    v1::SampleRequest req;
    req.set_model_id(kModel);
    req.set_num_samples(5);
    auto reader = stub->Sample(&ctx, req);
    v1::SampleResponse resp;
    EXPECT_FALSE(reader->Read(&resp));
    EXPECT_TRUE(Is(FromGrpcStatus(reader->Finish()), kNotFound, kModel));
  }
  // Deleting a dataset twice.
  EXPECT_TRUE(client_->DeleteDataset(ds.id()).ok());
  EXPECT_TRUE(Is(client_->DeleteDataset(ds.id()), kNotFound, ds.id()));
  EXPECT_TRUE(Is(client_->GetDataset(ds.id()).status(), kNotFound, ds.id()));
  // The model outlives its training dataset.
  EXPECT_TRUE(client_->Score(job.model_id(), data).ok());
}

// ------------------------------------------------------------------------------ 5. cancel

TEST_F(ServerTest, CancelQueuedAndRunningJobs) {
  const v1::Dataset ds = Upload(Structured(400, 16, 8));
  // One training slot: the long job occupies it, the next two wait.
  auto long_job = client_->CreateJob(MadeSpec(ds.id(), 1000, 1));
  ASSERT_TRUE(long_job.ok()) << long_job.status();
  WaitUntilRunning(long_job->id());
  auto queued = client_->CreateJob(MadeSpec(ds.id(), 1000, 1));
  ASSERT_TRUE(queued.ok()) << queued.status();
  EXPECT_EQ(queued->state(), v1::JOB_STATE_QUEUED);
  // The third job holds out a separate validation dataset.
  const v1::Dataset valid = Upload(Structured(100, 16, 14), "valid");
  v1::JobSpec third_spec = MadeSpec(ds.id(), 2);
  third_spec.set_validation_dataset_id(valid.id());
  auto third = client_->CreateJob(third_spec);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->state(), v1::JOB_STATE_QUEUED);
  EXPECT_TRUE(Is(client_->CreateJob(MadeSpec(ds.id(), 2)).status(), StatusCode::kResourceExhausted,
                 "queue"));
  auto listed = client_->ListJobs();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->jobs_size(), 3);

  // A queued job is cancelled at once and never runs.
  auto cancelled = client_->CancelJob(queued->id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  const std::vector<v1::JobEvent> queued_events = Events(queued->id());
  ExpectContiguous(queued_events);
  EXPECT_EQ(queued_events.size(), 2u);
  EXPECT_EQ(StateChanges(queued_events),
            (std::vector<v1::JobState>{v1::JOB_STATE_QUEUED, v1::JOB_STATE_CANCELLED}));
  auto queued_after = client_->GetJob(queued->id());
  ASSERT_TRUE(queued_after.ok()) << queued_after.status();
  EXPECT_EQ(queued_after->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_FALSE(queued_after->has_start_time());
  EXPECT_TRUE(queued_after->model_id().empty());
  // Its place in the queue is free again.
  auto refill = client_->CreateJob(MadeSpec(ds.id(), 2));
  ASSERT_TRUE(refill.ok()) << refill.status();

  // The datasets of a queued or running job cannot be deleted.
  EXPECT_TRUE(Is(client_->DeleteDataset(ds.id()), StatusCode::kFailedPrecondition, ds.id()));
  EXPECT_TRUE(Is(client_->DeleteDataset(valid.id()), StatusCode::kFailedPrecondition, valid.id()));

  // A running job stops at its next step and publishes nothing.
  const auto t0 = std::chrono::steady_clock::now();
  auto stopping = client_->CancelJob(long_job->id());
  ASSERT_TRUE(stopping.ok()) << stopping.status();
  EXPECT_TRUE(stopping->state() == v1::JOB_STATE_RUNNING ||
              stopping->state() == v1::JOB_STATE_CANCELLED)
      << v1::JobState_Name(stopping->state());
  auto stopped = client_->WaitForJob(long_job->id());
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  // A liveness bound, not a benchmark: cancellation is checked at every step (~1 ms).
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_EQ(stopped->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(stopped->model_id().empty());
  EXPECT_LT(stopped->step(), stopped->total_steps());
  const std::vector<v1::JobEvent> long_events = Events(long_job->id());
  ExpectContiguous(long_events);
  EXPECT_EQ(StateChanges(long_events),
            (std::vector<v1::JobState>{v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING,
                                       v1::JOB_STATE_CANCELLED}));

  // The next queued jobs then run to the end.
  auto third_done = client_->WaitForJob(third->id());
  ASSERT_TRUE(third_done.ok()) << third_done.status();
  EXPECT_EQ(third_done->state(), v1::JOB_STATE_SUCCEEDED) << third_done->error();
  EXPECT_FALSE(third_done->model_id().empty());
  auto refill_done = client_->WaitForJob(refill->id());
  ASSERT_TRUE(refill_done.ok()) << refill_done.status();
  EXPECT_EQ(refill_done->state(), v1::JOB_STATE_SUCCEEDED) << refill_done->error();

  // Ended jobs cannot be cancelled.
  EXPECT_TRUE(
      Is(client_->CancelJob(third->id()).status(), StatusCode::kFailedPrecondition, "SUCCEEDED"));
  EXPECT_TRUE(Is(client_->CancelJob(long_job->id()).status(), StatusCode::kFailedPrecondition,
                 "CANCELLED"));
  EXPECT_TRUE(
      Is(client_->CancelJob(queued->id()).status(), StatusCode::kFailedPrecondition, "CANCELLED"));
  // Only the two successful jobs published models.
  auto models = client_->ListModels();
  ASSERT_TRUE(models.ok()) << models.status();
  EXPECT_EQ(models->models_size(), 2);
  // No job uses the datasets any more.
  EXPECT_TRUE(client_->DeleteDataset(ds.id()).ok());
  EXPECT_TRUE(client_->DeleteDataset(valid.id()).ok());
}

// ------------------------------------------------------------------------------ 6. limits

TEST_F(ServerTest, RequestLimits) {
  const RecordMatrix data = Structured(1001, 16, 9);
  const v1::Dataset ds = Upload(data);
  const v1::Job job = Train(BernoulliSpec(ds.id()));
  const std::string model = job.model_id();
  ASSERT_FALSE(model.empty());

  // Score: at most max_score_records records per request.
  EXPECT_TRUE(Is(client_->Score(model, data).status(), StatusCode::kResourceExhausted, "1000"));
  RecordMatrix first1000 = data;
  first1000.rows = 1000;
  first1000.u8.resize(1000 * 16);
  auto ok_scores = client_->Score(model, first1000);
  ASSERT_TRUE(ok_scores.ok()) << ok_scores.status();
  EXPECT_EQ(ok_scores->size(), 1000u);

  // Sample: 1..max_samples.
  EXPECT_TRUE(Is(client_->Sample(model, 501, 1).status(), StatusCode::kResourceExhausted, "500"));
  EXPECT_TRUE(
      Is(client_->Sample(model, 0, 1).status(), StatusCode::kInvalidArgument, "num_samples"));
  auto most = client_->Sample(model, 500, 1);  // 8 chunks of at most 64
  ASSERT_TRUE(most.ok()) << most.status();
  EXPECT_EQ(most->rows, 500);
  EXPECT_EQ(most->u8.size(), 500u * 16);
  for (uint8_t v : most->u8) ASSERT_LE(v, 1);
  auto most_again = client_->Sample(model, 500, 1);
  ASSERT_TRUE(most_again.ok()) << most_again.status();
  EXPECT_EQ(most_again->u8, most->u8);

  // Records that do not fit the model.
  EXPECT_TRUE(Is(client_->Score(model, Structured(3, 15, 1)).status(), StatusCode::kInvalidArgument,
                 "dim"));
  EXPECT_TRUE(Is(client_->Score(model, Continuous(3, 16, 1)).status(), StatusCode::kInvalidArgument,
                 "encoding"));
  {
    v1::ScoreRequest req;
    req.set_model_id(model);
    req.mutable_records()->set_encoding(v1::ENCODING_UINT8);
    req.mutable_records()->set_num_records(3);
    req.mutable_records()->set_dim(16);
    std::string values(3 * 16, '\1');
    values[2 * 16 + 7] = 2;
    req.mutable_records()->set_data(values);
    EXPECT_TRUE(
        Is(client_->ScoreRaw(req).status(), StatusCode::kInvalidArgument, "record 2, column 7"));
    req.mutable_records()->set_data(std::string(3 * 16 - 1, '\1'));
    EXPECT_TRUE(Is(client_->ScoreRaw(req).status(), StatusCode::kInvalidArgument, "bytes"));
    v1::ScoreRequest no_model = req;
    no_model.clear_model_id();
    EXPECT_TRUE(Is(client_->ScoreRaw(no_model).status(), StatusCode::kInvalidArgument, "model_id"));
  }
  // Evaluate on a dataset that does not fit the model.
  const v1::Dataset narrow = Upload(Structured(10, 8, 1));
  EXPECT_TRUE(
      Is(client_->Evaluate(model, narrow.id()).status(), StatusCode::kInvalidArgument, "dim"));

  // A message over the server's transport limit: a second server over the same core with a
  // 64 KiB limit, and a client that would send 1 MiB. The request would be INVALID_ARGUMENT
  // (1 record, 200 KiB of bytes) if it reached the service: RESOURCE_EXHAUSTED comes from gRPC.
  ServerOptions small;
  small.listen_address = "127.0.0.1:0";
  small.max_message_bytes = 64 << 10;
  auto server2 = LogpServer::Start(core_.get(), small);
  ASSERT_TRUE(server2.ok()) << server2.status();
  ClientOptions big;
  big.max_message_bytes = 1 << 20;
  auto client2 = Client::Connect("127.0.0.1:" + std::to_string((*server2)->port()), big);
  ASSERT_TRUE(client2.ok()) << client2.status();
  auto fits = (*client2)->Score(model, Structured(10, 16, 1));
  ASSERT_TRUE(fits.ok()) << fits.status();
  v1::ScoreRequest huge;
  huge.set_model_id(model);
  huge.mutable_records()->set_encoding(v1::ENCODING_UINT8);
  huge.mutable_records()->set_num_records(1);
  huge.mutable_records()->set_dim(16);
  huge.mutable_records()->set_data(std::string(200 << 10, '\1'));
  EXPECT_TRUE(Is((*client2)->ScoreRaw(huge).status(), StatusCode::kResourceExhausted));
  // Both servers still serve.
  EXPECT_TRUE((*client2)->Score(model, Structured(10, 16, 1)).ok());
  EXPECT_TRUE(client_->Score(model, Structured(10, 16, 1)).ok());
  // Shutting down a server shuts down the core's training too, so this comes last.
  (*server2)->Shutdown(absl::Seconds(1));
}

// -------------------------------------------------------------------------- 7. pagination

TEST_F(ServerTest, ListPaginatesOverTheWire) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Upload(Structured(5, 16, i)).id());
  auto first = client_->ListDatasets(2);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->datasets_size(), 2);
  EXPECT_EQ(first->datasets(0).id(), ids[2]);  // newest first
  EXPECT_EQ(first->datasets(1).id(), ids[1]);
  ASSERT_FALSE(first->next_page_token().empty());
  auto second = client_->ListDatasets(2, first->next_page_token());
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->datasets_size(), 1);
  EXPECT_EQ(second->datasets(0).id(), ids[0]);
  EXPECT_TRUE(second->next_page_token().empty());
  auto all = client_->ListDatasets();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->datasets_size(), 3);
  EXPECT_TRUE(all->next_page_token().empty());

  EXPECT_TRUE(Is(client_->ListDatasets(-1).status(), StatusCode::kInvalidArgument, "page_size"));
  EXPECT_TRUE(
      Is(client_->ListDatasets(2, "bogus").status(), StatusCode::kInvalidArgument, "page_token"));
  EXPECT_TRUE(Is(client_->ListJobs(-1).status(), StatusCode::kInvalidArgument, "page_size"));
  EXPECT_TRUE(Is(client_->ListModels(-1).status(), StatusCode::kInvalidArgument, "page_size"));
}

// ----------------------------------------------------------------------------- 8. restart

TEST_F(ServerTest, EverythingSurvivesARestart) {
  const RecordMatrix data = Structured(400, 16, 10);
  const v1::Dataset ds = Upload(data);
  const v1::Job job = Train(MadeSpec(ds.id(), 3));
  ASSERT_FALSE(job.model_id().empty());
  const std::vector<v1::JobEvent> events = Events(job.id());
  auto model = client_->GetModel(job.model_id());
  ASSERT_TRUE(model.ok()) << model.status();
  auto scores = client_->Score(job.model_id(), data);
  ASSERT_TRUE(scores.ok()) << scores.status();
  auto sample = client_->Sample(job.model_id(), 20, 5);
  ASSERT_TRUE(sample.ok()) << sample.status();

  StopServer();
  StartServer();
  ASSERT_NE(client_, nullptr);

  auto ds_after = client_->GetDataset(ds.id());
  ASSERT_TRUE(ds_after.ok()) << ds_after.status();
  EXPECT_EQ(ds_after->SerializeAsString(), ds.SerializeAsString());
  auto job_after = client_->GetJob(job.id());
  ASSERT_TRUE(job_after.ok()) << job_after.status();
  EXPECT_EQ(job_after->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job_after->last_seq(), job.last_seq());
  EXPECT_EQ(job_after->model_id(), job.model_id());
  EXPECT_EQ(job_after->SerializeAsString(), job.SerializeAsString());
  const std::vector<v1::JobEvent> replay = Events(job.id());
  ASSERT_EQ(replay.size(), events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(replay[i].SerializeAsString(), events[i].SerializeAsString()) << i;
  }
  auto model_after = client_->GetModel(job.model_id());
  ASSERT_TRUE(model_after.ok()) << model_after.status();
  EXPECT_EQ(model_after->SerializeAsString(), model->SerializeAsString());
  // The model is now read back from disk: its scores are bit for bit the same.
  auto scores_after = client_->Score(job.model_id(), data);
  ASSERT_TRUE(scores_after.ok()) << scores_after.status();
  ASSERT_EQ(scores_after->size(), scores->size());
  for (size_t i = 0; i < scores->size(); ++i) {
    EXPECT_EQ((*scores_after)[i], (*scores)[i]) << "record " << i;
  }
  auto sample_after = client_->Sample(job.model_id(), 20, 5);
  ASSERT_TRUE(sample_after.ok()) << sample_after.status();
  EXPECT_EQ(sample_after->u8, sample->u8);
  // And it can still be trained on.
  const v1::Job again = Train(BernoulliSpec(ds.id()));
  EXPECT_FALSE(again.model_id().empty());
}

// A create carrying a request_id returns what the first call with that id made, also after a
// restart; the same id for a different request is ALREADY_EXISTS.
TEST_F(ServerTest, CreatesWithARequestIdAreIdempotentAcrossRestarts) {
  const RecordMatrix data = Structured(40, 16, 21);
  auto ds = client_->UploadDataset("d", data, nullptr, nullptr, "upload-1");
  ASSERT_TRUE(ds.ok()) << ds.status();
  auto ds_again = client_->UploadDataset("d", data, nullptr, nullptr, "upload-1");
  ASSERT_TRUE(ds_again.ok()) << ds_again.status();
  EXPECT_EQ(ds_again->SerializeAsString(), ds->SerializeAsString());
  // The same records in another encoding and chunking are the same upload.
  auto header = Header(v1::DATA_KIND_BINARY, 16, 40);
  header.mutable_header()->set_name("d");
  header.mutable_header()->set_request_id("upload-1");
  std::vector<v1::CreateDatasetRequest> raw = {header};
  for (int64_t r = 0; r < 40; r += 16) {
    const int64_t n = std::min<int64_t>(16, 40 - r);
    raw.push_back(Chunk(v1::ENCODING_UINT8, n, 16,
                        std::string(data.u8.begin() + r * 16, data.u8.begin() + (r + n) * 16)));
  }
  auto ds_raw = client_->UploadRaw(raw);
  ASSERT_TRUE(ds_raw.ok()) << ds_raw.status();
  EXPECT_EQ(ds_raw->id(), ds->id());
  // Other content, or another name, under the same request_id.
  EXPECT_TRUE(
      Is(client_->UploadDataset("d", Structured(40, 16, 22), nullptr, nullptr, "upload-1").status(),
         StatusCode::kAlreadyExists, ds->id()));
  EXPECT_TRUE(Is(client_->UploadDataset("e", data, nullptr, nullptr, "upload-1").status(),
                 StatusCode::kAlreadyExists, "request_id"));
  EXPECT_EQ(client_->ListDatasets()->datasets_size(), 1);
  EXPECT_EQ(FileSystem::Default()->ListDir(dir_ + "/datasets").size(), 1u);
  EXPECT_TRUE(FileSystem::Default()->ListDir(dir_ + "/tmp").empty());

  const v1::JobSpec spec = BernoulliSpec(ds->id());
  auto job = client_->CreateJob(spec, "job-1");
  ASSERT_TRUE(job.ok()) << job.status();
  auto job_again = client_->CreateJob(spec, "job-1");
  ASSERT_TRUE(job_again.ok()) << job_again.status();
  EXPECT_EQ(job_again->id(), job->id());
  v1::JobSpec other = spec;
  other.set_seed(12);
  EXPECT_TRUE(
      Is(client_->CreateJob(other, "job-1").status(), StatusCode::kAlreadyExists, job->id()));
  // Job and dataset request ids are separate namespaces; no request_id, no deduplication.
  auto job2 = client_->CreateJob(spec, "upload-1");
  ASSERT_TRUE(job2.ok()) << job2.status();
  EXPECT_NE(job2->id(), job->id());
  auto job3 = client_->CreateJob(spec);
  ASSERT_TRUE(job3.ok()) << job3.status();
  EXPECT_NE(job3->id(), job->id());
  EXPECT_EQ(client_->ListJobs()->jobs_size(), 3);

  StopServer();
  StartServer();
  ASSERT_NE(client_, nullptr);
  auto ds_after = client_->UploadDataset("d", data, nullptr, nullptr, "upload-1");
  ASSERT_TRUE(ds_after.ok()) << ds_after.status();
  EXPECT_EQ(ds_after->SerializeAsString(), ds->SerializeAsString());
  auto job_after = client_->CreateJob(spec, "job-1");
  ASSERT_TRUE(job_after.ok()) << job_after.status();
  EXPECT_EQ(job_after->id(), job->id());
  EXPECT_TRUE(Is(client_->CreateJob(other, "job-1").status(), StatusCode::kAlreadyExists));
  EXPECT_EQ(client_->ListDatasets()->datasets_size(), 1);
  EXPECT_EQ(client_->ListJobs()->jobs_size(), 3);
  // A retry of a finished job returns it as it is now.
  for (const std::string& id : {job->id(), job2->id(), job3->id()}) {
    auto done = client_->WaitForJob(id);
    ASSERT_TRUE(done.ok()) << done.status();
    EXPECT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED) << done->error();
  }
  auto job_done = client_->CreateJob(spec, "job-1");
  ASSERT_TRUE(job_done.ok()) << job_done.status();
  EXPECT_EQ(job_done->id(), job->id());
  EXPECT_EQ(job_done->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(client_->ListJobs()->jobs_size(), 3);
  // Deleting the dataset frees its request_id.
  ASSERT_TRUE(client_->DeleteDataset(ds->id()).ok());
  auto ds_new = client_->UploadDataset("d", data, nullptr, nullptr, "upload-1");
  ASSERT_TRUE(ds_new.ok()) << ds_new.status();
  EXPECT_NE(ds_new->id(), ds->id());
}

// Retries racing with the first call (a client that timed out and tried again) make one job.
TEST_F(ServerTest, ConcurrentCreatesWithOneRequestIdMakeOneJob) {
  const v1::Dataset ds = Upload(Structured(40, 16, 24));
  const v1::JobSpec spec = BernoulliSpec(ds.id());
  constexpr int kCalls = 8;
  std::vector<absl::StatusOr<v1::Job>> results(kCalls, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] { results[i] = client_->CreateJob(spec, "raced"); });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> ids;
  for (const auto& r : results) {
    // A call that found the queue's places taken by the others may be refused.
    if (!r.ok()) {
      EXPECT_TRUE(Is(r.status(), StatusCode::kResourceExhausted));
      continue;
    }
    ids.insert(r->id());
  }
  EXPECT_EQ(ids.size(), 1u);
  auto jobs = client_->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->jobs_size(), 1);
  EXPECT_EQ(*ids.begin(), jobs->jobs(0).id());
}

// The client retries UNAVAILABLE with backoff for creates that carry a request_id (and for
// reads), so a create retried across a server restart yields one job; a create without one is
// tried once.
TEST_F(ServerTest, ClientRetriesCreatesWithARequestIdAcrossARestart) {
  const v1::Dataset ds = Upload(Structured(40, 16, 23));
  const v1::JobSpec spec = BernoulliSpec(ds.id());
  auto job = client_->CreateJob(spec, "retried");
  ASSERT_TRUE(job.ok()) << job.status();
  const int port = server_->port();
  StopServer();

  ClientOptions options;
  options.max_attempts = 40;
  options.initial_backoff = absl::Milliseconds(50);
  options.max_backoff = absl::Milliseconds(250);
  auto client = Client::Connect("127.0.0.1:" + std::to_string(port), options);
  ASSERT_TRUE(client.ok()) << client.status();
  // The server comes back on the same port while the calls below are being made.
  std::thread restart([&] {
    absl::SleepFor(absl::Milliseconds(500));
    StartServer(port);
  });
  // Tried once: it fails long before the server is back (if it were retried, it would succeed
  // and create a second job).
  EXPECT_TRUE(Is((*client)->CreateJob(spec).status(), StatusCode::kUnavailable));
  auto again = (*client)->CreateJob(spec, "retried");
  auto got = (*client)->GetJob(job->id());
  restart.join();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->id(), job->id());
  ASSERT_TRUE(got.ok()) << got.status();
  auto jobs = (*client)->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_EQ(jobs->jobs_size(), 1);
  // With retries off, a down server is UNAVAILABLE at once even for a request_id.
  ClientOptions once;
  once.max_attempts = 1;
  auto dead = Client::Connect("127.0.0.1:1", once);
  ASSERT_TRUE(dead.ok());
  EXPECT_TRUE(Is((*dead)->CreateJob(spec, "retried").status(), StatusCode::kUnavailable));
}

TEST_F(ServerTest, RunningJobIsRequeuedAfterRestart) {
  const v1::Dataset ds = Upload(Structured(400, 16, 12));
  auto job = client_->CreateJob(MadeSpec(ds.id(), 1000, 1));
  ASSERT_TRUE(job.ok()) << job.status();
  WaitUntilRunning(job->id());
  // A watcher of the running job (already streaming) is told the server is going away.
  auto watcher_client = Client::Connect("127.0.0.1:" + std::to_string(server_->port()));
  ASSERT_TRUE(watcher_client.ok()) << watcher_client.status();
  absl::Status watch_status;
  absl::Notification streaming;
  std::thread watcher([&] {
    watch_status = (*watcher_client)->WatchJob(job->id(), 0, [&](const v1::JobEvent&) {
      if (!streaming.HasBeenNotified()) streaming.Notify();
      return true;
    });
  });
  streaming.WaitForNotification();
  StopServer();
  watcher.join();
  EXPECT_TRUE(Is(watch_status, StatusCode::kUnavailable, "shutting down"));
  StartServer();

  // Its history is kept and continues: QUEUED, RUNNING, QUEUED (interrupted), RUNNING again.
  WaitUntilRunning(job->id());
  auto cancel = client_->CancelJob(job->id());
  ASSERT_TRUE(cancel.ok()) << cancel.status();
  const std::vector<v1::JobEvent> events = Events(job->id());
  ExpectContiguous(events);
  EXPECT_EQ(
      StateChanges(events),
      (std::vector<v1::JobState>{v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_QUEUED,
                                 v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLED}));
  auto done = client_->GetJob(job->id());
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(done->last_seq(), events.back().seq());
}

// The queue bound holds under concurrent submissions too: with the slot busy and max_queued 2,
// exactly two of eight simultaneous CreateJob calls may succeed.
TEST_F(ServerTest, ConcurrentCreateJobRespectsQueueBound) {
  const v1::Dataset ds = Upload(Structured(400, 16, 13));
  auto long_job = client_->CreateJob(MadeSpec(ds.id(), 1000, 1));
  ASSERT_TRUE(long_job.ok()) << long_job.status();
  WaitUntilRunning(long_job->id());
  std::vector<absl::Status> results(8);
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < results.size(); ++i) {
      threads.emplace_back(
          [&, i] { results[i] = client_->CreateJob(MadeSpec(ds.id(), 1)).status(); });
    }
    for (auto& t : threads) t.join();
  }
  int accepted = 0;
  for (const absl::Status& r : results) {
    if (r.ok()) {
      ++accepted;
    } else {
      EXPECT_TRUE(Is(r, StatusCode::kResourceExhausted, "queue"));
    }
  }
  EXPECT_EQ(accepted, 2);
  auto jobs = client_->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_EQ(jobs->jobs_size(), 3);
  ASSERT_TRUE(client_->CancelJob(long_job->id()).ok());
}

// ---------------------------------------------------------------------------- 9. watching

// Polls `done` until it holds (a liveness bound of 30 s, not a timing assertion).
::testing::AssertionResult Eventually(const std::function<bool()>& done, const std::string& what) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!done()) {
    if (absl::Now() > deadline) return ::testing::AssertionFailure() << what << " within 30 s";
    absl::SleepFor(absl::Milliseconds(5));
  }
  return ::testing::AssertionSuccess();
}

bool EndsIn(const std::vector<v1::JobEvent>& events, v1::JobState state) {
  return !events.empty() && events.back().has_state_change() &&
         events.back().state_change().state() == state;
}

void ExpectSameEvents(const std::vector<v1::JobEvent>& got, const std::vector<v1::JobEvent>& want,
                      size_t want_from = 0) {
  ASSERT_EQ(got.size(), want.size() - want_from);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].SerializeAsString(), want[want_from + i].SerializeAsString()) << i;
  }
}

// A watcher that disconnects resumes after the last event it saw: nothing is missed or repeated,
// live or after the end.
TEST_F(ServerTest, WatchResumesFromAnySeq) {
  const v1::Dataset ds = Upload(Structured(400, 16, 21));
  auto job = client_->CreateJob(MadeSpec(ds.id(), 1000, 1));
  ASSERT_TRUE(job.ok()) << job.status();
  std::vector<v1::JobEvent> head;
  ASSERT_TRUE(client_
                  ->WatchJob(job->id(), 0,
                             [&](const v1::JobEvent& e) {
                               head.push_back(e);
                               return head.size() < 6;
                             })
                  .ok());
  ASSERT_EQ(head.size(), 6u);
  ExpectContiguous(head);
  // Resume live from the middle; cancel the job once the resumed stream has delivered some.
  std::vector<v1::JobEvent> tail;
  absl::Status cancelled;
  absl::Status watched =
      client_->WatchJob(job->id(), head.back().seq() + 1, [&](const v1::JobEvent& e) {
        tail.push_back(e);
        if (tail.size() == 5) cancelled = client_->CancelJob(job->id()).status();
        return true;
      });
  ASSERT_TRUE(watched.ok()) << watched;
  ASSERT_TRUE(cancelled.ok()) << cancelled;
  ExpectContiguous(tail, head.back().seq() + 1);
  EXPECT_TRUE(EndsIn(tail, v1::JOB_STATE_CANCELLED));
  // Head and tail are exactly the whole history.
  std::vector<v1::JobEvent> joined = head;
  joined.insert(joined.end(), tail.begin(), tail.end());
  const std::vector<v1::JobEvent> all = Events(job->id());
  ExpectSameEvents(joined, all);
  // And resuming from the middle of the ended job replays the rest.
  ExpectSameEvents(Events(job->id(), 4), all, 3);
}

// A finished job's stream replays its history from any seq and ends OK, also past the end and
// across several internal read batches (over 100 events).
TEST_F(ServerTest, FinishedJobReplaysAndEnds) {
  const v1::Dataset ds = Upload(Structured(40, 16, 22));
  const v1::Job job = Train(MadeSpec(ds.id(), 120, 8));  // 4 steps and one summary per epoch
  ASSERT_GT(job.last_seq(), 100);
  const std::vector<v1::JobEvent> all = Events(job.id(), 0);
  ASSERT_EQ(static_cast<int64_t>(all.size()), job.last_seq());
  ExpectContiguous(all);
  EXPECT_TRUE(EndsIn(all, v1::JOB_STATE_SUCCEEDED));
  ExpectSameEvents(Events(job.id(), 1), all);
  for (int64_t from : {int64_t{2}, job.last_seq() / 2, job.last_seq() - 64, job.last_seq()}) {
    ExpectSameEvents(Events(job.id(), from), all, from - 1);
  }
  EXPECT_TRUE(Events(job.id(), job.last_seq() + 1).empty());
  EXPECT_TRUE(Events(job.id(), job.last_seq() + 1000).empty());
  EXPECT_TRUE(Eventually([&] { return core_->jobs().TEST_ListenerCount(job.id()) == 0; },
                         "every finished stream unsubscribes"));
}

TEST_F(ServerTest, WatchRefusesUnknownJobsAndNegativeSeq) {
  const v1::Dataset ds = Upload(Structured(40, 16, 23));
  const v1::Job job = Train(BernoulliSpec(ds.id()));
  const std::string kJob = "job-0123456789abcdef";
  EXPECT_TRUE(Is(client_->WatchJob(kJob, 0, nullptr), StatusCode::kNotFound, kJob));
  EXPECT_TRUE(Is(client_->WatchJob(kJob, 7, nullptr), StatusCode::kNotFound, kJob));
  EXPECT_TRUE(Is(client_->WatchJob(kJob, -1, nullptr), StatusCode::kInvalidArgument, "from_seq"));
  EXPECT_TRUE(
      Is(client_->WatchJob(job.id(), -5, nullptr), StatusCode::kInvalidArgument, "from_seq"));
  EXPECT_TRUE(Eventually([&] { return core_->jobs().TEST_ListenerCount(kJob) == 0; },
                         "refused streams unsubscribe"));
}

// A client that cancels its stream mid-way gets CANCELLED; the job trains on, other watchers
// keep receiving, and the server forgets the cancelled stream.
TEST_F(ServerTest, ClientCancelsWatchWhileJobContinues) {
  const v1::Dataset ds = Upload(Structured(400, 16, 24));
  auto job = client_->CreateJob(MadeSpec(ds.id(), 1000, 1));
  ASSERT_TRUE(job.ok()) << job.status();
  auto stub = v1::JobService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  int64_t last_seen = 0;
  {
    grpc::ClientContext ctx;
    v1::WatchJobRequest req;
    req.set_id(job->id());
    auto reader = stub->WatchJob(&ctx, req);
    v1::JobEvent e;
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(reader->Read(&e));
      EXPECT_EQ(e.seq(), i + 1);
      last_seen = e.seq();
    }
    EXPECT_EQ(core_->jobs().TEST_ListenerCount(job->id()), 1);
    ctx.TryCancel();
    while (reader->Read(&e)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_TRUE(Eventually([&] { return core_->jobs().TEST_ListenerCount(job->id()) == 0; },
                         "the cancelled stream unsubscribes"));
  // The job goes on: a new watcher sees more progress after what the first one saw.
  std::vector<v1::JobEvent> more;
  ASSERT_TRUE(client_
                  ->WatchJob(job->id(), last_seen + 1,
                             [&](const v1::JobEvent& e) {
                               more.push_back(e);
                               return more.size() < 5;
                             })
                  .ok());
  ASSERT_EQ(more.size(), 5u);
  ExpectContiguous(more, last_seen + 1);
  auto running = client_->GetJob(job->id());
  ASSERT_TRUE(running.ok()) << running.status();
  EXPECT_EQ(running->state(), v1::JOB_STATE_RUNNING);
  ASSERT_TRUE(client_->CancelJob(job->id()).ok());
  auto done = client_->WaitForJob(job->id());
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), v1::JOB_STATE_CANCELLED);
}

// A watcher that stops reading does not hold the job back: it trains to the end, and the slow
// stream then delivers the whole history and ends OK.
TEST_F(ServerTest, SlowWatcherDoesNotHoldBackTraining) {
  const v1::Dataset ds = Upload(Structured(40, 16, 25));
  auto job = client_->CreateJob(MadeSpec(ds.id(), 120, 8));
  ASSERT_TRUE(job.ok()) << job.status();
  auto stub = v1::JobService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::WatchJobRequest req;
  req.set_id(job->id());
  auto reader = stub->WatchJob(&ctx, req);
  v1::JobEvent e;
  ASSERT_TRUE(reader->Read(&e));
  std::vector<v1::JobEvent> slow = {e};
  auto done = client_->WaitForJob(job->id());  // while the slow stream reads nothing
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED);
  while (reader->Read(&e)) slow.push_back(e);
  EXPECT_TRUE(reader->Finish().ok());
  ExpectContiguous(slow);
  EXPECT_EQ(static_cast<int64_t>(slow.size()), done->last_seq());
  EXPECT_TRUE(EndsIn(slow, v1::JOB_STATE_SUCCEEDED));
}

// Many watchers of one training job at once, from the start, from the middle, or leaving early:
// each sees exactly its part of the history, in order.
TEST_F(ServerTest, ManyConcurrentWatchers) {
  constexpr int kWatchers = 50;
  const v1::Dataset ds = Upload(Structured(400, 16, 26));
  auto job = client_->CreateJob(MadeSpec(ds.id(), 3, 1));
  ASSERT_TRUE(job.ok()) << job.status();
  std::vector<std::vector<v1::JobEvent>> seen(kWatchers);
  std::vector<absl::Status> status(kWatchers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWatchers; ++i) {
    threads.emplace_back([&, i] {
      const int64_t from = i % 5 == 0 ? 3 : 0;
      const size_t stop_after = i % 5 == 1 ? 4 : std::numeric_limits<size_t>::max();
      status[i] = client_->WatchJob(job->id(), from, [&, i, stop_after](const v1::JobEvent& e) {
        seen[i].push_back(e);
        return seen[i].size() < stop_after;
      });
    });
  }
  for (auto& t : threads) t.join();
  const std::vector<v1::JobEvent> all = Events(job->id());
  ExpectContiguous(all);
  ASSERT_TRUE(EndsIn(all, v1::JOB_STATE_SUCCEEDED));
  for (int i = 0; i < kWatchers; ++i) {
    SCOPED_TRACE("watcher " + std::to_string(i));
    ASSERT_TRUE(status[i].ok()) << status[i];
    if (i % 5 == 0) {
      ExpectSameEvents(seen[i], all, 2);
    } else if (i % 5 == 1) {
      ASSERT_EQ(seen[i].size(), 4u);
      ExpectSameEvents(seen[i], std::vector<v1::JobEvent>(all.begin(), all.begin() + 4));
    } else {
      ExpectSameEvents(seen[i], all);
    }
  }
  EXPECT_TRUE(Eventually([&] { return core_->jobs().TEST_ListenerCount(job->id()) == 0; },
                         "every stream unsubscribes"));
}

// Server shutdown ends every open watch stream with UNAVAILABLE (and does not wait for them).
TEST_F(ServerTest, ShutdownEndsEveryOpenWatch) {
  constexpr int kWatchers = 20;
  const v1::Dataset ds = Upload(Structured(400, 16, 27));
  auto job = client_->CreateJob(MadeSpec(ds.id(), 1000, 1));
  ASSERT_TRUE(job.ok()) << job.status();
  auto watchers = Client::Connect("127.0.0.1:" + std::to_string(server_->port()));
  ASSERT_TRUE(watchers.ok()) << watchers.status();
  std::atomic<int> streaming{0};
  std::vector<absl::Status> status(kWatchers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWatchers; ++i) {
    threads.emplace_back([&, i] {
      bool counted = false;
      status[i] = (*watchers)->WatchJob(job->id(), 0, [&](const v1::JobEvent&) {
        if (!counted) ++streaming;
        counted = true;
        return true;
      });
    });
  }
  EXPECT_TRUE(Eventually([&] { return streaming.load() == kWatchers; }, "every watcher streams"));
  StopServer();
  for (auto& t : threads) t.join();
  for (int i = 0; i < kWatchers; ++i) {
    EXPECT_TRUE(Is(status[i], StatusCode::kUnavailable, "shutting down")) << "watcher " << i;
  }
}

}  // namespace
}  // namespace logp

namespace logp {
namespace {

RecordMatrix Categorical(int64_t n, int64_t d, int32_t k, uint32_t seed) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CATEGORICAL, d, k).value();
  std::mt19937 rng(seed);
  for (int64_t i = 0; i < n * d; ++i) m.u8.push_back(static_cast<uint8_t>(rng() % k));
  m.rows = n;
  return m;
}

// Integer values 0..255 stored as continuous data, for preprocessing.
RecordMatrix Pixels(int64_t n, int64_t d, uint32_t seed) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, d, 0).value();
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(128, 40);
  for (int64_t i = 0; i < n * d; ++i) {
    m.f32.push_back(std::floor(std::min(255.f, std::max(0.f, normal(rng)))));
  }
  m.rows = n;
  return m;
}

struct FamilyCase {
  std::string name;
  v1::DataKind kind;
  std::string model_json;  // the ModelSpec, in protobuf JSON
  v1::ScoreKind default_kind = v1::SCORE_KIND_EXACT;
};

// Every family trains, scores, evaluates and samples through the API, with its score label.
TEST_F(ServerTest, EveryFamilyTrainsScoresEvaluatesAndSamples) {
  std::map<v1::DataKind, std::pair<v1::Dataset, RecordMatrix>> data;
  for (auto [kind, m] : {std::make_pair(v1::DATA_KIND_BINARY, Structured(300, 8, 3)),
                         std::make_pair(v1::DATA_KIND_CATEGORICAL, Categorical(300, 5, 3, 4)),
                         std::make_pair(v1::DATA_KIND_CONTINUOUS, Continuous(300, 3, 5))}) {
    data[kind] = {Upload(m), m};
  }
  const RecordMatrix pixels = Pixels(300, 3, 6);
  const v1::Dataset pixel_ds = Upload(pixels, "pixels");
  const std::vector<FamilyCase> cases = {
      {"bernoulli", v1::DATA_KIND_BINARY, R"({"family":"MODEL_FAMILY_BERNOULLI"})"},
      {"fvsbn", v1::DATA_KIND_BINARY, R"({"family":"MODEL_FAMILY_FVSBN"})"},
      {"nade", v1::DATA_KIND_BINARY, R"({"family":"MODEL_FAMILY_NADE","nade":{"hiddenUnits":16}})"},
      {"pixelcnn", v1::DATA_KIND_BINARY,
       R"({"family":"MODEL_FAMILY_PIXELCNN","pixelcnn":{"channels":8,"residualBlocks":2,
           "hiddenUnits":16,"height":2,"width":4}})"},
      {"made", v1::DATA_KIND_BINARY,
       R"({"family":"MODEL_FAMILY_MADE","made":{"hiddenUnits":16,"numMasks":3,
           "order":"VARIABLE_ORDER_RANDOM","directConnections":true},
           "regularization":{"dropout":0.1,"l1":0.0001}})"},
      {"vae-binary", v1::DATA_KIND_BINARY,
       R"({"family":"MODEL_FAMILY_VAE","vae":{"latentDim":2,"hiddenUnits":16}})",
       v1::SCORE_KIND_LOWER_BOUND},
      {"categorical", v1::DATA_KIND_CATEGORICAL,
       R"({"family":"MODEL_FAMILY_CATEGORICAL","categorical":{"pseudoCount":0.5}})"},
      {"made-categorical", v1::DATA_KIND_CATEGORICAL,
       R"({"family":"MODEL_FAMILY_MADE","made":{"hiddenUnits":16}})"},
      {"gaussian", v1::DATA_KIND_CONTINUOUS, R"({"family":"MODEL_FAMILY_GAUSSIAN"})"},
      {"mixture-em-full", v1::DATA_KIND_CONTINUOUS,
       R"({"family":"MODEL_FAMILY_GAUSSIAN_MIXTURE","gaussianMixture":{"components":2,
           "covariance":"COVARIANCE_TYPE_FULL"}})"},
      {"mixture-gradient", v1::DATA_KIND_CONTINUOUS,
       R"({"family":"MODEL_FAMILY_GAUSSIAN_MIXTURE","gaussianMixture":{"components":2,
           "training":"MIXTURE_TRAINING_GRADIENT"}})"},
      {"made-mog", v1::DATA_KIND_CONTINUOUS,
       R"({"family":"MODEL_FAMILY_MADE","made":{"hiddenUnits":16,
           "conditional":"CONDITIONAL_TYPE_MIXTURE","mixtureComponents":3}})"},
      {"maf", v1::DATA_KIND_CONTINUOUS,
       R"({"family":"MODEL_FAMILY_MAF","maf":{"flowLayers":2,"hiddenUnits":16,"batchNorm":true}})"},
      {"realnvp", v1::DATA_KIND_CONTINUOUS,
       R"({"family":"MODEL_FAMILY_REALNVP","realnvp":{"couplingLayers":2,"hiddenUnits":16}})"},
      {"vae-continuous", v1::DATA_KIND_CONTINUOUS,
       R"({"family":"MODEL_FAMILY_VAE","vae":{"latentDim":2,"hiddenUnits":16}})",
       v1::SCORE_KIND_LOWER_BOUND},
      {"maf-dequantized", v1::DATA_KIND_UNSPECIFIED,  // the pixel dataset
       R"({"family":"MODEL_FAMILY_MAF","maf":{"flowLayers":2,"hiddenUnits":16},
           "preprocessing":{"dequantize":true,"logit":true}})"},
  };
  for (const FamilyCase& c : cases) {
    SCOPED_TRACE(c.name);
    const bool pixel_case = c.kind == v1::DATA_KIND_UNSPECIFIED;
    const v1::Dataset& ds = pixel_case ? pixel_ds : data[c.kind].first;
    const RecordMatrix& records = pixel_case ? pixels : data[c.kind].second;
    v1::JobSpec spec;
    spec.set_dataset_id(ds.id());
    spec.set_validation_fraction(0.2);
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(c.model_json, spec.mutable_model()).ok());
    spec.set_epochs(2);
    spec.set_batch_size(50);
    spec.set_seed(3);
    const v1::Job job = Train(spec);
    ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.error();
    auto model = client_->GetModel(job.model_id());
    ASSERT_TRUE(model.ok()) << model.status();
    EXPECT_EQ(model->score_kind(), c.default_kind);
    EXPECT_GT(model->num_parameters(), 0u);

    auto eval = client_->Evaluate(job.model_id(), ds.id());
    ASSERT_TRUE(eval.ok()) << eval.status();
    EXPECT_TRUE(std::isfinite(eval->mean_nll()));
    EXPECT_EQ(eval->score_kind(), c.default_kind);
    EXPECT_EQ(eval->num_records(), records.rows);

    auto scores = client_->ScoreAll(job.model_id(), records, ScoringOptions{});
    ASSERT_TRUE(scores.ok()) << scores.status();
    ASSERT_EQ(scores->log_prob_size(), records.rows);
    for (double lp : scores->log_prob()) ASSERT_TRUE(std::isfinite(lp));
    if (c.default_kind == v1::SCORE_KIND_LOWER_BOUND) {
      ScoringOptions k5;
      k5.importance_samples = 5;
      auto iwae = client_->ScoreAll(job.model_id(), records, k5);
      ASSERT_TRUE(iwae.ok()) << iwae.status();
      EXPECT_EQ(iwae->score_kind(), v1::SCORE_KIND_ESTIMATE);
      EXPECT_EQ(iwae->importance_samples(), 5);
      ASSERT_EQ(iwae->standard_error_size(), records.rows);
    } else {
      EXPECT_EQ(scores->standard_error_size(), 0);
    }

    auto samples = client_->Sample(job.model_id(), 7, 1);
    ASSERT_TRUE(samples.ok()) << samples.status();
    ASSERT_EQ(samples->rows, 7);
    ASSERT_EQ(samples->cols, records.cols);
    for (int64_t i = 0; i < samples->rows * samples->cols; ++i) {
      const double v = samples->At(i / samples->cols, i % samples->cols);
      ASSERT_TRUE(std::isfinite(v));
      if (pixel_case) {
        ASSERT_GE(v, 0);
        ASSERT_LT(v, 256);
      }
    }
  }
}

// -------------------------------------------------------------------------- 9. durability

// Progress steps rise strictly and epochs run 1, 2, 3, ...: nothing reported twice.
void ExpectNoRepeats(const std::vector<v1::JobEvent>& events) {
  int64_t last_step = 0, last_epoch = 0;
  for (const auto& e : events) {
    if (e.has_progress()) {
      EXPECT_GT(e.progress().step(), last_step) << "seq " << e.seq();
      last_step = e.progress().step();
    }
    if (e.has_epoch_summary()) {
      EXPECT_EQ(e.epoch_summary().epoch(), last_epoch + 1) << "seq " << e.seq();
      last_epoch = e.epoch_summary().epoch();
      last_step = std::max(last_step, e.epoch_summary().step());
    }
  }
}

std::string Messages(const std::vector<v1::JobEvent>& events) {
  std::string out;
  for (const auto& e : events) {
    if (e.has_state_change()) out += e.state_change().message() + "\n";
  }
  return out;
}

// A graceful restart in the middle of training checkpoints the job; it resumes where it was and
// publishes exactly the model an uninterrupted run publishes.
TEST_F(ServerTest, ShutdownCheckpointsAndTheJobResumesExactly) {
  const RecordMatrix data = Structured(400, 16, 21);
  const v1::Dataset ds = Upload(data);
  const v1::JobSpec spec = MadeSpec(ds.id(), 40, 5);  // 64 steps per epoch, 2560 in all
  const v1::Job reference = Train(spec);
  auto reference_scores = client_->Score(reference.model_id(), data);
  ASSERT_TRUE(reference_scores.ok()) << reference_scores.status();

  auto job = client_->CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  WaitUntilRunning(job->id());
  while (client_->GetJob(job->id())->step() < 300) absl::SleepFor(absl::Milliseconds(2));
  StopServer();
  StartServer();
  auto done = client_->WaitForJob(job->id());
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED) << done->error();
  EXPECT_EQ(done->step(), 2560);
  EXPECT_EQ(done->stop_reason(), "completed 40 epochs");
  const std::vector<v1::JobEvent> events = Events(job->id());
  ExpectContiguous(events);
  ExpectNoRepeats(events);
  const std::string messages = Messages(events);
  EXPECT_TRUE(absl::StrContains(messages,
                                "interrupted by server shutdown; resumes from the "
                                "checkpoint at step"))
      << messages;
  EXPECT_TRUE(absl::StrContains(messages, "resuming from the checkpoint at step")) << messages;
  auto scores = client_->Score(done->model_id(), data);
  ASSERT_TRUE(scores.ok()) << scores.status();
  EXPECT_EQ(*scores, *reference_scores);
  EXPECT_DOUBLE_EQ(done->best_validation_nll(), reference.best_validation_nll());
}

TEST_F(ServerTest, StoppingRulesEndTrainingAndSayWhy) {
  const v1::Dataset ds = Upload(Structured(400, 16, 22));
  v1::JobSpec spec = MadeSpec(ds.id(), 1000);
  spec.set_max_steps(7);
  v1::Job job = Train(spec);
  EXPECT_EQ(job.step(), 7);
  EXPECT_EQ(job.stop_reason(), "max_steps 7 reached");

  spec = MadeSpec(ds.id(), 1000);
  spec.mutable_optimizer()->set_learning_rate(0.1);  // overfits within a few epochs
  spec.set_early_stopping_patience(2);
  job = Train(spec);
  EXPECT_TRUE(absl::StartsWith(job.stop_reason(), "early stopping")) << job.stop_reason();
  const std::vector<v1::JobEvent> events = Events(job.id());
  std::vector<v1::EpochSummary> epochs;
  for (const auto& e : events) {
    if (e.has_epoch_summary()) epochs.push_back(e.epoch_summary());
  }
  ASSERT_GE(epochs.size(), 3u);
  EXPECT_LT(epochs.size(), 1000u);
  EXPECT_EQ(epochs.back().epochs_since_best(), 2);
  // The published model is the best epoch's: its validation NLL is the job's best.
  auto model = client_->GetModel(job.model_id());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_DOUBLE_EQ(model->validation_nll(), job.best_validation_nll());
  EXPECT_LT(job.best_validation_nll(), epochs.back().validation_nll());
  for (const auto& e : epochs) {
    EXPECT_NEAR(e.generalization_gap(), e.validation_nll() - e.train_eval_nll(), 1e-9);
  }

  spec = MadeSpec(ds.id(), 3);
  spec.set_max_steps(-1);
  EXPECT_TRUE(Is(client_->CreateJob(spec).status(), StatusCode::kInvalidArgument, "max_steps"));
  spec = MadeSpec(ds.id(), 3);
  spec.set_max_seconds(std::numeric_limits<double>::infinity());
  EXPECT_TRUE(Is(client_->CreateJob(spec).status(), StatusCode::kInvalidArgument, "max_seconds"));
  spec = MadeSpec(ds.id(), 3);
  spec.set_early_stopping_patience(-3);
  EXPECT_TRUE(Is(client_->CreateJob(spec).status(), StatusCode::kInvalidArgument,
                 "early_stopping_patience"));
}

// Score, Evaluate and Sample can name a job: a running one's newest checkpoint, a finished one's
// model; nothing before the first checkpoint or after a failure.
TEST_F(ServerTest, ScoreAndSampleUseARunningJobsCheckpoint) {
  StopServer();
  checkpoint_interval_steps_ = 10;
  StartServer();
  const RecordMatrix data = Structured(400, 16, 23);
  const v1::Dataset ds = Upload(data);
  auto running = client_->CreateJob(MadeSpec(ds.id(), 1000, 1));
  ASSERT_TRUE(running.ok()) << running.status();
  auto queued = client_->CreateJob(MadeSpec(ds.id(), 1));
  ASSERT_TRUE(queued.ok()) << queued.status();
  EXPECT_TRUE(Is(client_->Score(queued->id(), data).status(), StatusCode::kFailedPrecondition,
                 "no checkpoint yet"));
  EXPECT_TRUE(Is(client_->Score("job-0000", data).status(), StatusCode::kNotFound, "job-0000"));
  WaitUntilRunning(running->id());
  while (client_->GetJob(running->id())->checkpoint_step() == 0) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  auto scored = client_->ScoreAll(running->id(), data, ScoringOptions{});
  ASSERT_TRUE(scored.ok()) << scored.status();
  EXPECT_GE(scored->checkpoint_step(), 10);
  EXPECT_EQ(scored->log_prob_size(), 400);
  auto eval = client_->Evaluate(running->id(), ds.id());
  ASSERT_TRUE(eval.ok()) << eval.status();
  EXPECT_GE(eval->checkpoint_step(), 10);
  auto samples = client_->Sample(running->id(), 10, 1);
  ASSERT_TRUE(samples.ok()) << samples.status();
  EXPECT_EQ(samples->rows, 10);
  ASSERT_TRUE(client_->CancelJob(running->id()).ok());
  // The queued job then runs and succeeds: a finished job's target is its published model.
  auto finished = client_->WaitForJob(queued->id());
  ASSERT_TRUE(finished.ok()) << finished.status();
  ASSERT_EQ(finished->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(*client_->Score(finished->id(), data), *client_->Score(finished->model_id(), data));
  // The cancelled job has no model.
  EXPECT_TRUE(Is(client_->Score(running->id(), data).status(), StatusCode::kFailedPrecondition,
                 "JOB_STATE_CANCELLED"));
}

// Queued jobs survive a restart in their order, after the job that was running (it resumes
// first).
TEST_F(ServerTest, QueuedJobsSurviveARestartInOrder) {
  auto nanos = [](const google::protobuf::Timestamp& t) {
    return t.seconds() * 1000000000LL + t.nanos();
  };
  const v1::Dataset ds = Upload(Structured(400, 16, 24));
  auto running = client_->CreateJob(MadeSpec(ds.id(), 1000, 1));
  ASSERT_TRUE(running.ok()) << running.status();
  WaitUntilRunning(running->id());
  auto first = client_->CreateJob(MadeSpec(ds.id(), 1));
  auto second = client_->CreateJob(MadeSpec(ds.id(), 1));
  ASSERT_TRUE(first.ok() && second.ok());
  StopServer();
  StartServer();
  WaitUntilRunning(running->id());
  ASSERT_TRUE(client_->CancelJob(running->id()).ok());
  auto a = client_->WaitForJob(first->id());
  auto b = client_->WaitForJob(second->id());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(b->state(), v1::JOB_STATE_SUCCEEDED);
  // The resumed job ran (and was cancelled) before the first queued job started, and the first
  // ended before the second started.
  const std::vector<v1::JobEvent> events = Events(running->id());
  int64_t last_running = 0;
  for (const auto& e : events) {
    if (e.has_state_change() && e.state_change().state() == v1::JOB_STATE_RUNNING) {
      last_running = nanos(e.time());
    }
  }
  EXPECT_LT(last_running, nanos(a->start_time()));
  EXPECT_LE(nanos(a->end_time()), nanos(b->start_time()));
}

}  // namespace
}  // namespace logp
