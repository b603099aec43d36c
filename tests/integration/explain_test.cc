// ScoreRequest.per_dimension over the wire: an in-process logpd and the C++ client. The terms a
// trained MADE returns equal log p(x_<=d) - log p(x_<d) computed from the server's own scores of
// all 2^8 records (enumeration over the wire); the client's ScorePerDimension agrees; a flow
// answers FAILED_PRECONDITION and a request over the cap RESOURCE_EXHAUSTED. Torch-free.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "client/client.h"
#include "server/core/core.h"
#include "server/grpc/server.h"
#include "tests/integration/in_process_server.h"
#include "tests/temp_dir.h"

namespace logp {
namespace {

constexpr int64_t kDim = 8;
constexpr int64_t kMaxTerms = 256 * kDim;  // the test server's cap: all 2^8 records at once

// n binary records of dim kDim: column 0 a fair coin, each further column copies the previous
// one with probability 0.7.
RecordMatrix Structured(int64_t n, uint32_t seed) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_BINARY, kDim, 2).value();
  std::mt19937 rng(seed);
  std::bernoulli_distribution coin(0.5), copy(0.7);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < kDim; ++c) {
      m.u8.push_back(c > 0 && copy(rng) ? m.u8.back() : static_cast<uint8_t>(coin(rng)));
    }
    ++m.rows;
  }
  return m;
}

// All 2^kDim records; record x has bit c of x in column c.
RecordMatrix AllRecords() {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_BINARY, kDim, 2).value();
  for (int64_t x = 0; x < (1 << kDim); ++x) {
    for (int64_t c = 0; c < kDim; ++c) m.u8.push_back((x >> c) & 1);
    ++m.rows;
  }
  return m;
}

class ExplainServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CoreOptions o;
    o.data_dir = dir_.path();
    o.scoring.max_dimension_log_probs = kMaxTerms;
    o.jobs.training_slots = 1;
    const absl::Status started = logpd_.Start(o);
    ASSERT_TRUE(started.ok()) << started;
    client_ = &logpd_.client();
  }

  // Trains `model` on `data` and returns the published model's id.
  std::string Train(const RecordMatrix& data, const v1::ModelSpec& model) {
    auto ds = client_->UploadDataset("data", data);
    EXPECT_TRUE(ds.ok()) << ds.status();
    v1::JobSpec spec;
    spec.set_dataset_id(ds->id());
    spec.set_validation_fraction(0.2);
    *spec.mutable_model() = model;
    spec.mutable_optimizer()->set_learning_rate(0.03);
    spec.set_batch_size(50);
    spec.set_epochs(3);
    spec.set_seed(5);
    return TrainToModel(*client_, spec);
  }

  v1::ScoreRequest Request(const std::string& model_id, const RecordMatrix& records,
                           bool per_dimension) {
    v1::ScoreRequest r;
    r.set_model_id(model_id);
    *r.mutable_records() = Encode(records, 0, records.rows);
    r.set_per_dimension(per_dimension);
    return r;
  }

  TempDir dir_;  // before logpd_: outlives it
  InProcessServer logpd_;
  Client* client_ = nullptr;
};

v1::ModelSpec Made() {
  v1::ModelSpec m;
  m.set_family(v1::MODEL_FAMILY_MADE);
  m.mutable_made()->set_hidden_units(32);
  m.mutable_made()->set_order(v1::VARIABLE_ORDER_NATURAL);
  return m;
}

TEST_F(ExplainServerTest, TermsEqualEnumeratedConditionalsOfTheServedModel) {
  const std::string model = Train(Structured(400, 1), Made());
  ASSERT_FALSE(model.empty());
  const RecordMatrix all = AllRecords();
  // Without per_dimension: no terms.
  auto plain = client_->ScoreRaw(Request(model, all, false));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->dimension_log_prob_size(), 0);
  auto scored = client_->ScoreRaw(Request(model, all, true));
  ASSERT_TRUE(scored.ok()) << scored.status();
  ASSERT_EQ(scored->dimension_log_prob_size(), all.rows * kDim);
  ASSERT_EQ(scored->log_prob_size(), all.rows);
  // Natural order: log p(x_<=d) sums p over the records that agree with x on columns 0..d.
  auto log_marginal = [&](int64_t x, int64_t d) {
    const int64_t mask = (int64_t{1} << (d + 1)) - 1;
    double p = 0;
    for (int64_t y = 0; y < all.rows; ++y) {
      if ((y & mask) == (x & mask)) p += std::exp(plain->log_prob(y));
    }
    return std::log(p);
  };
  double spread = 0;
  for (int64_t x = 0; x < all.rows; ++x) {
    double previous = 0, sum = 0;
    for (int64_t d = 0; d < kDim; ++d) {
      const double term = scored->dimension_log_prob(x * kDim + d);
      const double marginal = log_marginal(x, d);
      ASSERT_NEAR(term, marginal - previous, 1e-5) << "record " << x << " dimension " << d;
      spread = std::max(spread, std::abs(term + std::log(2.0)));
      previous = marginal;
      sum += term;
    }
    EXPECT_NEAR(sum, scored->log_prob(x), 1e-5);
  }
  EXPECT_GT(spread, 0.1);  // the model learnt the copying structure

  // The client's helper returns the same terms.
  auto helper = client_->ScorePerDimension(model, all);
  ASSERT_TRUE(helper.ok()) << helper.status();
  ASSERT_EQ(helper->dimension_log_prob_size(), scored->dimension_log_prob_size());
  for (int i = 0; i < helper->dimension_log_prob_size(); ++i) {
    ASSERT_EQ(helper->dimension_log_prob(i), scored->dimension_log_prob(i)) << i;
  }
}

TEST_F(ExplainServerTest, ErrorsOfPerDimensionScoring) {
  const std::string made = Train(Structured(300, 2), Made());
  ASSERT_FALSE(made.empty());
  // Over the cap: 257 records x 8 dimensions.
  auto over = client_->ScoreRaw(Request(made, Structured(257, 3), true));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted) << over.status();
  EXPECT_TRUE(absl::StrContains(over.status().message(), "per_dimension")) << over.status();
  // The same records without per_dimension are fine.
  EXPECT_TRUE(client_->ScoreRaw(Request(made, Structured(257, 3), false)).ok());
  // Wrong dim.
  v1::ScoreRequest wrong = Request(made, Structured(4, 3), true);
  wrong.mutable_records()->set_dim(7);
  EXPECT_EQ(client_->ScoreRaw(wrong).status().code(), absl::StatusCode::kInvalidArgument);
  // Unknown model.
  EXPECT_EQ(client_->ScoreRaw(Request("model-nope", Structured(4, 3), true)).status().code(),
            absl::StatusCode::kNotFound);

  // A flow has no per-dimension terms: FAILED_PRECONDITION naming the family.
  RecordMatrix continuous = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, 2, 0).value();
  std::mt19937 rng(4);
  std::normal_distribution<float> z;
  for (int r = 0; r < 200; ++r, ++continuous.rows) {
    const float a = z(rng);
    continuous.f32.push_back(a);
    continuous.f32.push_back(a * 0.5f + z(rng));
  }
  v1::ModelSpec maf;
  maf.set_family(v1::MODEL_FAMILY_MAF);
  maf.mutable_maf()->set_flow_layers(1);
  maf.mutable_maf()->set_hidden_units(8);
  const std::string flow = Train(continuous, maf);
  ASSERT_FALSE(flow.empty());
  auto refused = client_->ScorePerDimension(flow, continuous);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "maf")) << refused.status();
  // Plain scores of the same model still work.
  EXPECT_TRUE(client_->Score(flow, continuous).ok());
}

}  // namespace
}  // namespace logp
