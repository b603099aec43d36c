// ScoreBatcher against scoring alone (Model::Score of each request's own records, which is what
// the server did before batching): values, errors, deadlines, the off switch. Merging is made
// certain, not hoped for, by batches that start only when full (start_when_idle = false and a
// max_delay far longer than the test).
#include "server/core/score_batcher.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/core/scoring.h"
#include "tests/server/test_util.h"

namespace logp {
namespace {

// float32 networks: a row's log p is a sum over D conditionals, each from a matrix product whose
// summation order BLAS may choose by the number of rows (M = 1 can take a matrix-vector kernel).
// The values of a row scored in a batch and alone agree within float32 rounding of those sums:
// relative 1e-5 of |log p| is about 100 float32 ulps, far below any real difference (a wrong
// row's log p differs by nats).
constexpr double kRelativeTolerance = 1e-5;

void ExpectSameScores(const std::vector<double>& got, const std::vector<double>& want,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], kRelativeTolerance * std::max(1.0, std::fabs(want[i])))
        << what << ", row " << i;
  }
}

v1::ModelSpec Made(int units, int masks) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_MADE);
  s.mutable_made()->set_hidden_layers(1);
  s.mutable_made()->set_hidden_units(units);
  s.mutable_made()->set_num_masks(masks);
  s.mutable_made()->set_order(v1::VARIABLE_ORDER_RANDOM);
  s.mutable_made()->set_order_seed(3);
  return s;
}

std::shared_ptr<const Model> MakeModel(const v1::ModelSpec& spec, const DataShape& shape) {
  auto m = Model::Create(spec, shape, 17);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::shared_ptr<const Model>(std::move(*m)) : nullptr;
}

// `n` random records of the model's shape (binary ones bit-packed, as Score decodes them).
RecordMatrix RandomRecords(const DataShape& shape, int64_t n, uint32_t seed) {
  RecordMatrix m = RecordMatrix::Empty(shape.kind, shape.dim, shape.num_categories).value();
  std::mt19937 rng(seed);
  const int64_t count = n * shape.dim;
  if (shape.kind == v1::DATA_KIND_CONTINUOUS) {
    std::normal_distribution<float> normal;
    for (int64_t i = 0; i < count; ++i) m.f32.push_back(normal(rng));
  } else {
    std::uniform_int_distribution<int> value(0, shape.num_categories - 1);
    for (int64_t i = 0; i < count; ++i) m.u8.push_back(static_cast<uint8_t>(value(rng)));
  }
  m.rows = n;
  PackBits(&m);
  return m;
}

std::vector<double> Alone(const Model& model, const RecordMatrix& records,
                          const ScoreOptions& options = {}) {
  return ValueOf(model.Score(records, options)).log_prob;
}

ScoreBatchingOptions OnlyWhenFull(int64_t max_records) {
  ScoreBatchingOptions o;
  o.max_records = max_records;
  o.max_delay = absl::Seconds(60);
  o.start_when_idle = false;
  return o;
}

// Waits until `n` calls wait in an open batch of `model`.
void AwaitWaiting(const ScoreBatcher& batcher, const Model* model, int64_t n) {
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (batcher.TEST_Waiting(model) != n && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ(batcher.TEST_Waiting(model), n);
}

struct Family {
  const char* name;
  v1::ModelSpec spec;
  DataShape shape;
};

std::vector<Family> Families() {
  v1::ModelSpec gaussian_made = Made(32, 1);
  v1::ModelSpec categorical_made = Made(32, 1);
  v1::ModelSpec nade;
  nade.set_family(v1::MODEL_FAMILY_NADE);
  nade.mutable_nade()->set_hidden_units(40);
  return {
      {"MADE 1x500 binary D=784", Made(500, 1), {v1::DATA_KIND_BINARY, 784, 2}},
      {"MADE ensemble of 3 masks", Made(64, 3), {v1::DATA_KIND_BINARY, 50, 2}},
      {"MADE Gaussian", gaussian_made, {v1::DATA_KIND_CONTINUOUS, 12, 0}},
      {"MADE categorical K=4", categorical_made, {v1::DATA_KIND_CATEGORICAL, 10, 4}},
      {"NADE", nade, {v1::DATA_KIND_BINARY, 30, 2}},
  };
}

// Twelve calls of 1..12 records fill one batch of exactly 78 records: one forward pass, and each
// call gets the scores its records get alone.
TEST(ScoreBatcherTest, OneMergedPassGivesEachCallItsOwnScores) {
  for (const Family& f : Families()) {
    SCOPED_TRACE(f.name);
    std::shared_ptr<const Model> model = MakeModel(f.spec, f.shape);
    ASSERT_NE(model, nullptr);
    ASSERT_EQ(model->score_kind(), v1::SCORE_KIND_EXACT);
    constexpr int kCalls = 12;
    std::vector<RecordMatrix> records;
    for (int i = 0; i < kCalls; ++i) records.push_back(RandomRecords(f.shape, i + 1, 100 + i));
    ScoreBatcher batcher(OnlyWhenFull(kCalls * (kCalls + 1) / 2));
    std::vector<absl::StatusOr<Scores>> got(kCalls);
    std::vector<std::thread> threads;
    for (int i = 0; i < kCalls; ++i) {
      threads.emplace_back(
          [&, i] { got[i] = batcher.Score(model, records[i], ScoreOptions{}, CallControl()); });
    }
    for (auto& t : threads) t.join();
    const ScoreBatcherStats stats = batcher.stats();
    EXPECT_EQ(stats.requests, kCalls);
    EXPECT_EQ(stats.batches, 1);
    EXPECT_EQ(stats.merged_records, kCalls * (kCalls + 1) / 2);
    int bitwise = 0, rows = 0;
    for (int i = 0; i < kCalls; ++i) {
      ASSERT_TRUE(got[i].ok()) << got[i].status();
      const std::vector<double> want = Alone(*model, records[i]);
      ExpectSameScores(got[i]->log_prob, want, absl::StrCat("call ", i));
      EXPECT_EQ(got[i]->kind, v1::SCORE_KIND_EXACT);
      EXPECT_TRUE(got[i]->standard_error.empty());
      for (size_t r = 0; r < want.size(); ++r, ++rows) bitwise += got[i]->log_prob[r] == want[r];
    }
    std::printf("%s: %d of %d rows bitwise equal to scoring alone\n", f.name, bitwise, rows);
  }
}

// Many calls of mixed sizes, batches forming as they happen (both start rules): every call's
// scores equal its records' scores alone, whatever it was merged with.
TEST(ScoreBatcherTest, ConcurrentMixedCallsMatchScoringAlone) {
  const DataShape shape{v1::DATA_KIND_BINARY, 784, 2};
  std::shared_ptr<const Model> model = MakeModel(Made(500, 1), shape);
  ASSERT_NE(model, nullptr);
  constexpr int kThreads = 8, kCallsEach = 30;
  std::vector<std::vector<RecordMatrix>> records(kThreads);
  std::vector<std::vector<std::vector<double>>> want(kThreads);
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> size(1, 9);
  for (int t = 0; t < kThreads; ++t) {
    for (int c = 0; c < kCallsEach; ++c) {
      records[t].push_back(RandomRecords(shape, size(rng), 1000 * t + c));
      want[t].push_back(Alone(*model, records[t].back()));
    }
  }
  for (bool when_idle : {true, false}) {
    SCOPED_TRACE(when_idle ? "start_when_idle" : "wait max_delay");
    ScoreBatchingOptions o;
    o.max_records = 16;
    o.max_delay = absl::Milliseconds(2);
    o.start_when_idle = when_idle;
    ScoreBatcher batcher(o);
    std::vector<std::thread> threads;
    std::vector<std::vector<absl::StatusOr<Scores>>> got(kThreads);
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (const RecordMatrix& r : records[t]) {
          got[t].push_back(batcher.Score(model, r, ScoreOptions{}, CallControl()));
        }
      });
    }
    for (auto& t : threads) t.join();
    for (int t = 0; t < kThreads; ++t) {
      for (int c = 0; c < kCallsEach; ++c) {
        ASSERT_TRUE(got[t][c].ok()) << got[t][c].status();
        ExpectSameScores(got[t][c]->log_prob, want[t][c], absl::StrCat("thread ", t, " call ", c));
      }
    }
    const ScoreBatcherStats stats = batcher.stats();
    EXPECT_EQ(stats.requests, kThreads * kCallsEach);
    EXPECT_EQ(stats.alone, 0);
    EXPECT_LE(stats.batches, stats.requests);
    std::printf("%s: %lld calls in %lld passes\n", when_idle ? "start_when_idle" : "max_delay",
                static_cast<long long>(stats.requests), static_cast<long long>(stats.batches));
  }
}

// Through ScoreRecords: requests whose records are invalid are refused before they can join a
// batch, with their own INVALID_ARGUMENT; the valid calls fill their batch and get their scores.
TEST(ScoreBatcherTest, InvalidRequestsFailAloneAndDoNotJoin) {
  const DataShape shape{v1::DATA_KIND_BINARY, 20, 2};
  std::shared_ptr<const Model> model = MakeModel(Made(30, 1), shape);
  ASSERT_NE(model, nullptr);
  const ModelResolver resolver = [&](const std::string& id, const std::string&) {
    if (id != "m") return absl::StatusOr<ResolvedModel>(absl::NotFoundError("no model " + id));
    return absl::StatusOr<ResolvedModel>(ResolvedModel{model, 0, nullptr});
  };
  ScoreBatcher batcher(OnlyWhenFull(6));
  std::vector<RecordMatrix> valid = {RandomRecords(shape, 1, 1), RandomRecords(shape, 2, 2),
                                     RandomRecords(shape, 3, 3)};
  auto request_of = [](const RecordMatrix& m) {
    v1::ScoreRequest r;
    r.set_model_id("m");
    *r.mutable_records() = Encode(m, 0, m.rows);
    return r;
  };
  v1::ScoreRequest out_of_range;  // a value of 2 in binary data
  out_of_range.set_model_id("m");
  out_of_range.mutable_records()->set_encoding(v1::ENCODING_UINT8);
  out_of_range.mutable_records()->set_num_records(1);
  out_of_range.mutable_records()->set_dim(20);
  out_of_range.mutable_records()->set_data(std::string(19, '\0') + "\x02");
  v1::ScoreRequest wrong_dim = request_of(RandomRecords({v1::DATA_KIND_BINARY, 21, 2}, 1, 4));
  v1::ScoreRequest unknown_model = request_of(valid[0]);
  unknown_model.set_model_id("nope");

  std::vector<absl::StatusOr<v1::ScoreResponse>> got(valid.size());
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    got[0] = ScoreRecords(resolver, request_of(valid[0]), ScoringLimits(), CallControl(), &batcher);
  });
  AwaitWaiting(batcher, model.get(), 1);  // an open batch waits for 5 more records
  EXPECT_TRUE(
      Is(ScoreRecords(resolver, out_of_range, ScoringLimits(), CallControl(), &batcher).status(),
         absl::StatusCode::kInvalidArgument, "record 0, column 19"));
  EXPECT_TRUE(
      Is(ScoreRecords(resolver, wrong_dim, ScoringLimits(), CallControl(), &batcher).status(),
         absl::StatusCode::kInvalidArgument, "dim 21"));
  EXPECT_TRUE(
      Is(ScoreRecords(resolver, unknown_model, ScoringLimits(), CallControl(), &batcher).status(),
         absl::StatusCode::kNotFound));
  // Straight to the batcher, records of another kind are the model's INVALID_ARGUMENT, alone.
  EXPECT_TRUE(Is(batcher
                     .Score(model, RandomRecords({v1::DATA_KIND_CONTINUOUS, 20, 0}, 1, 5),
                            ScoreOptions{}, CallControl())
                     .status(),
                 absl::StatusCode::kInvalidArgument, "continuous"));
  EXPECT_EQ(batcher.TEST_Waiting(model.get()), 1);
  for (size_t i = 1; i < valid.size(); ++i) {
    threads.emplace_back([&, i] {
      got[i] =
          ScoreRecords(resolver, request_of(valid[i]), ScoringLimits(), CallControl(), &batcher);
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < valid.size(); ++i) {
    ASSERT_TRUE(got[i].ok()) << got[i].status();
    ExpectSameScores({got[i]->log_prob().begin(), got[i]->log_prob().end()},
                     Alone(*model, valid[i]), absl::StrCat("valid call ", i));
  }
  const ScoreBatcherStats stats = batcher.stats();
  EXPECT_EQ(stats.batches, 1);
  EXPECT_EQ(stats.merged_records, 6);
  EXPECT_EQ(stats.alone, 1);  // the continuous records
}

CallControl DeadlineIn(absl::Duration d) { return CallControl(absl::Now() + d, nullptr); }

// A call whose deadline passes while it waits leaves the batch with DEADLINE_EXCEEDED; the
// batch goes on without it and its other members get their scores.
TEST(ScoreBatcherTest, WaitingCallPastItsDeadlineLeavesTheBatch) {
  const DataShape shape{v1::DATA_KIND_BINARY, 20, 2};
  std::shared_ptr<const Model> model = MakeModel(Made(30, 1), shape);
  ASSERT_NE(model, nullptr);
  ScoreBatcher batcher(OnlyWhenFull(3));
  const RecordMatrix a = RandomRecords(shape, 1, 1), b = RandomRecords(shape, 1, 2),
                     c = RandomRecords(shape, 2, 3);
  absl::StatusOr<Scores> got_a, got_c;
  std::thread leader([&] { got_a = batcher.Score(model, a, ScoreOptions{}, CallControl()); });
  AwaitWaiting(batcher, model.get(), 1);
  EXPECT_TRUE(
      Is(batcher.Score(model, b, ScoreOptions{}, DeadlineIn(absl::Milliseconds(50))).status(),
         absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(batcher.TEST_Waiting(model.get()), 1);
  std::thread filler([&] { got_c = batcher.Score(model, c, ScoreOptions{}, CallControl()); });
  leader.join();
  filler.join();
  ASSERT_TRUE(got_a.ok()) << got_a.status();
  ASSERT_TRUE(got_c.ok()) << got_c.status();
  ExpectSameScores(got_a->log_prob, Alone(*model, a), "leader");
  ExpectSameScores(got_c->log_prob, Alone(*model, c), "filler");
  const ScoreBatcherStats stats = batcher.stats();
  EXPECT_EQ(stats.withdrawn, 1);
  EXPECT_EQ(stats.batches, 1);
  EXPECT_EQ(stats.merged_records, 3);
}

// The leader's deadline passing starts its batch (others need not wait out max_delay): the
// leader gets DEADLINE_EXCEEDED, its follower its scores. A call already past its deadline or
// cancelled never joins.
TEST(ScoreBatcherTest, LeaderPastItsDeadlineDoesNotPoisonTheBatch) {
  const DataShape shape{v1::DATA_KIND_BINARY, 20, 2};
  std::shared_ptr<const Model> model = MakeModel(Made(30, 1), shape);
  ASSERT_NE(model, nullptr);
  ScoreBatcher batcher(OnlyWhenFull(100));
  const RecordMatrix a = RandomRecords(shape, 1, 1), b = RandomRecords(shape, 3, 2);
  absl::StatusOr<Scores> got_a;
  std::thread leader(
      [&] { got_a = batcher.Score(model, a, ScoreOptions{}, DeadlineIn(absl::Seconds(1))); });
  AwaitWaiting(batcher, model.get(), 1);
  absl::StatusOr<Scores> got_b = batcher.Score(model, b, ScoreOptions{}, CallControl());
  leader.join();
  EXPECT_TRUE(Is(got_a.status(), absl::StatusCode::kDeadlineExceeded));
  ASSERT_TRUE(got_b.ok()) << got_b.status();
  ExpectSameScores(got_b->log_prob, Alone(*model, b), "follower");
  EXPECT_EQ(batcher.stats().batches, 1);

  EXPECT_TRUE(Is(batcher.Score(model, a, ScoreOptions{}, DeadlineIn(-absl::Seconds(1))).status(),
                 absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(Is(
      batcher
          .Score(model, a, ScoreOptions{}, CallControl(absl::InfiniteFuture(), [] { return true; }))
          .status(),
      absl::StatusCode::kCancelled));
  EXPECT_EQ(batcher.stats().batches, 1);
}

// A merged pass that fails (here by the test hook) is retried by each member alone: each gets
// its own scores, not the batch's error.
TEST(ScoreBatcherTest, FailedMergedPassIsRetriedAlone) {
  const DataShape shape{v1::DATA_KIND_BINARY, 20, 2};
  std::shared_ptr<const Model> model = MakeModel(Made(30, 1), shape);
  ASSERT_NE(model, nullptr);
  ScoreBatcher batcher(OnlyWhenFull(6));
  batcher.TEST_FailMergedPasses(true);
  std::vector<RecordMatrix> records = {RandomRecords(shape, 1, 1), RandomRecords(shape, 2, 2),
                                       RandomRecords(shape, 3, 3)};
  std::vector<absl::StatusOr<Scores>> got(records.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < records.size(); ++i) {
    threads.emplace_back(
        [&, i] { got[i] = batcher.Score(model, records[i], ScoreOptions{}, CallControl()); });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < records.size(); ++i) {
    ASSERT_TRUE(got[i].ok()) << got[i].status();
    ExpectSameScores(got[i]->log_prob, Alone(*model, records[i]), absl::StrCat("call ", i));
  }
  EXPECT_EQ(batcher.stats().batches, 1);
  EXPECT_EQ(batcher.stats().retried_alone, 3);
}

// Off (max_delay 0, or max_records < 2), and for what must not be merged (a model whose scores
// are Monte Carlo estimates, a request of max_records or more): every call is scored alone,
// exactly as Model::Score scores it.
TEST(ScoreBatcherTest, OffAndUnmergeableCallsAreScoredAlone) {
  const DataShape shape{v1::DATA_KIND_BINARY, 20, 2};
  std::shared_ptr<const Model> made = MakeModel(Made(30, 1), shape);
  v1::ModelSpec vae_spec;
  vae_spec.set_family(v1::MODEL_FAMILY_VAE);
  vae_spec.mutable_vae()->set_latent_dim(3);
  vae_spec.mutable_vae()->set_hidden_units(16);
  vae_spec.mutable_vae()->set_importance_samples(5);
  std::shared_ptr<const Model> vae = MakeModel(vae_spec, shape);
  ASSERT_NE(made, nullptr);
  ASSERT_NE(vae, nullptr);
  ASSERT_NE(vae->score_kind(), v1::SCORE_KIND_EXACT);
  ScoreBatchingOptions no_delay = OnlyWhenFull(100), one_record = OnlyWhenFull(1);
  no_delay.max_delay = absl::ZeroDuration();
  ScoreBatchingOptions on = OnlyWhenFull(4);
  for (const ScoreBatchingOptions& o : {no_delay, one_record, on}) {
    ScoreBatcher batcher(o);
    std::vector<std::thread> threads;
    std::vector<RecordMatrix> records;
    for (int i = 0; i < 6; ++i) records.push_back(RandomRecords(shape, o.enabled() ? 4 : 2, i));
    std::vector<absl::StatusOr<Scores>> got(records.size());
    ScoreOptions seeded;
    seeded.seed = 9;
    for (size_t i = 0; i < records.size(); ++i) {
      threads.emplace_back([&, i] {
        // Off: the MADE; on: the VAE (never merged) or records as many as max_records.
        const std::shared_ptr<const Model>& m = !o.enabled() || i % 2 ? made : vae;
        got[i] = batcher.Score(m, records[i], seeded, CallControl());
      });
    }
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < records.size(); ++i) {
      const Model& m = !o.enabled() || i % 2 ? *made : *vae;
      ASSERT_TRUE(got[i].ok()) << got[i].status();
      const Scores want = ValueOf(m.Score(records[i], seeded));
      EXPECT_EQ(got[i]->log_prob, want.log_prob) << "call " << i;
      EXPECT_EQ(got[i]->standard_error, want.standard_error) << "call " << i;
      EXPECT_EQ(got[i]->kind, want.kind);
    }
    const ScoreBatcherStats stats = batcher.stats();
    EXPECT_EQ(stats.requests, 6);
    EXPECT_EQ(stats.alone, 6);
    EXPECT_EQ(stats.batches, 0);
  }
}

}  // namespace
}  // namespace logp
