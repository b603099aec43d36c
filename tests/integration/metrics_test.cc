// ServerMetrics over the wire: an in-process logpd (Core + LogpServer on 127.0.0.1:0 with the
// metrics interceptor) and the C++ client. Calls of every kind (unary, client streaming, sync
// server streaming, the callback WatchJob) move the RPC counters and histograms by exactly one;
// the job, storage, cache and process gauges say what the server holds, during a job and after;
// and Debian's promtool accepts a real scrape. Torch-free: it only talks to the server.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "server/core/core.h"
#include "server/grpc/server.h"
#include "server/metrics/server_metrics.h"
#include "tests/integration/test_catalog.h"

namespace logp {
namespace {

using Labels = std::map<std::string, std::string>;

// One sample line of a scrape.
struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

// A parsed scrape: its samples and its "# TYPE" lines. Fails the test on a line it cannot parse.
struct Scrape {
  std::vector<Sample> samples;
  std::map<std::string, std::string> types;  // family -> counter, gauge, histogram, ...
  std::string text;

  // The value of the sample with exactly these labels; NaN if there is none.
  double Value(const std::string& name, const Labels& labels = {}) const {
    for (const Sample& s : samples) {
      if (s.name == name && s.labels == labels) return s.value;
    }
    return std::numeric_limits<double>::quiet_NaN();
  }
  // As Value, but 0 for a sample that is absent (a counter before its first increment).
  double Count(const std::string& name, const Labels& labels) const {
    const double v = Value(name, labels);
    return std::isnan(v) ? 0 : v;
  }
  // Samples of `name` whose labels include `subset`.
  int Series(const std::string& name, const Labels& subset = {}) const {
    int n = 0;
    for (const Sample& s : samples) {
      if (s.name != name) continue;
      bool all = true;
      for (const auto& [k, v] : subset) {
        auto it = s.labels.find(k);
        all = all && it != s.labels.end() && it->second == v;
      }
      n += all;
    }
    return n;
  }
};

Scrape Parse(const std::string& text) {
  Scrape out;
  out.text = text;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (absl::StartsWith(line, "# TYPE ")) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      out.types[name] = type;
      continue;
    }
    if (line[0] == '#') continue;
    Sample s;
    size_t i = line.find_first_of("{ ");
    s.name = line.substr(0, i);
    if (i != std::string::npos && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        EXPECT_NE(eq, std::string::npos) << line;
        EXPECT_EQ(line[eq + 1], '"') << line;
        std::string key = line.substr(i, eq - i), value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\') ++j;
          value += line[j];
        }
        s.labels[key] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;  // the '}'
    }
    const std::string value = line.substr(line.find_first_not_of(' ', i));
    s.value = value == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(value);
    out.samples.push_back(std::move(s));
  }
  return out;
}

// N binary records of dim D.
RecordMatrix Binary(int64_t n, int64_t d, uint32_t seed) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_BINARY, d, 2).value();
  std::mt19937 rng(seed);
  std::bernoulli_distribution coin(0.3);
  for (int64_t i = 0; i < n * d; ++i) m.u8.push_back(coin(rng));
  m.rows = n;
  return m;
}

v1::JobSpec Spec(const std::string& dataset_id, v1::ModelFamily family, int epochs) {
  v1::JobSpec spec;
  spec.set_dataset_id(dataset_id);
  spec.set_validation_fraction(0.2);
  spec.mutable_model()->set_family(family);
  if (family == v1::MODEL_FAMILY_MADE) {
    spec.mutable_model()->mutable_made()->set_hidden_units(32);
  } else {
    spec.mutable_model()->mutable_bernoulli()->set_pseudo_count(0.5);
  }
  spec.mutable_optimizer()->set_learning_rate(0.01);
  spec.set_batch_size(50);
  spec.set_epochs(epochs);
  spec.set_seed(3);
  return spec;
}

const Labels kScoreOk = {{"method", "/logp.v1.ModelService/Score"}, {"code", "OK"}};
const Labels kScoreNotFound = {{"method", "/logp.v1.ModelService/Score"}, {"code", "NOT_FOUND"}};
const Labels kCreateJobOk = {{"method", "/logp.v1.JobService/CreateJob"}, {"code", "OK"}};
const Labels kWatchOk = {{"method", "/logp.v1.JobService/WatchJob"}, {"code", "OK"}};
const Labels kWatchNotFound = {{"method", "/logp.v1.JobService/WatchJob"}, {"code", "NOT_FOUND"}};
const Labels kSampleOk = {{"method", "/logp.v1.ModelService/Sample"}, {"code", "OK"}};
const Labels kUploadOk = {{"method", "/logp.v1.DatasetService/CreateDataset"}, {"code", "OK"}};

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/logp-metrics-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    CoreOptions o;
    o.data_dir = dir_;
    o.jobs.max_queued = 4;
    o.jobs.progress_interval_seconds = 0.02;
    o.jobs.training_slots = 1;
    o.jobs.checkpoint_interval_steps = 10;
    auto catalog = catalog_.Open(dir_);
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    o.catalog = *catalog;
    auto core = Core::Open(o);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = std::move(*core);
    metrics_ = std::make_unique<ServerMetrics>(core_.get());
    ServerOptions so;
    so.listen_address = "127.0.0.1:0";
    so.interceptors.push_back([m = metrics_.get()] { return m->InterceptorFactory(); });
    auto server = LogpServer::Start(core_.get(), so);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    auto client = Client::Connect("127.0.0.1:" + std::to_string(server_->port()));
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }
  void TearDown() override {
    client_.reset();
    if (server_) server_->Shutdown(absl::Seconds(2));
    server_.reset();
    metrics_.reset();
    core_.reset();
    catalog_.Close();
    system(("rm -rf " + dir_).c_str());
  }

  Scrape Now() { return Parse(metrics_->Scrape()); }

  // Uploads, trains Bernoulli to a model; returns the model id.
  std::string TrainedModel() {
    auto ds = client_->UploadDataset("data", Binary(200, 8, 1));
    EXPECT_TRUE(ds.ok()) << ds.status();
    if (!ds.ok()) return "";
    dataset_ = *ds;
    auto job = client_->CreateJob(Spec(ds->id(), v1::MODEL_FAMILY_BERNOULLI, 1));
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return "";
    auto done = client_->WaitForJob(job->id());
    EXPECT_TRUE(done.ok()) << done.status();
    if (!done.ok()) return "";
    EXPECT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED) << done->error();
    return done->model_id();
  }

  // Every logp_rpc_requests_total series has a duration histogram whose _count is its value
  // and whose +Inf bucket holds every call.
  static void ExpectHistogramsMatchCounters(const Scrape& s) {
    int series = 0;
    for (const Sample& c : s.samples) {
      if (c.name != "logp_rpc_requests_total") continue;
      ++series;
      EXPECT_EQ(s.Value("logp_rpc_duration_seconds_count", c.labels), c.value)
          << c.labels.at("method") << " " << c.labels.at("code");
      Labels inf = c.labels;
      inf["le"] = "+Inf";
      EXPECT_EQ(s.Value("logp_rpc_duration_seconds_bucket", inf), c.value);
      EXPECT_GE(s.Value("logp_rpc_duration_seconds_sum", c.labels), 0);
    }
    EXPECT_GT(series, 0);
  }

  std::string dir_;
  TestCatalog catalog_;
  std::unique_ptr<Core> core_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<LogpServer> server_;
  std::unique_ptr<Client> client_;
  v1::Dataset dataset_;
};

TEST_F(MetricsTest, RpcCountersAndHistogramsMoveByOnePerCall) {
  const std::string model = TrainedModel();
  ASSERT_FALSE(model.empty());
  const Scrape before = Now();
  EXPECT_EQ(before.types.at("logp_rpc_requests_total"), "counter");
  EXPECT_EQ(before.types.at("logp_rpc_duration_seconds"), "histogram");
  EXPECT_EQ(before.Count("logp_rpc_requests_total", kUploadOk), 1);
  EXPECT_EQ(before.Count("logp_rpc_requests_total", kCreateJobOk), 1);

  // A successful and a failing Score (unary), a CreateJob, a WatchJob to the end (callback
  // streaming) and one refused, a Sample (sync server streaming).
  ASSERT_TRUE(client_->Score(model, Binary(1, 8, 2)).ok());
  EXPECT_EQ(client_->Score("model-unknown", Binary(1, 8, 2)).status().code(),
            absl::StatusCode::kNotFound);
  auto job = client_->CreateJob(Spec(dataset_.id(), v1::MODEL_FAMILY_BERNOULLI, 1));
  ASSERT_TRUE(job.ok()) << job.status();
  int events = 0;
  ASSERT_TRUE(client_
                  ->WatchJob(job->id(), 0,
                             [&](const v1::JobEvent&) {
                               ++events;
                               return true;
                             })
                  .ok());
  EXPECT_GT(events, 0);
  EXPECT_EQ(client_->WatchJob("job-unknown", 0, [](const v1::JobEvent&) { return true; }).code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(client_->Sample(model, 10, 1).ok());

  const Scrape after = Now();
  for (const Labels* l :
       {&kScoreOk, &kScoreNotFound, &kCreateJobOk, &kWatchOk, &kWatchNotFound, &kSampleOk}) {
    SCOPED_TRACE(l->at("method") + " " + l->at("code"));
    EXPECT_EQ(
        after.Count("logp_rpc_requests_total", *l) - before.Count("logp_rpc_requests_total", *l),
        1);
    EXPECT_EQ(after.Count("logp_rpc_duration_seconds_count", *l) -
                  before.Count("logp_rpc_duration_seconds_count", *l),
              1);
  }
  EXPECT_EQ(after.Count("logp_rpc_requests_total", kUploadOk), 1);  // unchanged
  ExpectHistogramsMatchCounters(after);
  // The buckets: 0.25 ms to 60 s, cumulative.
  Labels first = kScoreOk, last = kScoreOk;
  first["le"] = "0.00025";
  last["le"] = "60";
  EXPECT_FALSE(std::isnan(after.Value("logp_rpc_duration_seconds_bucket", first)));
  EXPECT_LE(after.Value("logp_rpc_duration_seconds_bucket", first),
            after.Value("logp_rpc_duration_seconds_bucket", last));
  // A watch lasts at least as long as the job it watched trained: more than nothing.
  EXPECT_GT(after.Value("logp_rpc_duration_seconds_sum", kWatchOk), 0);
}

TEST_F(MetricsTest, JobStorageAndProcessGaugesDuringAndAfterAJob) {
  const std::string model = TrainedModel();
  ASSERT_FALSE(model.empty());
  ASSERT_TRUE(client_->Score(model, Binary(1, 8, 2)).ok());  // loads it into the cache
  // A long MADE job, watched through the metrics while it trains, and one queued behind it.
  auto running = client_->CreateJob(Spec(dataset_.id(), v1::MODEL_FAMILY_MADE, 10000));
  ASSERT_TRUE(running.ok()) << running.status();
  const Labels job_labels = {
      {"job", running->id()}, {"tenant", "default"}, {"family", "MODEL_FAMILY_MADE"}};
  Scrape during;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  do {
    absl::SleepFor(absl::Milliseconds(20));
    during = Now();
  } while (std::isnan(during.Value("logp_job_validation_nll", job_labels)) &&
           absl::Now() < deadline);
  ASSERT_FALSE(std::isnan(during.Value("logp_job_validation_nll", job_labels))) << during.text;
  auto queued = client_->CreateJob(Spec(dataset_.id(), v1::MODEL_FAMILY_BERNOULLI, 1));
  ASSERT_TRUE(queued.ok()) << queued.status();
  during = Now();

  EXPECT_EQ(during.types.at("logp_job_step"), "gauge");
  EXPECT_GT(during.Value("logp_job_step", job_labels), 0);
  EXPECT_GT(during.Value("logp_job_samples_per_second", job_labels), 0);
  const double train_nll = during.Value("logp_job_train_nll", job_labels);
  EXPECT_TRUE(std::isfinite(train_nll) && train_nll > 0) << train_nll;
  EXPECT_GT(during.Value("logp_job_validation_nll", job_labels), 0);
  EXPECT_EQ(during.Series("logp_job_step"), 1);  // only the job that trains
  EXPECT_EQ(during.Value("logp_job_queue_depth"), 1);
  EXPECT_EQ(during.Value("logp_jobs", {{"state", "RUNNING"}, {"tenant", "default"}}), 1);
  EXPECT_EQ(during.Value("logp_jobs", {{"state", "QUEUED"}, {"tenant", "default"}}), 1);
  EXPECT_EQ(during.Value("logp_jobs", {{"state", "SUCCEEDED"}, {"tenant", "default"}}), 1);
  // Checkpoints every 10 steps.
  const absl::Time ckpt_deadline = absl::Now() + absl::Seconds(60);
  while (during.Value("logp_checkpoint_write_duration_seconds_count") < 1 &&
         absl::Now() < ckpt_deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    during = Now();
  }
  EXPECT_EQ(during.types.at("logp_checkpoint_write_duration_seconds"), "histogram");
  EXPECT_GE(during.Value("logp_checkpoint_write_duration_seconds_count"), 1);
  EXPECT_GT(during.Value("logp_checkpoint_write_duration_seconds_sum"), 0);
  EXPECT_EQ(during.Value("logp_checkpoint_write_failures_total"), 0);

  ASSERT_TRUE(client_->CancelJob(running->id()).ok());
  auto cancelled = client_->WaitForJob(running->id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  auto second = client_->WaitForJob(queued->id());
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->state(), v1::JOB_STATE_SUCCEEDED) << second->error();
  auto second_model = client_->GetModel(second->model_id());
  auto first_model = client_->GetModel(model);
  ASSERT_TRUE(second_model.ok() && first_model.ok());

  const Scrape after = Now();
  EXPECT_EQ(after.Series("logp_job_step"), 0);
  EXPECT_EQ(after.Series("logp_job_validation_nll"), 0);
  EXPECT_EQ(after.Value("logp_job_queue_depth"), 0);
  EXPECT_EQ(after.Series("logp_jobs", {{"state", "RUNNING"}}), 0);
  EXPECT_EQ(after.Series("logp_jobs", {{"state", "QUEUED"}}), 0);
  EXPECT_EQ(after.Value("logp_jobs", {{"state", "SUCCEEDED"}, {"tenant", "default"}}), 2);
  EXPECT_EQ(after.Value("logp_jobs", {{"state", "CANCELLED"}, {"tenant", "default"}}), 1);
  EXPECT_EQ(after.Value("logp_stored_bytes", {{"kind", "dataset"}, {"tenant", "default"}}),
            static_cast<double>(dataset_.stored_bytes()));
  EXPECT_EQ(after.Value("logp_stored_bytes", {{"kind", "model"}, {"tenant", "default"}}),
            static_cast<double>(first_model->stored_bytes() + second_model->stored_bytes()));
  EXPECT_GT(dataset_.stored_bytes(), 0u);
  // Both published models are in the scoring cache (Published keeps them).
  EXPECT_EQ(after.Value("logp_models_loaded"), 2);
  EXPECT_EQ(after.types.at("process_cpu_seconds_total"), "counter");
  EXPECT_GT(after.Value("process_cpu_seconds_total"), 0);
  EXPECT_GE(after.Value("process_cpu_seconds_total"), during.Value("process_cpu_seconds_total"));
  EXPECT_GT(after.Value("process_resident_memory_bytes"), 10e6);
  const double start = after.Value("process_start_time_seconds");
  const double now = absl::ToUnixSeconds(absl::Now());
  EXPECT_GT(start, now - 3600);
  EXPECT_LE(start, now + 1);
  ExpectHistogramsMatchCounters(after);
}

// Runs `promtool check metrics` on `text`; its exit status (-1 if it did not run) and output.
int Promtool(const std::string& dir, const std::string& text, std::string* output) {
  const std::string in = dir + "/scrape.txt", out = dir + "/promtool.out";
  std::ofstream(in) << text;
  const int st =
      system(("/usr/bin/promtool check metrics < " + in + " > " + out + " 2>&1").c_str());
  std::ifstream o(out);
  std::stringstream ss;
  ss << o.rdbuf();
  *output = ss.str();
  return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

TEST_F(MetricsTest, PromtoolAcceptsARealScrape) {
  ASSERT_EQ(access("/usr/bin/promtool", X_OK), 0)
      << "promtool is missing: scripts/install-deps.sh installs Debian's prometheus";
  const std::string model = TrainedModel();
  ASSERT_FALSE(model.empty());
  ASSERT_TRUE(client_->Score(model, Binary(1, 8, 2)).ok());
  EXPECT_FALSE(client_->Score("model-unknown", Binary(1, 8, 2)).ok());
  auto running = client_->CreateJob(Spec(dataset_.id(), v1::MODEL_FAMILY_MADE, 10000));
  ASSERT_TRUE(running.ok()) << running.status();
  const Labels job_labels = {
      {"job", running->id()}, {"tenant", "default"}, {"family", "MODEL_FAMILY_MADE"}};
  Scrape during;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  do {
    absl::SleepFor(absl::Milliseconds(20));
    during = Now();
  } while (std::isnan(during.Value("logp_job_validation_nll", job_labels)) &&
           absl::Now() < deadline);
  ASSERT_FALSE(std::isnan(during.Value("logp_job_validation_nll", job_labels)));
  std::string output;
  EXPECT_EQ(Promtool(dir_, during.text, &output), 0) << output << "\n" << during.text;
  EXPECT_EQ(output, "") << "promtool's lint findings";

  // promtool can fail: a counter without _total is one of its lint findings (exit status 3).
  EXPECT_EQ(
      Promtool(dir_, "# HELP bad_counter x\n# TYPE bad_counter counter\nbad_counter 1\n", &output),
      3)
      << output;
  ASSERT_TRUE(client_->CancelJob(running->id()).ok());
}

}  // namespace
}  // namespace logp
