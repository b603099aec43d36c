// The training loop's contracts: checkpoints resume exactly where training was, stopping rules,
// the generalisation gap, failures. Uses only the torch-free API (models/model.h, train.h).
#include "models/train.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "models/model.h"
#include "models/stats.h"
#include "tests/models/test_data.h"

namespace logp {
namespace {

v1::ModelSpec MadeWithDropout() {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_MADE);
  s.mutable_made()->set_hidden_units(16);
  s.mutable_made()->set_num_masks(2);
  s.mutable_made()->set_order(v1::VARIABLE_ORDER_RANDOM);
  s.mutable_regularization()->set_dropout(0.2);  // draws from the job's noise generator
  return s;
}

v1::ModelSpec Vae() {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_VAE);
  s.mutable_vae()->set_latent_dim(2);
  s.mutable_vae()->set_hidden_units(8);
  return s;
}

v1::ModelSpec GaussianMixtureEm() {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_GAUSSIAN_MIXTURE);
  s.mutable_gaussian_mixture()->set_components(3);
  s.mutable_gaussian_mixture()->set_training(v1::MIXTURE_TRAINING_EM);
  return s;
}

RecordMatrix RandomContinuous(int64_t n, int64_t d, uint64_t seed, float scale = 1.0f) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, d, 0).value();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0, 1);
  for (int64_t r = 0; r < n; ++r, ++m.rows) {
    const float shift = (r % 3) * 4.0f;
    for (int64_t c = 0; c < d; ++c) m.f32.push_back(scale * (g(rng) + shift));
  }
  return m;
}

// Records events; suspends (or "crashes": cancels) once a given step is reached; writes a
// checkpoint every `every` steps.
class Recorder : public TrainObserver {
 public:
  int64_t suspend_at = -1, crash_at = -1, every = 0;
  size_t suspend_after_epochs = 0;  // > 0: suspend once this many epochs are summarised
  int64_t step = 0;
  std::vector<v1::EpochSummary> epochs;
  std::vector<TrainCheckpoint> checkpoints;
  std::vector<int64_t> starts;

  void OnStart(int64_t, int64_t first_step) override {
    starts.push_back(first_step);
    step = first_step;
  }
  void OnProgress(const v1::TrainingProgress& p) override { step = p.step(); }
  void OnEpoch(const v1::EpochSummary& e) override { epochs.push_back(e); }
  bool StopRequested() override { return crash_at >= 0 && step >= crash_at; }
  bool SuspendRequested() override {
    return (suspend_at >= 0 && step >= suspend_at) ||
           (suspend_after_epochs > 0 && epochs.size() >= suspend_after_epochs);
  }
  bool CheckpointDue(int64_t s) override { return every > 0 && s % every == 0; }
  absl::Status OnCheckpoint(TrainCheckpoint c) override {
    checkpoints.push_back(std::move(c));
    return absl::OkStatus();
  }
};

TrainOptions Options(int64_t epochs) {
  TrainOptions o;
  o.epochs = epochs;
  o.batch_size = 20;
  o.seed = 5;
  o.progress_interval_seconds = 0;  // a progress event at every step
  return o;
}

std::vector<double> Scores(const Model& m, const RecordMatrix& x) { return m.LogProb(x).value(); }

struct Case {
  const char* name;
  v1::ModelSpec spec;
  RecordMatrix train, valid;
  int64_t interrupt_step;   // where the first run stops
  size_t after_epochs = 0;  // or: right after this many epoch summaries (the next epoch's order
                            // is drawn, no step taken)
};

std::vector<Case> Cases() {
  return {
      // 200 records / batch 20: 10 steps per epoch.
      {"made-dropout-masks", MadeWithDropout(), RandomBinary(200, 8, 1, 0.5),
       RandomBinary(60, 8, 2, 0.5), 13},
      {"made-epoch-boundary", MadeWithDropout(), RandomBinary(200, 8, 1, 0.5),
       RandomBinary(60, 8, 2, 0.5), 10},
      {"made-next-epoch-start", MadeWithDropout(), RandomBinary(200, 8, 1, 0.5),
       RandomBinary(60, 8, 2, 0.5), 10, 1},
      {"vae", Vae(), RandomBinary(200, 8, 3, 0.5), RandomBinary(60, 8, 4, 0.5), 17},
      // EM: one step per epoch.
      {"gmm-em", GaussianMixtureEm(), RandomContinuous(200, 2, 5), RandomContinuous(60, 2, 6), 2},
  };
}

// Training noise is the job's own: jobs that draw (dropout with random masks, a VAE, a dequantised
// flow) publish bit-identical models whether they train alone, side by side with each other, or
// beside a thread that keeps re-seeding and drawing from torch's process-wide generator (as
// model creation does), and also when one of them is suspended and resumed meanwhile.
TEST(RandomnessTest, JobsTrainingSideBySideEqualJobsTrainingAlone) {
  std::vector<Case> cases = Cases();
  cases.erase(cases.begin() + 1, cases.begin() + 3);  // one MADE case is enough
  v1::ModelSpec maf;
  maf.set_family(v1::MODEL_FAMILY_MAF);
  maf.mutable_maf()->set_hidden_units(8);
  maf.mutable_preprocessing()->set_dequantize(true);
  maf.mutable_preprocessing()->set_levels(256);
  maf.mutable_preprocessing()->set_logit(true);
  maf.mutable_regularization()->set_dropout(0.1);
  RecordMatrix pixels = RandomContinuous(200, 3, 7), pixel_valid = RandomContinuous(60, 3, 8);
  for (auto* m : {&pixels, &pixel_valid}) {
    for (float& v : m->f32) v = std::floor(std::min(255.0f, std::max(0.0f, 100 + 10 * v)));
  }
  cases.push_back({"maf-dequantised", maf, pixels, pixel_valid, 15});
  auto train = [](const Case& c, bool suspend) {
    TrainOptions opts = Options(3);
    std::string model;
    Recorder first;
    if (suspend) first.suspend_at = c.interrupt_step;
    auto r = Train(c.spec, c.train, c.valid, opts, &first);
    if (suspend) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << c.name << ": " << r.status();
      if (first.checkpoints.empty()) return model;
      opts.resume_from = &first.checkpoints.back().bytes;
      r = Train(c.spec, c.train, c.valid, opts, nullptr);
    }
    EXPECT_TRUE(r.ok()) << c.name << ": " << r.status();
    if (r.ok()) model = r->model->Serialize().value();
    return model;
  };
  std::vector<std::string> alone;
  for (const Case& c : cases) alone.push_back(train(c, false));
  for (bool suspend : {false, true}) {
    SCOPED_TRACE(suspend ? "side by side, the first one suspended and resumed" : "side by side");
    std::vector<std::string> together(cases.size());
    std::atomic<bool> done{false};
    std::thread disturber([&] {
      v1::ModelSpec spec;
      spec.set_family(v1::MODEL_FAMILY_MADE);
      spec.mutable_made()->set_hidden_units(4);
      for (uint64_t seed = 0; !done; ++seed) {
        (void)Model::Create(spec, DataShape{v1::DATA_KIND_BINARY, 8, 2}, seed);
      }
    });
    std::vector<std::thread> jobs;
    for (size_t i = 0; i < cases.size(); ++i) {
      jobs.emplace_back([&, i] { together[i] = train(cases[i], suspend && i == 0); });
    }
    for (auto& t : jobs) t.join();
    done = true;
    disturber.join();
    for (size_t i = 0; i < cases.size(); ++i) {
      ASSERT_FALSE(alone[i].empty()) << cases[i].name;
      EXPECT_TRUE(together[i] == alone[i]) << cases[i].name << " differs from its run alone";
    }
  }
}

// Bit-packed training rows (as logpd holds binary training sets) train exactly as unpacked
// ones: the same epoch summaries and the same published scores, for a gradient family (rows
// unpacked per batch) and a closed-form one (all rows at once).
TEST(PackedRowsTest, TrainingOnPackedRowsEqualsUnpacked) {
  v1::ModelSpec bernoulli;
  bernoulli.set_family(v1::MODEL_FAMILY_BERNOULLI);
  for (const v1::ModelSpec& spec : {MadeWithDropout(), bernoulli}) {
    SCOPED_TRACE(spec.ShortDebugString());
    const RecordMatrix train = RandomBinary(200, 11, 1, 0.4), valid = RandomBinary(60, 11, 2, 0.4);
    RecordMatrix packed = train;
    PackBits(&packed);
    ASSERT_TRUE(packed.packed());
    Recorder a, b;
    auto plain = Train(spec, train, valid, Options(3), &a);
    auto from_packed = Train(spec, packed, valid, Options(3), &b);
    ASSERT_TRUE(plain.ok()) << plain.status();
    ASSERT_TRUE(from_packed.ok()) << from_packed.status();
    ASSERT_EQ(a.epochs.size(), b.epochs.size());
    ASSERT_FALSE(a.epochs.empty());
    for (size_t e = 0; e < a.epochs.size(); ++e) {
      EXPECT_EQ(a.epochs[e].train_nll(), b.epochs[e].train_nll()) << "epoch " << e;
      EXPECT_EQ(a.epochs[e].validation_nll(), b.epochs[e].validation_nll()) << "epoch " << e;
      EXPECT_EQ(a.epochs[e].train_eval_nll(), b.epochs[e].train_eval_nll()) << "epoch " << e;
    }
    EXPECT_EQ(Scores(*plain->model, valid), Scores(*from_packed->model, valid));
  }
}

// Suspending (as SIGTERM does) and resuming gives exactly the uninterrupted run: same epoch
// summaries after the resume, same published weights.
TEST(CheckpointTest, SuspendAndResumeEqualsAnUninterruptedRun) {
  for (auto& c : Cases()) {
    SCOPED_TRACE(c.name);
    Recorder whole;
    auto full = Train(c.spec, c.train, c.valid, Options(4), &whole);
    ASSERT_TRUE(full.ok()) << full.status();

    Recorder first;
    if (c.after_epochs > 0) {
      first.suspend_after_epochs = c.after_epochs;
    } else {
      first.suspend_at = c.interrupt_step;
    }
    auto stopped = Train(c.spec, c.train, c.valid, Options(4), &first);
    ASSERT_EQ(stopped.status().code(), absl::StatusCode::kAborted) << stopped.status();
    ASSERT_EQ(first.checkpoints.size(), 1u);
    EXPECT_EQ(first.checkpoints[0].step, c.interrupt_step);

    TrainOptions resume = Options(4);
    resume.resume_from = &first.checkpoints[0].bytes;
    Recorder second;
    auto resumed = Train(c.spec, c.train, c.valid, resume, &second);
    ASSERT_TRUE(resumed.ok()) << resumed.status();
    EXPECT_EQ(second.starts, std::vector<int64_t>{c.interrupt_step});
    // Every epoch is summarised once across the two runs, with the uninterrupted values.
    std::vector<v1::EpochSummary> joined = first.epochs;
    joined.insert(joined.end(), second.epochs.begin(), second.epochs.end());
    ASSERT_EQ(joined.size(), whole.epochs.size());
    for (size_t i = 0; i < joined.size(); ++i) {
      EXPECT_EQ(joined[i].epoch(), whole.epochs[i].epoch());
      EXPECT_EQ(joined[i].step(), whole.epochs[i].step());
      EXPECT_DOUBLE_EQ(joined[i].validation_nll(), whole.epochs[i].validation_nll());
      EXPECT_DOUBLE_EQ(joined[i].train_nll(), whole.epochs[i].train_nll());
      EXPECT_EQ(joined[i].is_best(), whole.epochs[i].is_best());
    }
    EXPECT_EQ(resumed->steps, full->steps);
    EXPECT_EQ(resumed->best_epoch, full->best_epoch);
    EXPECT_DOUBLE_EQ(resumed->best_validation_nll, full->best_validation_nll);
    EXPECT_EQ(Scores(*resumed->model, c.valid), Scores(*full->model, c.valid));
  }
}

// A crash loses the steps after the last periodic checkpoint; resuming from that (older)
// checkpoint still reproduces the uninterrupted run.
TEST(CheckpointTest, ResumeFromAnOlderPeriodicCheckpoint) {
  auto train = RandomBinary(200, 8, 1, 0.5), valid = RandomBinary(60, 8, 2, 0.5);
  Recorder whole;
  auto full = Train(MadeWithDropout(), train, valid, Options(3), &whole);
  ASSERT_TRUE(full.ok()) << full.status();

  Recorder crashed;
  crashed.every = 7;
  crashed.crash_at = 19;
  auto r = Train(MadeWithDropout(), train, valid, Options(3), &crashed);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kCancelled);
  // Periodic checkpoints after steps 7 and 14 (and one at the end of epoch 1, step 10).
  std::vector<int64_t> steps;
  for (const auto& c : crashed.checkpoints) steps.push_back(c.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{7, 14}));
  TrainOptions resume = Options(3);
  resume.resume_from = &crashed.checkpoints[1].bytes;
  Recorder second;
  auto resumed = Train(MadeWithDropout(), train, valid, resume, &second);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(Scores(*resumed->model, valid), Scores(*full->model, valid));
  ASSERT_EQ(second.epochs.size(), 2u);  // epochs 2 and 3
  EXPECT_DOUBLE_EQ(second.epochs[0].validation_nll(), whole.epochs[1].validation_nll());
}

// The model inside an end-of-epoch checkpoint has that epoch's weights: its validation NLL is
// the one the epoch summary reported.
TEST(CheckpointTest, CheckpointModelHasTheCurrentWeights) {
  auto train = RandomBinary(200, 8, 1, 0.5), valid = RandomBinary(60, 8, 2, 0.5);
  Recorder rec;
  rec.every = 10;  // steps 10, 20: the ends of epochs 1 and 2
  auto r = Train(MadeWithDropout(), train, valid, Options(3), &rec);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(rec.checkpoints.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(rec.checkpoints[i].epoch, i + 2);  // the epoch that comes next
    auto m = ModelFromCheckpoint(rec.checkpoints[i].bytes);
    ASSERT_TRUE(m.ok()) << m.status();
    const NllSummary s = SummarizeLogProbs(Scores(**m, valid), 8);
    EXPECT_NEAR(s.mean_nll, rec.epochs[i].validation_nll(), 1e-9);
  }
}

TEST(CheckpointTest, RejectsCorruptOrForeignCheckpoints) {
  auto train = RandomBinary(200, 8, 1, 0.5), valid = RandomBinary(60, 8, 2, 0.5);
  Recorder rec;
  rec.every = 5;
  rec.crash_at = 6;
  ASSERT_FALSE(Train(MadeWithDropout(), train, valid, Options(2), &rec).ok());
  ASSERT_EQ(rec.checkpoints.size(), 1u);
  const std::string good = rec.checkpoints[0].bytes;

  TrainOptions o = Options(2);
  const std::string garbage = "not a checkpoint";
  o.resume_from = &garbage;
  EXPECT_EQ(Train(MadeWithDropout(), train, valid, o, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::string truncated = good.substr(0, good.size() / 2);
  o.resume_from = &truncated;
  EXPECT_EQ(Train(MadeWithDropout(), train, valid, o, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(ModelFromCheckpoint(garbage).ok());
  o.resume_from = &good;
  v1::ModelSpec other = MadeWithDropout();
  other.mutable_made()->set_hidden_units(17);
  auto foreign = Train(other, train, valid, o, nullptr);
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kInvalidArgument) << foreign.status();
  auto fewer_rows = Train(MadeWithDropout(), RandomBinary(100, 8, 1), valid, o, nullptr);
  EXPECT_EQ(fewer_rows.status().code(), absl::StatusCode::kInvalidArgument);
  // Each is typed as an unusable checkpoint; a bad option is not.
  for (const std::string* bytes : {&garbage, &truncated}) {
    o.resume_from = bytes;
    EXPECT_TRUE(IsUnusableCheckpoint(Train(MadeWithDropout(), train, valid, o, nullptr).status()));
  }
  EXPECT_TRUE(IsUnusableCheckpoint(foreign.status()));
  EXPECT_TRUE(IsUnusableCheckpoint(fewer_rows.status()));
  TrainOptions bad = Options(2);
  bad.batch_size = 0;
  const absl::Status bad_status = Train(MadeWithDropout(), train, valid, bad, nullptr).status();
  EXPECT_EQ(bad_status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(IsUnusableCheckpoint(bad_status));
}

// A model that can memorise 20 records overfits: early stopping ends `patience` epochs after the
// best and publishes the best epoch's weights.
TEST(StoppingTest, EarlyStoppingPublishesTheBestEpoch) {
  auto train = RandomBinary(20, 12, 1, 0.3), valid = RandomBinary(400, 12, 2, 0.3);
  v1::ModelSpec spec;
  spec.set_family(v1::MODEL_FAMILY_MADE);
  spec.mutable_made()->set_hidden_units(200);
  TrainOptions o = Options(500);
  o.batch_size = 5;
  o.learning_rate = 0.01;
  o.early_stopping_patience = 3;
  Recorder rec;
  auto r = Train(spec, train, valid, o, &rec);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(r->stop_reason.find("early stopping"), std::string::npos) << r->stop_reason;
  ASSERT_LT(rec.epochs.size(), 500u);
  EXPECT_EQ(static_cast<int64_t>(rec.epochs.size()), r->best_epoch + 3);
  EXPECT_EQ(rec.epochs.back().epochs_since_best(), 3);
  EXPECT_TRUE(rec.epochs[r->best_epoch - 1].is_best());
  EXPECT_DOUBLE_EQ(rec.epochs[r->best_epoch - 1].validation_nll(), r->best_validation_nll);
  // The published weights score the validation set as the best epoch did, not as the last.
  const double published = SummarizeLogProbs(Scores(*r->model, valid), 12).mean_nll;
  EXPECT_NEAR(published, r->best_validation_nll, 1e-9);
  EXPECT_GT(rec.epochs.back().validation_nll(), r->best_validation_nll);
  // Memorising shows as a growing gap between validation and training NLL.
  EXPECT_GT(rec.epochs.back().generalization_gap(), rec.epochs.front().generalization_gap());
}

TEST(StoppingTest, MaxStepsEndsMidEpochWithAValidationPass) {
  auto train = RandomBinary(200, 8, 1, 0.5), valid = RandomBinary(60, 8, 2, 0.5);
  TrainOptions o = Options(100);
  o.max_steps = 25;  // 2.5 epochs
  Recorder rec;
  auto r = Train(MadeWithDropout(), train, valid, o, &rec);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->steps, 25);
  EXPECT_EQ(r->stop_reason, "max_steps 25 reached");
  ASSERT_EQ(rec.epochs.size(), 3u);
  EXPECT_EQ(rec.epochs.back().step(), 25);
}

TEST(StoppingTest, MaxSecondsEndsTraining) {
  auto train = RandomBinary(200, 8, 1, 0.5), valid = RandomBinary(60, 8, 2, 0.5);
  TrainOptions o = Options(1000000);
  o.max_seconds = 0.3;
  auto r = Train(MadeWithDropout(), train, valid, o, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stop_reason, "max_seconds 0.3 reached");
  EXPECT_LT(r->steps, 10 * 1000000);
}

TEST(StoppingTest, CompletedEpochsIsTheDefaultReason) {
  auto train = RandomBinary(200, 8, 1, 0.5), valid = RandomBinary(60, 8, 2, 0.5);
  auto r = Train(MadeWithDropout(), train, valid, Options(2), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stop_reason, "completed 2 epochs");
  EXPECT_EQ(r->steps, 20);
}

// The training side of the gap is the end-of-epoch weights' NLL on the training records (all of
// them when there are fewer than validation records), without dropout.
TEST(GapTest, TrainEvalNllIsTheEndOfEpochTrainingNll) {
  auto train = RandomBinary(100, 8, 1, 0.5), valid = RandomBinary(300, 8, 2, 0.5);
  Recorder rec;
  auto r = Train(MadeWithDropout(), train, valid, Options(1), &rec);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(rec.epochs.size(), 1u);
  const auto& e = rec.epochs[0];
  EXPECT_NEAR(e.train_eval_nll(), SummarizeLogProbs(Scores(*r->model, train), 8).mean_nll, 1e-9);
  EXPECT_NEAR(e.generalization_gap(), e.validation_nll() - e.train_eval_nll(), 1e-12);
}

// Values this large overflow (x - mu)^2 in float32: the loss is infinite at the first step.
TEST(FailureTest, DivergenceNamesStepAndValue) {
  v1::ModelSpec spec;
  spec.set_family(v1::MODEL_FAMILY_MADE);
  spec.mutable_made()->set_hidden_units(8);
  auto data = RandomContinuous(40, 3, 1, 1e25f);
  auto r = Train(spec, data, data, Options(2), nullptr);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(std::string(r.status().message()).find("loss is inf at step 1 (epoch 1)"),
            std::string::npos)
      << r.status();
}

}  // namespace
}  // namespace logp
