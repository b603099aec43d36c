// CompareModels through a real in-process logpd on 127.0.0.1:0 with two tenants: the exact status
// of every refusal (models of another kind, dim or number of categories; unknown ids; another
// tenant's model or dataset, answered exactly as unknown ones; a dataset the models do not fit;
// missing or over-long fields) and, as a check on the success path, the paired comparison of two
// independent-Bernoulli models worked out by hand from their closed-form MLEs. The numbers
// against numpy on Score outputs are in tests/python/compare_test.py.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/client.h"
#include "server/auth/credentials.h"
#include "server/core/core.h"
#include "server/core/tenant_view.h"
#include "server/grpc/server.h"
#include "tests/integration/in_process_server.h"
#include "tests/server/test_util.h"

namespace logp {
namespace {

constexpr char kWriterA[] = "compare-writer-a-4e1b7c90d2f3";
constexpr char kWriterB[] = "compare-writer-b-8a2d5f13c6e0";

// Records of `dim` values in {0..k-1}, record r column c = (r * (c + 2) + c + r / 3) % k: varied
// and deterministic.
std::vector<uint8_t> Values(int n, int dim, int k) {
  std::vector<uint8_t> v;
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < dim; ++c) v.push_back(static_cast<uint8_t>((r * (c + 2) + c + r / 3) % k));
  }
  return v;
}

v1::JobSpec Spec(const std::string& dataset_id, v1::ModelFamily family, double pseudo_count) {
  v1::JobSpec spec;
  spec.set_dataset_id(dataset_id);
  spec.set_validation_dataset_id(dataset_id);
  spec.mutable_model()->set_family(family);
  if (family == v1::MODEL_FAMILY_BERNOULLI) {
    spec.mutable_model()->mutable_bernoulli()->set_pseudo_count(pseudo_count);
  }
  spec.set_epochs(1);
  return spec;
}

class CompareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string tokens_path = dir_.path() + "/tokens";
    std::ofstream(tokens_path) << kWriterA << " team-a writer\n" << kWriterB << " team-b writer\n";
    auto tokens = AuthTokensFile::Open(tokens_path, absl::ZeroDuration());
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    tokens_ = std::move(*tokens);
    CoreOptions core;
    core.data_dir = dir_.path() + "/data";
    core.jobs.training_slots = 1;
    core.jobs.threads_per_slot = 1;
    ServerOptions options;
    options.auth_tokens = tokens_.get();
    ClientOptions as_a;
    as_a.token = kWriterA;
    const absl::Status started = logpd_.Start(core, options, as_a);
    ASSERT_TRUE(started.ok()) << started;
    a_ = &logpd_.client();
    core_ = &logpd_.core();
    ClientOptions as_b;
    as_b.token = kWriterB;
    auto b = logpd_.Connect(as_b);
    ASSERT_TRUE(b.ok()) << b.status();
    b_ = std::move(*b);
  }

  std::string Upload(Client& c, v1::DataKind kind, int dim, const std::vector<uint8_t>& values,
                     int k = 0) {
    return ValueOf(c.UploadRaw(UploadOf(kind, dim, values, k))).id();
  }
  std::string UploadContinuous(Client& c, int n, int dim) {
    RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, dim, 0).value();
    for (int i = 0; i < n * dim; ++i) m.f32.push_back(std::sin(1.7f * i));
    m.rows = n;
    return ValueOf(c.UploadDataset("continuous", m)).id();
  }
  absl::Status Compare(Client& c, const std::string& a, const std::string& b,
                       const std::string& ds) {
    return c.CompareModels(a, b, ds).status();
  }

  TempDir dir_;
  std::unique_ptr<AuthTokensFile> tokens_;  // outlives logpd_
  InProcessServer logpd_;
  Client* a_ = nullptr;
  Core* core_ = nullptr;
  std::unique_ptr<Client> b_;
};

TEST_F(CompareTest, RefusalsHaveTheirExactStatus) {
  using C = absl::StatusCode;
  const std::vector<uint8_t> bin3 = Values(40, 3, 2);
  const std::string ds3 = Upload(*a_, v1::DATA_KIND_BINARY, 3, bin3);
  const std::string ds4 = Upload(*a_, v1::DATA_KIND_BINARY, 4, Values(40, 4, 2));
  const std::string cat3k3 = Upload(*a_, v1::DATA_KIND_CATEGORICAL, 3, Values(40, 3, 3), 3);
  const std::string cat3k4 = Upload(*a_, v1::DATA_KIND_CATEGORICAL, 3, Values(40, 3, 4), 4);
  const std::string cont3 = UploadContinuous(*a_, 40, 3);
  const std::string m3 = TrainToModel(*a_, Spec(ds3, v1::MODEL_FAMILY_BERNOULLI, 0.5));
  const std::string m3b = TrainToModel(*a_, Spec(ds3, v1::MODEL_FAMILY_BERNOULLI, 2));
  const std::string m4 = TrainToModel(*a_, Spec(ds4, v1::MODEL_FAMILY_BERNOULLI, 0.5));
  const std::string mk3 = TrainToModel(*a_, Spec(cat3k3, v1::MODEL_FAMILY_CATEGORICAL, 0));
  const std::string mk4 = TrainToModel(*a_, Spec(cat3k4, v1::MODEL_FAMILY_CATEGORICAL, 0));
  const std::string mg = TrainToModel(*a_, Spec(cont3, v1::MODEL_FAMILY_GAUSSIAN, 0));
  ASSERT_TRUE(a_->CompareModels(m3, m3b, ds3).ok());

  // Models of different data: FAILED_PRECONDITION naming both, whichever comes first.
  for (const auto& [x, y] : std::vector<std::pair<std::string, std::string>>{
           {m3, m4}, {m4, m3}, {m3, mk3}, {mk3, mk4}, {mk4, mk3}, {mg, m3}, {mk3, mg}}) {
    const absl::Status s = Compare(*a_, x, y, ds3);
    EXPECT_TRUE(Is(s, C::kFailedPrecondition, x)) << x << " vs " << y;
    EXPECT_TRUE(Is(s, C::kFailedPrecondition, y)) << x << " vs " << y;
  }
  EXPECT_TRUE(Is(Compare(*a_, m3, m4, ds3), C::kFailedPrecondition, "dim 4"));
  EXPECT_TRUE(Is(Compare(*a_, mk3, mk4, cat3k3), C::kFailedPrecondition, "4 categories"));

  // A dataset that does not fit the (matching) models: INVALID_ARGUMENT as Evaluate answers it.
  EXPECT_TRUE(Is(Compare(*a_, m3, m3b, ds4), C::kInvalidArgument, "dim 4"));
  EXPECT_TRUE(Is(Compare(*a_, m3, m3b, cat3k3), C::kInvalidArgument));
  EXPECT_TRUE(Is(Compare(*a_, m3, m3b, cont3), C::kInvalidArgument));
  EXPECT_TRUE(Is(Compare(*a_, mk3, mk3, cat3k4), C::kInvalidArgument));

  // Unknown ids: NOT_FOUND naming the id, on either side.
  EXPECT_TRUE(Is(Compare(*a_, "model-nope", m3, ds3), C::kNotFound, "model 'model-nope'"));
  EXPECT_TRUE(Is(Compare(*a_, m3, "model-nope", ds3), C::kNotFound, "model 'model-nope'"));
  EXPECT_TRUE(Is(Compare(*a_, m3, m3b, "ds-nope"), C::kNotFound, "dataset 'ds-nope'"));
  // A job id is not a published model.
  const v1::Job job = ValueOf(a_->GetJob(ValueOf(a_->GetModel(m3)).job_id()));
  EXPECT_TRUE(Is(Compare(*a_, job.id(), m3, ds3), C::kNotFound, job.id()));

  // Missing and malformed fields: INVALID_ARGUMENT naming the field.
  EXPECT_TRUE(Is(Compare(*a_, "", m3, ds3), C::kInvalidArgument, "model_a_id"));
  EXPECT_TRUE(Is(Compare(*a_, m3, "", ds3), C::kInvalidArgument, "model_b_id"));
  EXPECT_TRUE(Is(Compare(*a_, m3, m3b, ""), C::kInvalidArgument, "dataset_id"));
  EXPECT_TRUE(Is(Compare(*a_, std::string(129, 'm'), m3, ds3), C::kInvalidArgument,
                 "model_a_id is longer than 128 bytes"));
  ScoringOptions negative;
  negative.importance_samples = -1;
  EXPECT_TRUE(Is(a_->CompareModels(m3, m3b, ds3, negative).status(), C::kInvalidArgument,
                 "importance_samples"));

  // Team B: A's models and dataset are answered exactly as unknown ids, with B's own objects of
  // the same shape on the other side.
  const std::string b_ds3 = Upload(*b_, v1::DATA_KIND_BINARY, 3, bin3);
  const std::string b_m3 = TrainToModel(*b_, Spec(b_ds3, v1::MODEL_FAMILY_BERNOULLI, 0.5));
  ASSERT_TRUE(b_->CompareModels(b_m3, b_m3, b_ds3).ok());
  auto looks_unknown = [](const absl::Status& got, const std::string& id,
                          const absl::Status& unknown, const std::string& unknown_id) {
    EXPECT_EQ(got.code(), absl::StatusCode::kNotFound) << got;
    EXPECT_EQ(absl::StrReplaceAll(got.message(), {{id, unknown_id}}), unknown.message());
  };
  looks_unknown(Compare(*b_, m3, b_m3, b_ds3), m3, Compare(*b_, "model-x", b_m3, b_ds3), "model-x");
  looks_unknown(Compare(*b_, b_m3, m3, b_ds3), m3, Compare(*b_, b_m3, "model-x", b_ds3), "model-x");
  looks_unknown(Compare(*b_, b_m3, b_m3, ds3), ds3, Compare(*b_, b_m3, b_m3, "ds-x"), "ds-x");
  // And A cannot use B's model against its own.
  EXPECT_TRUE(Is(Compare(*a_, m3, b_m3, ds3), C::kNotFound, b_m3));
}

// Two independent-Bernoulli models of one dataset differ only in their smoothing, so their
// per-record difference has a closed form: with p_j = (c_j + alpha) / (n + 2 alpha) from the
// column counts c_j, log p(x) = sum_j x_j log p_j + (1 - x_j) log(1 - p_j). The comparison's
// numbers are those of the paired differences computed here from that formula.
TEST_F(CompareTest, TheComparisonOfTwoBernoulliModelsIsTheHandComputedPairedTest) {
  const int n = 40, dim = 3;
  const std::vector<uint8_t> values = Values(n, dim, 2);
  const std::string ds = Upload(*a_, v1::DATA_KIND_BINARY, dim, values);
  const std::string m1 = TrainToModel(*a_, Spec(ds, v1::MODEL_FAMILY_BERNOULLI, 0.5));
  const std::string m2 = TrainToModel(*a_, Spec(ds, v1::MODEL_FAMILY_BERNOULLI, 4));
  auto log_probs = [&](double alpha) {
    std::vector<double> p(dim);
    for (int j = 0; j < dim; ++j) {
      double c = 0;
      for (int r = 0; r < n; ++r) c += values[r * dim + j];
      p[j] = (c + alpha) / (n + 2 * alpha);
    }
    std::vector<double> lp(n, 0);
    for (int r = 0; r < n; ++r) {
      for (int j = 0; j < dim; ++j) {
        lp[r] += values[r * dim + j] ? std::log(p[j]) : std::log1p(-p[j]);
      }
    }
    return lp;
  };
  const std::vector<double> a = log_probs(0.5), b = log_probs(4);
  double mean = 0, mean_a = 0, mean_b = 0;
  for (int r = 0; r < n; ++r) {
    mean += (a[r] - b[r]) / n;
    mean_a += a[r] / n;
    mean_b += b[r] / n;
  }
  double ss = 0;
  for (int r = 0; r < n; ++r) ss += (a[r] - b[r] - mean) * (a[r] - b[r] - mean);
  const double se = std::sqrt(ss / (n - 1)) / std::sqrt(double(n));
  const v1::CompareModelsResponse got = ValueOf(a_->CompareModels(m1, m2, ds));
  EXPECT_EQ(got.num_records(), static_cast<uint64_t>(n));
  // The models compute in float32: agreement to about 1e-5 nats.
  EXPECT_NEAR(got.mean_log_prob_a(), mean_a, 1e-4);
  EXPECT_NEAR(got.mean_log_prob_b(), mean_b, 1e-4);
  EXPECT_NEAR(got.mean_difference(), mean, 1e-5);
  EXPECT_NEAR(got.standard_error(), se, 1e-5);
  EXPECT_NEAR(got.ci95_low(), mean - 1.96 * se, 2e-5);
  EXPECT_NEAR(got.ci95_high(), mean + 1.96 * se, 2e-5);
  EXPECT_NEAR(got.z(), mean / se, 1e-3 * std::fabs(mean / se));
  EXPECT_NEAR(got.p_value(), std::erfc(std::fabs(mean / se) / std::sqrt(2.0)), 1e-4);
  EXPECT_EQ(got.score_kind_a(), v1::SCORE_KIND_EXACT);
  EXPECT_EQ(got.score_kind_b(), v1::SCORE_KIND_EXACT);

  // One record: its difference, but no evidence (no spread to estimate).
  const std::string one = Upload(*a_, v1::DATA_KIND_BINARY, dim, {1, 0, 1});
  const v1::CompareModelsResponse single = ValueOf(a_->CompareModels(m1, m2, one));
  EXPECT_EQ(single.num_records(), 1u);
  EXPECT_NE(single.mean_difference(), 0);
  EXPECT_EQ(single.z(), 0);
  EXPECT_EQ(single.p_value(), 1);
  EXPECT_EQ(single.ci95_low(), -INFINITY);
  EXPECT_EQ(single.ci95_high(), INFINITY);
}

// The core polls the call between batches of 512 records of each model and stops as the call
// says: a passed deadline before any scoring, a cancellation in the middle (counted polls: it
// stops at the poll that said so, long before a full run's last one).
TEST_F(CompareTest, StopsAtTheDeadlineOrCancellation) {
  const std::string ds = Upload(*a_, v1::DATA_KIND_BINARY, 3, Values(2000, 3, 2));
  const std::string m1 = TrainToModel(*a_, Spec(ds, v1::MODEL_FAMILY_BERNOULLI, 0.5));
  const std::string m2 = TrainToModel(*a_, Spec(ds, v1::MODEL_FAMILY_BERNOULLI, 4));
  TenantView view(core_, Scope::Tenant("team-a"));
  v1::CompareModelsRequest request;
  request.set_model_a_id(m1);
  request.set_model_b_id(m2);
  request.set_dataset_id(ds);
  int polls = 0;
  const CallControl counting(absl::InfiniteFuture(), [&polls] { return ++polls < 0; });
  ASSERT_TRUE(view.CompareModels(request, counting).ok());
  const int full_run = polls;
  ASSERT_GE(full_run, 8);  // 4 batches per model at least

  EXPECT_TRUE(Is(view.CompareModels(request, CallControl(absl::InfinitePast(), nullptr)).status(),
                 absl::StatusCode::kDeadlineExceeded, "comparison stopped"));
  polls = 0;
  const CallControl cancelling(absl::InfiniteFuture(), [&polls] { return ++polls >= 3; });
  EXPECT_TRUE(Is(view.CompareModels(request, cancelling).status(), absl::StatusCode::kCancelled,
                 "cancelled"));
  EXPECT_LT(polls, full_run);
}

}  // namespace
}  // namespace logp
