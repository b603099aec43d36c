// Anomaly p-values, Benjamini-Hochberg, the typicality test and the likelihood ratio over gRPC
// (ScoreRequest.anomaly, .typicality, .reference_model_id), against exact truths: an in-process
// logpd on 127.0.0.1:0 publishes diagonal Gaussians (closed-form fit) of a known law with 4,000
// separate validation records, whose scores it keeps as reference scores; fresh records from the
// same law must then get uniform p-values (Kolmogorov-Smirnov), alpha flags at rate alpha, BH
// must control the false discovery rate on planted outliers, the typicality test must hold its
// level and reject narrow batches of higher likelihood (which p-values cannot flag), the
// log-ratio must equal the closed-form difference of two Gaussian log-densities, the reference
// scores must survive a restart, and every misuse must get its precise status.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "client/client.h"
#include "logp/v1/model_service.grpc.pb.h"
#include "server/core/core.h"
#include "server/grpc/server.h"
#include "tests/integration/in_process_server.h"
#include "tests/temp_dir.h"

namespace logp {
namespace {

constexpr int64_t kDim = 2;
constexpr int64_t kTrain = 2000;
constexpr int64_t kValidation = 4000;
// The law: x_d ~ N(kMean[d], kSd[d]^2) independently.
constexpr double kMean[kDim] = {1.0, -2.0};
constexpr double kSd[kDim] = {0.5, 2.0};

// `n` records of the law with its means shifted by `shift` and its deviations scaled by `scale`.
RecordMatrix Draw(int64_t n, uint32_t seed, double shift = 0, double scale = 1,
                  int64_t dim = kDim) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, dim, 0).value();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  m.f32.resize(n * dim);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t d = 0; d < dim; ++d) {
      m.f32[i * dim + d] =
          static_cast<float>(kMean[d % kDim] + shift + scale * kSd[d % kDim] * normal(rng));
    }
  }
  m.rows = n;
  return m;
}

// Rows [begin, end) of `m`.
RecordMatrix Rows(const RecordMatrix& m, int64_t begin, int64_t end) {
  RecordMatrix out = RecordMatrix::Empty(m.kind, m.cols, m.num_categories).value();
  for (int64_t r = begin; r < end; ++r) out.AppendRow(m, r);
  return out;
}

// The closed-form fit the Gaussian family makes (mean and 1/N variance per column) and its log
// density, in double precision.
struct DiagonalGaussian {
  std::vector<double> mean, var;
  explicit DiagonalGaussian(const RecordMatrix& m) : mean(m.cols, 0), var(m.cols, 0) {
    for (int64_t d = 0; d < m.cols; ++d) {
      for (int64_t r = 0; r < m.rows; ++r) mean[d] += m.At(r, d);
      mean[d] /= m.rows;
      for (int64_t r = 0; r < m.rows; ++r) var[d] += std::pow(m.At(r, d) - mean[d], 2);
      var[d] /= m.rows;
    }
  }
  double LogDensity(const RecordMatrix& m, int64_t r) const {
    double s = 0;
    for (int64_t d = 0; d < m.cols; ++d) {
      s -= 0.5 * (std::pow(m.At(r, d) - mean[d], 2) / var[d] + std::log(2 * M_PI * var[d]));
    }
    return s;
  }
};

// sup_t |F_n(t) - t| of `p` against the uniform law on [0, 1].
double KolmogorovSmirnov(std::vector<double> p) {
  std::sort(p.begin(), p.end());
  const double n = static_cast<double>(p.size());
  double d = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    d = std::max({d, (i + 1) / n - p[i], p[i] - i / n});
  }
  return d;
}

class AnalyticsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StartServer();
    train_ = Draw(kTrain, 1);
    model_id_ = Publish(train_, Draw(kValidation, 2));
  }
  void StartServer() {
    CoreOptions o;
    o.data_dir = dir_;
    o.jobs.training_slots = 1;
    const absl::Status started = logpd_.Start(o);
    ASSERT_TRUE(started.ok()) << started;
    client_ = &logpd_.client();
    core_ = &logpd_.core();
  }
  void StopServer() {
    logpd_.Stop();
    client_ = nullptr;
    core_ = nullptr;
  }
  // Trains a Gaussian (closed form) on `train` with `valid` as its validation set; its model id.
  std::string Publish(const RecordMatrix& train, const RecordMatrix& valid,
                      v1::ModelFamily family = v1::MODEL_FAMILY_GAUSSIAN) {
    auto ds = client_->UploadDataset("train", train);
    auto vs = client_->UploadDataset("valid", valid);
    EXPECT_TRUE(ds.ok() && vs.ok()) << ds.status() << vs.status();
    if (!ds.ok() || !vs.ok()) return "";
    v1::JobSpec spec;
    spec.set_dataset_id(ds->id());
    spec.set_validation_dataset_id(vs->id());
    spec.mutable_model()->set_family(family);
    spec.set_batch_size(100);
    spec.set_epochs(1);
    spec.set_seed(7);
    auto job = client_->CreateJob(spec);
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return "";
    auto done = client_->WaitForJob(job->id());
    EXPECT_TRUE(done.ok()) << done.status();
    if (!done.ok()) return "";
    EXPECT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED) << done->error();
    job_id_ = job->id();
    return done->model_id();
  }
  v1::ScoreRequest Request(const RecordMatrix& records) const {
    v1::ScoreRequest r;
    r.set_model_id(model_id_);
    *r.mutable_records() = Encode(records, 0, records.rows);
    return r;
  }
  v1::ScoreResponse Score(const v1::ScoreRequest& request) {
    auto r = client_->ScoreRaw(request);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::ScoreResponse();
  }
  // The status code of `request`, expecting `text` in its message.
  void ExpectError(const v1::ScoreRequest& request, absl::StatusCode code,
                   const std::string& text) {
    auto r = client_->ScoreRaw(request);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), code) << r.status();
    EXPECT_TRUE(absl::StrContains(r.status().message(), text)) << r.status();
  }

  TempDir temp_;  // before logpd_: outlives it
  const std::string dir_ = temp_.path();
  std::string model_id_, job_id_;
  RecordMatrix train_;
  InProcessServer logpd_;
  Client* client_ = nullptr;
  Core* core_ = nullptr;
};

TEST_F(AnalyticsTest, PublishedModelKeepsItsValidationScores) {
  auto m = client_->GetModel(model_id_);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->reference_scores(), static_cast<uint64_t>(kValidation));
}

TEST_F(AnalyticsTest, PValuesOfFreshRecordsAreUniformAndAlphaFlagsHoldTheirRate) {
  constexpr int64_t kFresh = 5000;
  constexpr double kAlpha = 0.05;
  v1::ScoreRequest request = Request(Draw(kFresh, 3));
  request.mutable_anomaly()->set_p_values(true);
  request.mutable_anomaly()->set_alpha(kAlpha);
  const v1::ScoreResponse r = Score(request);
  ASSERT_EQ(r.p_value_size(), kFresh);
  ASSERT_EQ(r.alpha_flagged_size(), kFresh);
  EXPECT_EQ(r.num_reference_scores(), static_cast<uint64_t>(kValidation));
  std::vector<double> p(r.p_value().begin(), r.p_value().end());
  int64_t flagged = 0;
  for (int64_t i = 0; i < kFresh; ++i) {
    // On the grid k / (n + 1), k = 1..n+1.
    const double k = p[i] * (kValidation + 1);
    EXPECT_NEAR(k, std::round(k), 1e-6);
    EXPECT_GE(k, 1 - 1e-9);
    EXPECT_EQ(r.alpha_flagged(i), p[i] <= kAlpha);
    flagged += r.alpha_flagged(i);
  }
  // Given the reference, a p-value is the reference's empirical distribution function at the
  // record's score, so the KS distance to the uniform law is that of a two-sample test of
  // reference (n) against fresh records (m): at level 0.001, c = 1.949 times
  // sqrt((n + m) / (n m)), plus 1 / (n + 1) for the grid.
  const double n = kValidation, m = kFresh;
  const double ks = KolmogorovSmirnov(p);
  const double critical = 1.949 * std::sqrt((n + m) / (n * m)) + 1 / (n + 1);
  std::printf("KS distance of %lld p-values to uniform: %.4f (critical value at 0.001: %.4f)\n",
              static_cast<long long>(kFresh), ks, critical);
  EXPECT_LT(ks, critical);
  // False positive rate at alpha: its mean is floor(alpha (n + 1)) / (n + 1); its spread comes
  // from the m flags and the n reference scores; 4 standard deviations.
  const double expected = std::floor(kAlpha * (n + 1)) / (n + 1);
  const double sd = std::sqrt(kAlpha * (1 - kAlpha) * (1 / m + 1 / n));
  const double rate = flagged / m;
  std::printf("false positive rate at alpha = %.2f: %.4f (expected %.4f, sd %.4f)\n", kAlpha, rate,
              expected, sd);
  EXPECT_NEAR(rate, expected, 4 * sd);
}

TEST_F(AnalyticsTest, BenjaminiHochbergControlsTheFalseDiscoveryRateOnPlantedOutliers) {
  // BH's guarantee for conformal p-values is marginal, over the reference too (given one
  // reference the null p-values follow its empirical distribution, which may sit above the
  // uniform law in the tail BH uses): kModels models with fresh validation sets, kBatches
  // batches each; the standard error is that of the kModels per-model means.
  constexpr int kModels = 25, kBatches = 20, kNull = 90, kOutliers = 10;
  constexpr double kQ = 0.1;
  double power_sum = 0;
  std::vector<double> model_fdr;
  for (int k = 0; k < kModels; ++k) {
    model_id_ = Publish(train_, Draw(2000, 500 + k));
    ASSERT_FALSE(model_id_.empty());
    double fdp_sum = 0;
    for (int b = 0; b < kBatches; ++b) {
      // Outliers from the law shifted by 3 in every column (3 to 6 standard deviations).
      RecordMatrix batch = Draw(kNull, 100 + kBatches * k + b);
      const RecordMatrix out = Draw(kOutliers, 10000 + kBatches * k + b, 3.0);
      for (int64_t i = 0; i < out.rows; ++i) batch.AppendRow(out, i);
      v1::ScoreRequest request = Request(batch);
      request.mutable_anomaly()->set_fdr_q(kQ);
      const v1::ScoreResponse r = Score(request);
      ASSERT_EQ(r.fdr_flagged_size(), kNull + kOutliers);
      int false_rejections = 0, true_rejections = 0;
      for (int i = 0; i < kNull + kOutliers; ++i) {
        EXPECT_EQ(r.fdr_flagged(i), r.p_value(i) <= r.fdr_threshold());
        if (r.fdr_flagged(i)) (i < kNull ? false_rejections : true_rejections) += 1;
      }
      const int rejections = false_rejections + true_rejections;
      EXPECT_EQ(r.num_fdr_flagged(), static_cast<uint64_t>(rejections));
      fdp_sum += rejections == 0 ? 0.0 : double(false_rejections) / rejections;
      power_sum += double(true_rejections) / kOutliers;
    }
    model_fdr.push_back(fdp_sum / kBatches);
  }
  double mean = 0, squares = 0;
  for (double v : model_fdr) mean += v / kModels;
  for (double v : model_fdr) squares += (v - mean) * (v - mean);
  const double se = std::sqrt(squares / (kModels - 1) / kModels);
  std::printf("BH at q = %.2f: mean false discovery proportion %.4f (se %.4f), power %.3f\n", kQ,
              mean, se, power_sum / (kModels * kBatches));
  // BH guarantees FDR <= q m0 / m = 0.09 here.
  EXPECT_LE(mean, kQ * kNull / (kNull + kOutliers) + 2 * se);
}

TEST_F(AnalyticsTest, TypicalityHoldsItsLevelAndRejectsNarrowBatchesThatPValuesMiss) {
  constexpr int kBatches = 400, kSize = 10;
  constexpr double kAlpha = 0.05;
  int rejected = 0;
  for (int b = 0; b < kBatches; ++b) {
    v1::ScoreRequest request = Request(Draw(kSize, 20000 + b));
    request.mutable_typicality()->set_alpha(kAlpha);
    request.mutable_typicality()->set_seed(b);
    const v1::ScoreResponse r = Score(request);
    ASSERT_TRUE(r.has_typicality());
    EXPECT_EQ(r.typicality().batch_size(), static_cast<uint64_t>(kSize));
    EXPECT_EQ(r.typicality().reference_size(), static_cast<uint64_t>(kValidation));
    EXPECT_EQ(r.typicality().bootstrap_draws(), 1000);
    EXPECT_EQ(r.p_value_size(), 0);
    double mean_nll = 0;
    for (double v : r.log_prob()) mean_nll -= v / kSize;
    EXPECT_NEAR(r.typicality().batch_mean_nll(), mean_nll, 1e-9);
    EXPECT_NEAR(r.typicality().statistic(), std::fabs(mean_nll - r.typicality().entropy_estimate()),
                1e-9);
    rejected += !r.typicality().typical();
  }
  const double rate = double(rejected) / kBatches;
  const double sd = std::sqrt(kAlpha * (1 - kAlpha) / kBatches);
  std::printf("typicality type I error at alpha = %.2f, batches of %d: %.4f (sd %.4f)\n", kAlpha,
              kSize, rate, sd);
  EXPECT_NEAR(rate, kAlpha, 3.5 * sd);

  // Batches from the law with a quarter of its spread: each record is MORE likely than typical
  // records (Nalisnick et al.'s failure of likelihood thresholds), so its p-value is large, but
  // the batch's mean NLL is far below the entropy.
  int typical_rejected = 0, p_flagged = 0;
  for (int b = 0; b < 100; ++b) {
    v1::ScoreRequest request = Request(Draw(kSize, 30000 + b, 0, 0.25));
    request.mutable_typicality()->set_alpha(kAlpha);
    request.mutable_anomaly()->set_alpha(kAlpha);
    const v1::ScoreResponse r = Score(request);
    typical_rejected += !r.typicality().typical();
    for (bool f : r.alpha_flagged()) p_flagged += f;
  }
  const double power = typical_rejected / 100.0, flag_rate = p_flagged / (100.0 * kSize);
  std::printf("narrow batches: typicality power %.3f; p <= alpha for %.4f of their records\n",
              power, flag_rate);
  EXPECT_GT(power, 0.5);
  EXPECT_LT(flag_rate, kAlpha);
  // Shifted batches (mean + 1 in each column): reported, and well above the level.
  int shifted_rejected = 0;
  for (int b = 0; b < 100; ++b) {
    v1::ScoreRequest request = Request(Draw(kSize, 40000 + b, 1.0));
    request.mutable_typicality()->set_alpha(kAlpha);
    shifted_rejected += !Score(request).typicality().typical();
  }
  std::printf("shifted batches: typicality power %.3f\n", shifted_rejected / 100.0);
  EXPECT_GT(shifted_rejected / 100.0, 4 * kAlpha);
}

TEST_F(AnalyticsTest, LogRatioIsTheClosedFormDifferenceOfTwoGaussians) {
  const RecordMatrix background_train = Draw(kTrain, 50, 0.5, 1.5);
  const std::string background = Publish(background_train, Draw(500, 51, 0.5, 1.5));
  ASSERT_FALSE(background.empty());
  const DiagonalGaussian a(train_), b(background_train);
  const RecordMatrix x = Draw(300, 52, 0.2, 1.2);
  v1::ScoreRequest request = Request(x);
  request.set_reference_model_id(background);
  request.mutable_anomaly()->set_p_values(true);
  const v1::ScoreResponse r = Score(request);
  ASSERT_EQ(r.log_ratio_size(), x.rows);
  // The p-values stay those of log p(x) under the target model.
  v1::ScoreRequest plain = Request(x);
  plain.mutable_anomaly()->set_p_values(true);
  const v1::ScoreResponse target = Score(plain);
  auto b_scores = client_->Score(background, x);
  ASSERT_TRUE(b_scores.ok()) << b_scores.status();
  for (int64_t i = 0; i < x.rows; ++i) {
    const double truth = a.LogDensity(x, i) - b.LogDensity(x, i);
    // float32 parameters and arithmetic: about 1e-6 relative on terms of order 10.
    EXPECT_NEAR(r.log_ratio(i), truth, 1e-3 * (1 + std::fabs(truth))) << i;
    EXPECT_DOUBLE_EQ(r.log_ratio(i), target.log_prob(i) - (*b_scores)[i]) << i;
    EXPECT_EQ(r.p_value(i), target.p_value(i)) << i;
  }
  // Against itself the ratio is 0.
  request.set_reference_model_id(model_id_);
  for (double v : Score(request).log_ratio()) EXPECT_EQ(v, 0.0);
}

TEST_F(AnalyticsTest, ReferenceScoresSurviveARestart) {
  v1::ScoreRequest request = Request(Draw(200, 60));
  request.mutable_anomaly()->set_p_values(true);
  request.mutable_typicality()->set_seed(5);
  const v1::ScoreResponse before = Score(request);
  ASSERT_EQ(before.p_value_size(), 200);
  StopServer();
  StartServer();  // a new Core on the same directory: removes orphans, reloads from disk
  const v1::ScoreResponse after = Score(request);
  ASSERT_EQ(after.p_value_size(), 200);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(before.p_value(i), after.p_value(i));
  EXPECT_EQ(before.typicality().threshold(), after.typicality().threshold());
  EXPECT_EQ(after.num_reference_scores(), static_cast<uint64_t>(kValidation));
  EXPECT_EQ(client_->GetModel(model_id_)->reference_scores(), static_cast<uint64_t>(kValidation));

  // A sidecar without a catalogued model (a crash before the row) is removed at start; a
  // model whose sidecar is lost still scores, and its p-values are DATA_LOSS naming it.
  const std::string models = dir_ + "/models/";
  const std::string orphan = models + "model-00000000000000ff.reference";
  ASSERT_EQ(system(("cp " + models + model_id_ + ".reference " + orphan).c_str()), 0);
  ASSERT_EQ(system(("rm " + models + model_id_ + ".reference").c_str()), 0);
  StopServer();
  StartServer();
  // Not on a catalogue shared by processes (replicas): another may be between file and row.
  if (core_->catalog().SharedByProcesses()) {
    EXPECT_EQ(system(("test -e " + orphan).c_str()), 0) << "a shared directory's file removed";
  } else {
    EXPECT_NE(system(("test -e " + orphan).c_str()), 0) << "orphaned sidecar kept";
  }
  auto lost = client_->ScoreRaw(request);
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kDataLoss) << lost.status();
  EXPECT_TRUE(absl::StrContains(lost.status().message(), model_id_)) << lost.status();
  request.clear_anomaly();
  request.clear_typicality();
  EXPECT_TRUE(client_->ScoreRaw(request).ok());
}

TEST_F(AnalyticsTest, MisuseGetsPreciseStatuses) {
  const RecordMatrix x = Draw(20, 70);
  auto with = [&](auto edit) {
    v1::ScoreRequest r = Request(x);
    edit(&r);
    return r;
  };
  using absl::StatusCode;
  for (double bad : {-0.1, 1.0, 1.5, std::nan("")}) {
    ExpectError(with([&](v1::ScoreRequest* r) { r->mutable_anomaly()->set_alpha(bad); }),
                StatusCode::kInvalidArgument, "anomaly.alpha");
    ExpectError(with([&](v1::ScoreRequest* r) { r->mutable_anomaly()->set_fdr_q(bad); }),
                StatusCode::kInvalidArgument, "anomaly.fdr_q");
    ExpectError(with([&](v1::ScoreRequest* r) { r->mutable_typicality()->set_alpha(bad); }),
                StatusCode::kInvalidArgument, "typicality.alpha");
  }
  for (int draws : {-1, 10001}) {
    ExpectError(
        with([&](v1::ScoreRequest* r) { r->mutable_typicality()->set_bootstrap_draws(draws); }),
        StatusCode::kInvalidArgument, "typicality.bootstrap_draws");
  }
  // A job target is a checkpoint: no reference scores.
  ExpectError(with([&](v1::ScoreRequest* r) {
                r->set_job_id(job_id_);
                r->mutable_anomaly()->set_p_values(true);
              }),
              StatusCode::kFailedPrecondition, "checkpoint has none");
  ExpectError(with([&](v1::ScoreRequest* r) {
                r->set_job_id(job_id_);
                r->mutable_typicality();
              }),
              StatusCode::kFailedPrecondition, "checkpoint has none");
  // A model published before reference scores existed: its row without them, its file as is.
  {
    auto meta = core_->catalog().GetModel(model_id_);
    ASSERT_TRUE(meta.ok());
    v1::Model old = *meta;
    old.set_id("model-00000000000000aa");
    old.clear_reference_scores();
    ASSERT_TRUE(core_->catalog().InsertModel(old).ok());
    ASSERT_EQ(system(("cp " + dir_ + "/models/" + model_id_ + ".model " + dir_ + "/models/" +
                      old.id() + ".model")
                         .c_str()),
              0);
    v1::ScoreRequest r = with([&](v1::ScoreRequest* r) { r->mutable_anomaly()->set_alpha(0.1); });
    r.set_model_id(old.id());
    ExpectError(r, StatusCode::kFailedPrecondition, "has no reference scores");
    r.clear_anomaly();
    EXPECT_TRUE(client_->ScoreRaw(r).ok()) << "plain scoring of the old model";
  }
  // Background models: unknown, other dim, other kind.
  ExpectError(
      with([&](v1::ScoreRequest* r) { r->set_reference_model_id("model-0123456789abcdef"); }),
      StatusCode::kNotFound, "model-0123456789abcdef");
  const std::string wide = Publish(Draw(200, 71, 0, 1, 3), Draw(100, 72, 0, 1, 3));
  ExpectError(with([&](v1::ScoreRequest* r) { r->set_reference_model_id(wide); }),
              StatusCode::kFailedPrecondition, wide);
  ExpectError(with([&](v1::ScoreRequest* r) { r->set_reference_model_id(wide); }),
              StatusCode::kFailedPrecondition, model_id_);
  RecordMatrix bits = RecordMatrix::Empty(v1::DATA_KIND_BINARY, kDim, 2).value();
  for (int i = 0; i < 200; ++i)
    bits.u8.insert(bits.u8.end(), {uint8_t(i % 2), uint8_t(i % 3 == 0)});
  bits.rows = 200;
  const std::string binary = Publish(bits, bits, v1::MODEL_FAMILY_BERNOULLI);
  ExpectError(with([&](v1::ScoreRequest* r) { r->set_reference_model_id(binary); }),
              StatusCode::kFailedPrecondition, "DATA_KIND_BINARY");
  // A VAE's reference scores are its default scoring: an ELBO request (importance_samples 0)
  // cannot be compared with them; the default can.
  const std::string vae = Publish(bits, bits, v1::MODEL_FAMILY_VAE);
  ASSERT_FALSE(vae.empty());
  v1::ScoreRequest v;
  v.set_model_id(vae);
  *v.mutable_records() = Encode(bits, 0, 20);
  v.mutable_anomaly()->set_p_values(true);
  auto fine = client_->ScoreRaw(v);
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_EQ(fine->p_value_size(), 20);
  v.set_importance_samples(fine->score_kind() == v1::SCORE_KIND_LOWER_BOUND ? 5 : 0);
  ExpectError(v, StatusCode::kFailedPrecondition, "leave importance_samples unset");
}

}  // namespace
}  // namespace logp
