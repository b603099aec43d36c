// JobManager and scoring through Core::Open on a MemoryCatalog (files in a temporary directory):
// no gRPC, no network, no SQLite. Jobs run to their end, get cancelled, fill the queue, pin their
// datasets and survive restarts; published models score exactly what the closed form says.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "proto/cc/records.h"
#include "server/core/call_control.h"
#include "server/core/core.h"
#include "server/core/memory_catalog.h"
#include "server/core/scoring.h"
#include "tests/server/test_util.h"

namespace logp {
namespace {

// Ten binary records of dimension 3 with 7, 2 and 5 ones in their columns, and four records to
// validate on.
constexpr int kDim = 3;
const std::vector<uint8_t> kTrain = {
    1, 0, 1,  //
    1, 1, 0,  //
    1, 0, 1,  //
    0, 0, 0,  //
    1, 0, 1,  //
    1, 1, 1,  //
    0, 0, 0,  //
    1, 0, 1,  //
    0, 0, 0,  //
    1, 0, 0,  //
};
const std::vector<uint8_t> kValid = {
    0, 0, 1,  //
    1, 1, 1,  //
    0, 1, 0,  //
    1, 0, 0,  //
};
// Every record of {0,1}^3.
const std::vector<uint8_t> kAllRecords = {0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1,
                                          1, 0, 0, 1, 0, 1, 1, 1, 0, 1, 1, 1};

// The maximum-likelihood estimate with additive smoothing `a`, by hand:
// p_d = (ones_d + a) / (N + 2a).
std::vector<double> FitBernoulli(const std::vector<uint8_t>& values, double a) {
  const double n = static_cast<double>(values.size() / kDim);
  std::vector<double> p(kDim, 0.0);
  for (size_t i = 0; i < values.size(); ++i) p[i % kDim] += values[i];
  for (double& pd : p) pd = (pd + a) / (n + 2 * a);
  return p;
}

// log p(x) = sum_d x_d log p_d + (1 - x_d) log(1 - p_d) of every record of `values`.
std::vector<double> BernoulliLogProbs(const std::vector<double>& p,
                                      const std::vector<uint8_t>& values) {
  std::vector<double> out;
  for (size_t r = 0; r < values.size() / kDim; ++r) {
    double lp = 0;
    for (int d = 0; d < kDim; ++d) {
      lp += values[r * kDim + d] ? std::log(p[d]) : std::log1p(-p[d]);
    }
    out.push_back(lp);
  }
  return out;
}

double MeanNll(const std::vector<double>& log_probs) {
  double sum = 0;
  for (double lp : log_probs) sum -= lp;
  return sum / static_cast<double>(log_probs.size());
}

// uint8-encoded binary records of dimension kDim.
v1::RecordBlock Block(const std::vector<uint8_t>& values, int dim = kDim) {
  v1::RecordBlock b;
  b.set_encoding(v1::ENCODING_UINT8);
  b.set_num_records(values.size() / dim);
  b.set_dim(dim);
  b.set_data(std::string(values.begin(), values.end()));
  return b;
}

bool IsStateChange(const v1::JobEvent& e, v1::JobState state) {
  return e.has_state_change() && e.state_change().state() == state;
}

::testing::AssertionResult ContiguousFromOne(const std::vector<v1::JobEvent>& events) {
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].seq() != static_cast<int64_t>(i + 1)) {
      return ::testing::AssertionFailure()
             << "event " << i << " has seq " << events[i].seq() << ", want " << i + 1;
    }
  }
  return ::testing::AssertionSuccess();
}

bool NotAfter(const google::protobuf::Timestamp& a, const google::protobuf::Timestamp& b) {
  return a.seconds() < b.seconds() || (a.seconds() == b.seconds() && a.nanos() <= b.nanos());
}

class JobManagerTest : public ::testing::Test {
 protected:
  JobManagerTest() {
    options_.data_dir = dir_.path();
    options_.catalog = &catalog_;
    options_.jobs.training_slots = 1;
    options_.jobs.threads_per_slot = 1;
    options_.jobs.progress_interval_seconds = 0.01;
    // Checkpoints at epoch ends and when the core shuts down only.
    options_.jobs.checkpoint_interval_seconds = 0;
  }
  void SetUp() override { Open(); }

  // Opens a Core on the test's catalogue and data directory (shutting the previous one down
  // first, gracefully: a restart).
  void Open() {
    core_.reset();
    absl::StatusOr<std::unique_ptr<Core>> core = Core::Open(options_);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = std::move(*core);
  }
  JobManager& jobs() { return core_->jobs(); }

  v1::Dataset Store(const std::vector<v1::CreateDatasetRequest>& upload) {
    absl::StatusOr<v1::Dataset> ds = StoreUpload(core_->datasets(), upload);
    EXPECT_TRUE(ds.ok()) << ds.status();
    return ds.value_or(v1::Dataset());
  }
  // Stores kTrain and kValid.
  void StoreBernoulliData() {
    train_ = Store(UploadOf(v1::DATA_KIND_BINARY, kDim, kTrain));
    valid_ = Store(UploadOf(v1::DATA_KIND_BINARY, kDim, kValid));
  }
  // Independent Bernoulli on kTrain (all of it: kValid validates).
  v1::JobSpec BernoulliSpec(double pseudo_count) {
    v1::JobSpec spec;
    spec.set_dataset_id(train_.id());
    spec.set_validation_dataset_id(valid_.id());
    spec.mutable_model()->set_family(v1::MODEL_FAMILY_BERNOULLI);
    spec.mutable_model()->mutable_bernoulli()->set_pseudo_count(pseudo_count);
    spec.set_epochs(1);
    return spec;
  }
  // Trains the Bernoulli model to its end; the finished job.
  v1::Job TrainBernoulli(double pseudo_count) {
    absl::StatusOr<v1::Job> job =
        jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(pseudo_count));
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return v1::Job();
    const v1::Job done = WaitForEnd(jobs(), job->id());
    EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
    return done;
  }
  // A job that trains until it is cancelled (MADE, one record per step), started and past its
  // fifth step, so that it holds the only training slot.
  v1::Job StartBlocker(const std::string& validation_dataset_id = "") {
    const v1::Dataset data = Store(RandomBinaryUpload(200, 1));
    v1::JobSpec spec;
    spec.set_dataset_id(data.id());
    if (validation_dataset_id.empty()) {
      spec.set_validation_fraction(0.2);
    } else {
      spec.set_validation_dataset_id(validation_dataset_id);
    }
    spec.mutable_model()->set_family(v1::MODEL_FAMILY_MADE);
    spec.mutable_model()->mutable_made()->set_hidden_units(8);
    spec.set_batch_size(1);
    spec.set_epochs(10000);
    spec.set_seed(5);
    absl::StatusOr<v1::Job> job = jobs().CreateJob(Scope::AllTenants(), spec);
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return v1::Job();
    const v1::Job running = WaitForJob(jobs(), job->id(), [](const v1::Job& j) {
      return j.state() == v1::JOB_STATE_RUNNING && j.step() >= 5;
    });
    EXPECT_EQ(running.state(), v1::JOB_STATE_RUNNING);
    return running;
  }
  // Makes the catalogue say what kill -9 leaves of a job the server was training: its row
  // RUNNING, with the event RunJob writes when a job starts (and the crash history given).
  void LeaveRunning(const std::string& id, int32_t crash_count = 0,
                    int64_t crash_checkpoint_step = 0) {
    absl::StatusOr<v1::Job> row = catalog_.GetJob(id);
    ASSERT_TRUE(row.ok()) << row.status();
    ASSERT_FALSE(IsFinalState(row->state()));
    row->set_state(v1::JOB_STATE_RUNNING);
    row->set_last_seq(row->last_seq() + 1);
    row->set_crash_count(crash_count);
    row->set_crash_checkpoint_step(crash_checkpoint_step);
    v1::JobEvent e;
    e.set_seq(row->last_seq());
    *e.mutable_time() = row->create_time();
    e.mutable_state_change()->set_state(v1::JOB_STATE_RUNNING);
    ASSERT_TRUE(catalog_.AppendEvents(*row, {e}).ok());
  }
  ModelResolver Resolver() {
    return [this](const std::string& model_id, const std::string& job_id) {
      return core_->ResolveModel(model_id, job_id);
    };
  }
  absl::StatusOr<v1::ScoreResponse> Score(v1::ScoreRequest request,
                                          const v1::RecordBlock& records) {
    *request.mutable_records() = records;
    return ScoreRecords(Resolver(), request, ScoringLimits(), CallControl());
  }
  absl::StatusOr<v1::ScoreResponse> ScoreWithModel(const std::string& model_id,
                                                   const v1::RecordBlock& records) {
    v1::ScoreRequest request;
    request.set_model_id(model_id);
    return Score(request, records);
  }
  absl::StatusOr<v1::ScoreResponse> ScoreWithJob(const std::string& job_id,
                                                 const v1::RecordBlock& records) {
    v1::ScoreRequest request;
    request.set_job_id(job_id);
    return Score(request, records);
  }
  absl::StatusOr<v1::EvaluateResponse> Evaluate(const std::string& model_id,
                                                const std::string& dataset_id) {
    v1::EvaluateRequest request;
    request.set_model_id(model_id);
    request.set_dataset_id(dataset_id);
    return EvaluateDataset(Resolver(), core_->datasets(), request, CallControl());
  }
  // Polls the job's events until one satisfies `match`; null past 60 s (a test failure).
  std::optional<v1::JobEvent> WaitForEvent(const std::string& id,
                                           const std::function<bool(const v1::JobEvent&)>& match) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      for (const v1::JobEvent& e : AllEvents(jobs(), id)) {
        if (match(e)) return e;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    ADD_FAILURE() << "job " << id << ": the event never came";
    return std::nullopt;
  }

  // Destroyed in reverse: the core first, then the catalogue and the directory it used.
  TempDir dir_;
  MemoryCatalog catalog_;
  CoreOptions options_;
  std::unique_ptr<Core> core_;
  v1::Dataset train_, valid_;
};

// A job runs QUEUED -> RUNNING -> SUCCEEDED with events numbered 1..N (the same in memory and in
// the catalogue) and publishes its model; the model's validation NLL is the closed form's.
TEST_F(JobManagerTest, BernoulliJobSucceedsWithContiguousEventsAndPublishesItsModel) {
  StoreBernoulliData();
  absl::StatusOr<v1::Job> created = jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(0.5));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->state(), v1::JOB_STATE_QUEUED);
  const v1::Job done = WaitForEnd(jobs(), created->id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_TRUE(done.error().empty());
  EXPECT_TRUE(done.has_start_time());
  EXPECT_TRUE(done.has_end_time());
  EXPECT_EQ(done.checkpoint_step(), 0);  // its checkpoints went with its end
  ASSERT_FALSE(done.model_id().empty());

  const double want_nll = MeanNll(BernoulliLogProbs(FitBernoulli(kTrain, 0.5), kValid));
  absl::StatusOr<v1::Model> model = catalog_.GetModel(done.model_id());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->job_id(), done.id());
  EXPECT_EQ(model->dataset_id(), train_.id());
  EXPECT_EQ(model->kind(), v1::DATA_KIND_BINARY);
  EXPECT_EQ(model->dim(), static_cast<uint32_t>(kDim));
  EXPECT_EQ(model->spec().family(), v1::MODEL_FAMILY_BERNOULLI);
  EXPECT_EQ(model->score_kind(), v1::SCORE_KIND_EXACT);
  EXPECT_NEAR(model->validation_nll(), want_nll, 1e-5);
  EXPECT_NEAR(done.best_validation_nll(), want_nll, 1e-5);

  absl::StatusOr<EventBatch> batch = jobs().ReadEvents(done.id(), 0, 1000);
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_TRUE(batch->ended);
  const std::vector<v1::JobEvent>& events = batch->events;
  ASSERT_GE(events.size(), 3u);
  EXPECT_TRUE(ContiguousFromOne(events));
  EXPECT_EQ(done.last_seq(), static_cast<int64_t>(events.size()));
  EXPECT_TRUE(IsStateChange(events[0], v1::JOB_STATE_QUEUED));
  EXPECT_EQ(events[0].state_change().message(), "queued");
  EXPECT_TRUE(IsStateChange(events[1], v1::JOB_STATE_RUNNING));
  EXPECT_TRUE(IsStateChange(events.back(), v1::JOB_STATE_SUCCEEDED));
  EXPECT_EQ(events.back().state_change().message(), done.stop_reason());
  int state_changes = 0, epochs = 0;
  for (const auto& e : events) {
    state_changes += e.has_state_change();
    if (e.has_epoch_summary()) {
      ++epochs;
      EXPECT_EQ(e.epoch_summary().epoch(), 1);
      EXPECT_TRUE(e.epoch_summary().is_best());
      EXPECT_NEAR(e.epoch_summary().validation_nll(), want_nll, 1e-5);
    }
  }
  EXPECT_EQ(state_changes, 3);
  EXPECT_EQ(epochs, 1);  // a closed-form fit is one epoch

  // The catalogue holds the same history and the finished row.
  absl::StatusOr<std::vector<v1::JobEvent>> stored = catalog_.ListEvents(done.id(), 1);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), events.size());
  for (size_t i = 0; i < events.size(); ++i) EXPECT_TRUE(SameProto((*stored)[i], events[i]));
  EXPECT_TRUE(SameProto(ValueOf(catalog_.GetJob(done.id())), done));

  // Read two at a time, the events are the same.
  std::vector<v1::JobEvent> paged;
  for (int64_t from = 1;; from = paged.back().seq() + 1) {
    absl::StatusOr<EventBatch> b = jobs().ReadEvents(done.id(), from, 2);
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_LE(b->events.size(), 2u);
    paged.insert(paged.end(), b->events.begin(), b->events.end());
    if (b->ended || b->events.empty()) break;
  }
  ASSERT_EQ(paged.size(), events.size());
  for (size_t i = 0; i < events.size(); ++i) EXPECT_TRUE(SameProto(paged[i], events[i]));

  EXPECT_TRUE(Is(jobs().ReadEvents(done.id(), -1, 1).status(), absl::StatusCode::kInvalidArgument,
                 "from_seq"));
  EXPECT_TRUE(Is(jobs().ReadEvents(done.id(), 1, 0).status(), absl::StatusCode::kInvalidArgument,
                 "max_events"));
  EXPECT_TRUE(Is(jobs().ReadEvents("job-nope", 1, 1).status(), absl::StatusCode::kNotFound));
  EXPECT_TRUE(Is(jobs().GetJob("job-nope").status(), absl::StatusCode::kNotFound, "job-nope"));
  absl::StatusOr<Page<v1::Job>> listed = jobs().ListJobs("", 10, "");
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->items.size(), 1u);
  EXPECT_EQ(listed->items[0].id(), done.id());
  EXPECT_EQ(ValueOf(core_->models().List("", 10, "")).items.size(), 1u);
}

// Score gives exactly log p(x) = sum_d x_d log p_d + (1 - x_d) log(1 - p_d) with the smoothed
// frequencies of the training data, a distribution that sums to 1 over {0,1}^3; the model and
// its job score alike, from uint8 and bit-packed records alike.
TEST_F(JobManagerTest, ScoreIsTheClosedFormBernoulliLogLikelihood) {
  StoreBernoulliData();
  const v1::Job job = TrainBernoulli(0.5);
  ASSERT_FALSE(job.model_id().empty());
  const std::vector<double> want = BernoulliLogProbs(FitBernoulli(kTrain, 0.5), kAllRecords);

  absl::StatusOr<v1::ScoreResponse> scored = ScoreWithModel(job.model_id(), Block(kAllRecords));
  ASSERT_TRUE(scored.ok()) << scored.status();
  ASSERT_EQ(scored->log_prob_size(), 8);
  double total = 0;
  for (int i = 0; i < 8; ++i) {
    EXPECT_NEAR(scored->log_prob(i), want[i], 1e-5) << "record " << i;
    total += std::exp(scored->log_prob(i));
  }
  EXPECT_NEAR(total, 1.0, 1e-5);
  EXPECT_EQ(scored->score_kind(), v1::SCORE_KIND_EXACT);
  EXPECT_EQ(scored->standard_error_size(), 0);
  EXPECT_EQ(scored->importance_samples(), 0);
  EXPECT_EQ(scored->checkpoint_step(), 0);

  // A finished job scores with its published model.
  absl::StatusOr<v1::ScoreResponse> by_job = ScoreWithJob(job.id(), Block(kAllRecords));
  ASSERT_TRUE(by_job.ok()) << by_job.status();
  ASSERT_EQ(by_job->log_prob_size(), 8);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(by_job->log_prob(i), scored->log_prob(i));
  EXPECT_EQ(by_job->checkpoint_step(), 0);

  // The same records bit-packed.
  RecordMatrix m = ValueOf(RecordMatrix::Empty(v1::DATA_KIND_BINARY, kDim, 2));
  ASSERT_TRUE(DecodeAppend(Block(kAllRecords), 0, &m).ok());
  const v1::RecordBlock packed = Encode(m, 0, m.rows);
  ASSERT_EQ(packed.encoding(), v1::ENCODING_BITPACKED);
  absl::StatusOr<v1::ScoreResponse> from_bits = ScoreWithModel(job.model_id(), packed);
  ASSERT_TRUE(from_bits.ok()) << from_bits.status();
  ASSERT_EQ(from_bits->log_prob_size(), 8);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(from_bits->log_prob(i), scored->log_prob(i));
}

// Without smoothing the fit is the MLE, whose mean log-likelihood on its own training data is
// minus the summed entropies of the column frequencies; Evaluate reports that mean NLL with the
// standard error, interval and bits/dim of the per-record values computed here.
TEST_F(JobManagerTest, EvaluateIsTheHandComputedMeanNllWithItsError) {
  StoreBernoulliData();
  const v1::Job job = TrainBernoulli(0.0);
  ASSERT_FALSE(job.model_id().empty());
  const std::vector<double> p = FitBernoulli(kTrain, 0.0);
  EXPECT_DOUBLE_EQ(p[0], 0.7);
  double entropy = 0;
  for (double pd : p) entropy -= pd * std::log(pd) + (1 - pd) * std::log1p(-pd);

  absl::StatusOr<v1::EvaluateResponse> on_train = Evaluate(job.model_id(), train_.id());
  ASSERT_TRUE(on_train.ok()) << on_train.status();
  EXPECT_EQ(on_train->num_records(), 10u);
  EXPECT_NEAR(on_train->mean_nll(), entropy, 1e-5);
  const std::vector<double> lp = BernoulliLogProbs(p, kTrain);
  double var = 0;
  for (double x : lp) var += (-x - entropy) * (-x - entropy);
  const double se = std::sqrt(var / 9) / std::sqrt(10.0);
  EXPECT_NEAR(on_train->standard_error(), se, 1e-5);
  EXPECT_NEAR(on_train->ci95_low(), on_train->mean_nll() - 1.96 * on_train->standard_error(),
              1e-12);
  EXPECT_NEAR(on_train->ci95_high(), on_train->mean_nll() + 1.96 * on_train->standard_error(),
              1e-12);
  EXPECT_NEAR(on_train->bits_per_dim(), entropy / (kDim * std::log(2.0)), 1e-5);
  EXPECT_EQ(on_train->score_kind(), v1::SCORE_KIND_EXACT);

  absl::StatusOr<v1::EvaluateResponse> on_valid = Evaluate(job.model_id(), valid_.id());
  ASSERT_TRUE(on_valid.ok()) << on_valid.status();
  EXPECT_EQ(on_valid->num_records(), 4u);
  EXPECT_NEAR(on_valid->mean_nll(), MeanNll(BernoulliLogProbs(p, kValid)), 1e-5);
  // Held-out data fits worse than the data the MLE was fitted to.
  EXPECT_GT(on_valid->mean_nll(), on_train->mean_nll());
}

// Samples follow the fitted frequencies, and equal seeds give equal samples.
TEST_F(JobManagerTest, SamplesFollowTheFittedFrequencies) {
  StoreBernoulliData();
  const v1::Job job = TrainBernoulli(0.5);
  ASSERT_FALSE(job.model_id().empty());
  auto draw = [&](uint64_t seed) {
    v1::SampleRequest request;
    request.set_model_id(job.model_id());
    request.set_num_samples(4000);
    request.set_seed(seed);
    RecordMatrix out = ValueOf(RecordMatrix::Empty(v1::DATA_KIND_BINARY, kDim, 2));
    absl::Status st = SampleRecords(
        Resolver(), request, ScoringLimits(),
        [&](const v1::SampleResponse& r) { return DecodeAppend(r.records(), 0, &out).ok(); },
        CallControl());
    EXPECT_TRUE(st.ok()) << st;
    return out;
  };
  const RecordMatrix a = draw(11), b = draw(11);
  ASSERT_EQ(a.rows, 4000);
  const std::vector<double> p = FitBernoulli(kTrain, 0.5);
  for (int d = 0; d < kDim; ++d) {
    double ones = 0;
    for (int64_t r = 0; r < a.rows; ++r) ones += a.At(r, d);
    const double sd = std::sqrt(p[d] * (1 - p[d]) / a.rows);
    EXPECT_NEAR(ones / a.rows, p[d], 5 * sd) << "column " << d;
  }
  bool equal = a.rows == b.rows;
  for (int64_t r = 0; equal && r < a.rows; ++r) {
    for (int d = 0; d < kDim; ++d) equal = equal && a.At(r, d) == b.At(r, d);
  }
  EXPECT_TRUE(equal);
}

TEST_F(JobManagerTest, ScoringErrorsHaveTheirCodes) {
  StoreBernoulliData();
  const v1::Job job = TrainBernoulli(0.5);
  const std::string model = job.model_id();
  ASSERT_FALSE(model.empty());
  // Records that do not fit the model.
  EXPECT_TRUE(Is(ScoreWithModel(model, Block({0, 1, 0, 1}, 4)).status(),
                 absl::StatusCode::kInvalidArgument, "dim 4"));
  EXPECT_TRUE(Is(ScoreWithModel(model, Block({0, 1, 0, 1, 1, 2})).status(),
                 absl::StatusCode::kInvalidArgument, "record 1, column 2"));
  v1::RecordBlock floats;
  floats.set_encoding(v1::ENCODING_FLOAT32_LE);
  floats.set_num_records(1);
  floats.set_dim(kDim);
  floats.set_data(std::string(4 * kDim, '\0'));
  EXPECT_TRUE(Is(ScoreWithModel(model, floats).status(), absl::StatusCode::kInvalidArgument));
  // Unknown targets; no target.
  EXPECT_TRUE(Is(ScoreWithModel("model-nope", Block(kValid)).status(), absl::StatusCode::kNotFound,
                 "model-nope"));
  EXPECT_TRUE(Is(ScoreWithJob("job-nope", Block(kValid)).status(), absl::StatusCode::kNotFound,
                 "job-nope"));
  EXPECT_TRUE(Is(Score(v1::ScoreRequest(), Block(kValid)).status(),
                 absl::StatusCode::kInvalidArgument, "model_id or job_id"));
  // Over the record limit.
  v1::ScoreRequest request;
  request.set_model_id(model);
  *request.mutable_records() = Block(kValid);
  ScoringLimits limits;
  limits.max_score_records = 3;
  EXPECT_TRUE(Is(ScoreRecords(Resolver(), request, limits, CallControl()).status(),
                 absl::StatusCode::kResourceExhausted, "at most 3"));
  // A call already cancelled or past its deadline does no work.
  EXPECT_TRUE(Is(ScoreRecords(Resolver(), request, ScoringLimits(),
                              CallControl(absl::InfiniteFuture(), [] { return true; }))
                     .status(),
                 absl::StatusCode::kCancelled));
  EXPECT_TRUE(Is(ScoreRecords(Resolver(), request, ScoringLimits(),
                              CallControl(absl::Now() - absl::Seconds(1), nullptr))
                     .status(),
                 absl::StatusCode::kDeadlineExceeded));
  // Evaluate: a dataset of another dim or kind, an unknown one, none.
  const v1::Dataset wide = Store(UploadOf(v1::DATA_KIND_BINARY, 4, {0, 1, 1, 0, 1, 1, 0, 0}));
  EXPECT_TRUE(Is(Evaluate(model, wide.id()).status(), absl::StatusCode::kInvalidArgument, "dim 4"));
  const v1::Dataset categorical =
      Store(UploadOf(v1::DATA_KIND_CATEGORICAL, kDim, {0, 1, 2, 2, 1, 0}, 3));
  EXPECT_TRUE(Is(Evaluate(model, categorical.id()).status(), absl::StatusCode::kInvalidArgument,
                 "categorical"));
  EXPECT_TRUE(
      Is(Evaluate(model, "ds-nope").status(), absl::StatusCode::kNotFound, "dataset 'ds-nope'"));
  EXPECT_TRUE(Is(Evaluate(model, "").status(), absl::StatusCode::kInvalidArgument, "dataset_id"));
  EXPECT_TRUE(Is(Evaluate("model-nope", train_.id()).status(), absl::StatusCode::kNotFound));
  // Sample: none, too many.
  v1::SampleRequest sample;
  sample.set_model_id(model);
  auto ignore = [](const v1::SampleResponse&) { return true; };
  EXPECT_TRUE(Is(SampleRecords(Resolver(), sample, ScoringLimits(), ignore, CallControl()),
                 absl::StatusCode::kInvalidArgument, "num_samples"));
  sample.set_num_samples(11);
  limits.max_samples = 10;
  EXPECT_TRUE(Is(SampleRecords(Resolver(), sample, limits, ignore, CallControl()),
                 absl::StatusCode::kResourceExhausted, "at most 10"));
}

// A bad spec is refused with its code and leaves no job behind.
TEST_F(JobManagerTest, CreateJobRefusesBadSpecsAndStoresNothing) {
  StoreBernoulliData();
  v1::JobSpec spec = BernoulliSpec(0.5);
  spec.clear_dataset_id();
  EXPECT_TRUE(Is(jobs().CreateJob(Scope::AllTenants(), spec).status(),
                 absl::StatusCode::kInvalidArgument, "spec.dataset_id"));
  spec = BernoulliSpec(0.5);
  spec.set_dataset_id("ds-nope");
  EXPECT_TRUE(Is(jobs().CreateJob(Scope::AllTenants(), spec).status(), absl::StatusCode::kNotFound,
                 "ds-nope"));
  spec = BernoulliSpec(0.5);
  spec.mutable_model()->set_family(v1::MODEL_FAMILY_CATEGORICAL);
  EXPECT_TRUE(Is(jobs().CreateJob(Scope::AllTenants(), spec).status(),
                 absl::StatusCode::kFailedPrecondition));
  spec = BernoulliSpec(0.5);
  spec.set_batch_size(0);
  EXPECT_TRUE(Is(jobs().CreateJob(Scope::AllTenants(), spec).status(),
                 absl::StatusCode::kInvalidArgument, "spec.batch_size"));
  spec = BernoulliSpec(0.5);
  spec.set_validation_dataset_id(Store(RandomBinaryUpload(10, 2, 5)).id());
  EXPECT_TRUE(Is(jobs().CreateJob(Scope::AllTenants(), spec).status(),
                 absl::StatusCode::kInvalidArgument, "spec.validation_dataset_id"));
  EXPECT_TRUE(ValueOf(jobs().ListJobs("", 10, "")).items.empty());
  EXPECT_TRUE(ValueOf(catalog_.ListJobs("", 10, "")).items.empty());
}

// A request_id names one job: a retry returns it (also after a restart, once it has ended), the
// same id with another spec is ALREADY_EXISTS.
TEST_F(JobManagerTest, CreateJobWithARequestIdIsIdempotentAcrossARestart) {
  StoreBernoulliData();
  absl::StatusOr<v1::Job> first =
      jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(0.5), "request-1");
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<v1::Job> retry =
      jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(0.5), "request-1");
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->id(), first->id());
  EXPECT_TRUE(Is(jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(1.0), "request-1").status(),
                 absl::StatusCode::kAlreadyExists, "request-1"));
  EXPECT_EQ(ValueOf(catalog_.GetCreateRequest("job", "default", "request-1")).resource_id,
            first->id());
  EXPECT_EQ(WaitForEnd(jobs(), first->id()).state(), v1::JOB_STATE_SUCCEEDED);
  Open();
  absl::StatusOr<v1::Job> after =
      jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(0.5), "request-1");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->id(), first->id());
  EXPECT_EQ(after->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(ValueOf(jobs().ListJobs("", 10, "")).items.size(), 1u);
}

// A QUEUED job is cancelled at once and never runs; a RUNNING one stops at a step boundary
// without a model; an ended job cannot be cancelled again.
TEST_F(JobManagerTest, CancelQueuedAndRunningJobs) {
  const v1::Job blocker = StartBlocker();
  StoreBernoulliData();
  absl::StatusOr<v1::Job> queued = jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(0.5));
  ASSERT_TRUE(queued.ok()) << queued.status();
  EXPECT_EQ(queued->state(), v1::JOB_STATE_QUEUED);
  EXPECT_TRUE(Is(ScoreWithJob(queued->id(), Block(kValid)).status(),
                 absl::StatusCode::kFailedPrecondition, "no checkpoint yet"));

  absl::StatusOr<v1::Job> cancelled = jobs().CancelJob(queued->id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(cancelled->has_end_time());
  EXPECT_FALSE(cancelled->has_start_time());
  absl::StatusOr<EventBatch> events = jobs().ReadEvents(queued->id(), 1, 100);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_TRUE(events->ended);
  ASSERT_EQ(events->events.size(), 2u);
  EXPECT_TRUE(ContiguousFromOne(events->events));
  EXPECT_TRUE(IsStateChange(events->events[0], v1::JOB_STATE_QUEUED));
  EXPECT_TRUE(IsStateChange(events->events[1], v1::JOB_STATE_CANCELLED));
  EXPECT_EQ(events->events[1].state_change().message(), "cancelled before it started");
  EXPECT_EQ(ValueOf(catalog_.GetJob(queued->id())).state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(Is(jobs().CancelJob(queued->id()).status(), absl::StatusCode::kFailedPrecondition,
                 "already ended"));
  EXPECT_TRUE(Is(ScoreWithJob(queued->id(), Block(kValid)).status(),
                 absl::StatusCode::kFailedPrecondition, "has no model"));
  EXPECT_TRUE(Is(jobs().CancelJob("job-nope").status(), absl::StatusCode::kNotFound));

  ASSERT_TRUE(jobs().CancelJob(blocker.id()).ok());
  const v1::Job end = WaitForEnd(jobs(), blocker.id());
  EXPECT_EQ(end.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(end.model_id().empty());
  EXPECT_TRUE(end.error().empty());
  const std::vector<v1::JobEvent> history = AllEvents(jobs(), blocker.id());
  EXPECT_TRUE(ContiguousFromOne(history));
  ASSERT_FALSE(history.empty());
  EXPECT_TRUE(IsStateChange(history.back(), v1::JOB_STATE_CANCELLED));
  EXPECT_EQ(history.back().state_change().message(), "cancelled by request");
  int64_t last_step = 0, progress = 0;
  for (const auto& e : history) {
    if (!e.has_progress()) continue;
    ++progress;
    EXPECT_GT(e.progress().step(), last_step);
    last_step = e.progress().step();
  }
  EXPECT_GT(progress, 0);
  EXPECT_EQ(ValueOf(catalog_.GetJob(blocker.id())).last_seq(),
            static_cast<int64_t>(history.size()));
  EXPECT_TRUE(ValueOf(catalog_.ListModels("", 10, "")).items.empty());
  EXPECT_TRUE(Is(jobs().CancelJob(blocker.id()).status(), absl::StatusCode::kFailedPrecondition));
}

// Past max_queued waiting jobs CreateJob is RESOURCE_EXHAUSTED and stores nothing; a place freed
// is a place taken.
TEST_F(JobManagerTest, FullQueueIsResourceExhausted) {
  options_.jobs.max_queued = 2;
  Open();
  const v1::Job blocker = StartBlocker();  // running: not in the queue
  StoreBernoulliData();
  absl::StatusOr<v1::Job> b = jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(0.5));
  absl::StatusOr<v1::Job> c = jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(0.5));
  ASSERT_TRUE(b.ok() && c.ok());
  EXPECT_TRUE(Is(jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(0.5)).status(),
                 absl::StatusCode::kResourceExhausted, "queue is full"));
  EXPECT_EQ(ValueOf(catalog_.ListJobs("", 10, "")).items.size(), 3u);
  ASSERT_TRUE(jobs().CancelJob(b->id()).ok());
  absl::StatusOr<v1::Job> d = jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(0.5));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->state(), v1::JOB_STATE_QUEUED);
  EXPECT_TRUE(Is(jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(0.5)).status(),
                 absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(ValueOf(catalog_.ListJobs("", 10, "")).items.size(), 4u);
  EXPECT_EQ(ValueOf(jobs().GetJob(blocker.id())).state(), v1::JOB_STATE_RUNNING);
}

// A dataset a queued or running job trains or validates on cannot be deleted; once the job has
// ended it can, row and file.
TEST_F(JobManagerTest, DeleteDatasetInUseIsFailedPrecondition) {
  const v1::Dataset validation = Store(RandomBinaryUpload(20, 9));
  const v1::Job blocker = StartBlocker(validation.id());
  const std::string training = blocker.spec().dataset_id();
  EXPECT_TRUE(Is(core_->DeleteDataset(training), absl::StatusCode::kFailedPrecondition,
                 blocker.id() + " is JOB_STATE_RUNNING"));
  EXPECT_TRUE(Is(core_->DeleteDataset(validation.id()), absl::StatusCode::kFailedPrecondition,
                 blocker.id()));
  StoreBernoulliData();
  absl::StatusOr<v1::Job> queued = jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(0.5));
  ASSERT_TRUE(queued.ok()) << queued.status();
  EXPECT_TRUE(Is(core_->DeleteDataset(train_.id()), absl::StatusCode::kFailedPrecondition,
                 queued->id() + " is JOB_STATE_QUEUED"));
  ASSERT_TRUE(jobs().CancelJob(queued->id()).ok());
  EXPECT_TRUE(core_->DeleteDataset(train_.id()).ok());
  EXPECT_TRUE(Is(catalog_.GetDataset(train_.id()).status(), absl::StatusCode::kNotFound));
  EXPECT_TRUE(Is(core_->DeleteDataset(train_.id()), absl::StatusCode::kNotFound));

  ASSERT_TRUE(jobs().CancelJob(blocker.id()).ok());
  EXPECT_EQ(WaitForEnd(jobs(), blocker.id()).state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(core_->DeleteDataset(training).ok());
  EXPECT_TRUE(core_->DeleteDataset(validation.id()).ok());
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/datasets/" + training + ".ds"));
  EXPECT_TRUE(Is(core_->datasets().Get(training).status(), absl::StatusCode::kNotFound));
  EXPECT_TRUE(Is(core_->DeleteDataset("ds-nope"), absl::StatusCode::kNotFound));
}

// A job the server died under is re-queued at the next start, ahead of jobs queued before it, with
// its event history continuing; a job suspended by a graceful stop resumes from its checkpoint.
TEST_F(JobManagerTest, RestartRequeuesAJobLeftRunningAheadOfQueuedOnes) {
  const v1::Job blocker = StartBlocker();
  StoreBernoulliData();
  absl::StatusOr<v1::Job> job = jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(0.5));
  ASSERT_TRUE(job.ok()) << job.status();
  core_.reset();  // graceful: the blocker checkpoints and goes back to the queue
  const v1::Job suspended = ValueOf(catalog_.GetJob(blocker.id()));
  ASSERT_EQ(suspended.state(), v1::JOB_STATE_QUEUED);
  const int64_t checkpoint = suspended.checkpoint_step();
  ASSERT_GT(checkpoint, 0);
  LeaveRunning(job->id());  // as if the server had been killed while it trained

  Open();
  const v1::Job done = WaitForEnd(jobs(), job->id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.crash_count(), 1);
  EXPECT_EQ(done.crash_checkpoint_step(), 0);
  EXPECT_FALSE(done.model_id().empty());
  const std::vector<v1::JobEvent> events = AllEvents(jobs(), job->id());
  ASSERT_GE(events.size(), 5u);
  EXPECT_TRUE(ContiguousFromOne(events));
  EXPECT_TRUE(IsStateChange(events[1], v1::JOB_STATE_RUNNING));  // written by LeaveRunning
  EXPECT_TRUE(IsStateChange(events[2], v1::JOB_STATE_QUEUED));
  EXPECT_EQ(events[2].state_change().message(),
            "requeued after a server restart; no checkpoint yet, training starts over");
  EXPECT_TRUE(IsStateChange(events[3], v1::JOB_STATE_RUNNING));
  EXPECT_TRUE(IsStateChange(events.back(), v1::JOB_STATE_SUCCEEDED));

  // The blocker, queued before the job, waited for it, then resumed where it was suspended.
  std::optional<v1::JobEvent> resumed = WaitForEvent(blocker.id(), [&](const v1::JobEvent& e) {
    return e.seq() > suspended.last_seq() && IsStateChange(e, v1::JOB_STATE_RUNNING);
  });
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(resumed->state_change().message(),
            absl::StrCat("resuming from the checkpoint at step ", checkpoint));
  EXPECT_TRUE(NotAfter(events.back().time(), resumed->time()));
  EXPECT_EQ(ValueOf(jobs().GetJob(blocker.id())).crash_count(),
            0);  // it was not running at the "crash"
  // A running job scores with its newest checkpoint.
  absl::StatusOr<v1::ScoreResponse> probe =
      ScoreWithJob(blocker.id(), Block(std::vector<uint8_t>(32, 0), 16));
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_GE(probe->checkpoint_step(), checkpoint);
  ASSERT_EQ(probe->log_prob_size(), 2);
  EXPECT_TRUE(std::isfinite(probe->log_prob(0)));
}

// A job the server died under max_job_crashes times in a row, with no newer checkpoint in
// between, fails at the next start instead of being resumed again; a job that checkpointed since
// its last crash starts a new count.
TEST_F(JobManagerTest, RepeatedCrashesWithoutANewCheckpointFailTheJob) {
  options_.jobs.max_job_crashes = 2;
  Open();
  const v1::Job blocker = StartBlocker();
  StoreBernoulliData();
  absl::StatusOr<v1::Job> job = jobs().CreateJob(Scope::AllTenants(), BernoulliSpec(0.5));
  ASSERT_TRUE(job.ok()) << job.status();
  core_.reset();
  const v1::Job suspended = ValueOf(catalog_.GetJob(blocker.id()));
  const int64_t checkpoint = suspended.checkpoint_step();
  ASSERT_GT(checkpoint, 0);
  // The job crashed once before with no checkpoint, and again now, still with none.
  LeaveRunning(job->id(), /*crash_count=*/1, /*crash_checkpoint_step=*/0);
  // The blocker crashed once before without a checkpoint, but has one now.
  LeaveRunning(blocker.id(), /*crash_count=*/1, /*crash_checkpoint_step=*/0);

  Open();
  // Failed during the start, before anything ran.
  const v1::Job failed = ValueOf(jobs().GetJob(job->id()));
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_TRUE(absl::StartsWith(failed.error(), "interrupted by 2 crashes in a row"))
      << failed.error();
  EXPECT_EQ(failed.crash_count(), 2);
  EXPECT_TRUE(failed.has_end_time());
  EXPECT_TRUE(failed.model_id().empty());
  EXPECT_EQ(ValueOf(catalog_.GetJob(job->id())).state(), v1::JOB_STATE_FAILED);
  absl::StatusOr<EventBatch> events = jobs().ReadEvents(job->id(), 1, 100);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_TRUE(events->ended);
  EXPECT_TRUE(ContiguousFromOne(events->events));
  ASSERT_EQ(events->events.size(), 3u);  // queued, running (the crash), failed
  EXPECT_TRUE(IsStateChange(events->events[2], v1::JOB_STATE_FAILED));
  EXPECT_EQ(events->events[2].state_change().message(), failed.error());

  const v1::Job requeued = ValueOf(jobs().GetJob(blocker.id()));
  EXPECT_FALSE(IsFinalState(requeued.state()));
  EXPECT_EQ(requeued.crash_count(), 1);
  EXPECT_EQ(requeued.crash_checkpoint_step(), checkpoint);
  std::optional<v1::JobEvent> note = WaitForEvent(blocker.id(), [&](const v1::JobEvent& e) {
    return e.seq() > suspended.last_seq() + 1 && IsStateChange(e, v1::JOB_STATE_QUEUED);
  });
  ASSERT_TRUE(note.has_value());
  EXPECT_EQ(note->state_change().message(),
            absl::StrCat("requeued after a server restart; resumes from the checkpoint at step ",
                         checkpoint));
}

}  // namespace
}  // namespace logp
