// Marginal and Impute over the wire: an in-process logpd on 127.0.0.1:0, models trained by real
// jobs. Exact truths: the marginal of a small binary model against log-sum-exp of Score over
// every completion, a full observed set against Score itself; every error status of the two
// RPCs; a client deadline stopping a long enumeration.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>

#include "client/client.h"
#include "logp/v1/model_service.grpc.pb.h"
#include "server/core/core.h"
#include "server/grpc/server.h"
#include "tests/integration/in_process_server.h"
#include "tests/temp_dir.h"

namespace logp {
namespace {

RecordMatrix Random(v1::DataKind kind, int64_t n, int64_t d, uint32_t seed) {
  RecordMatrix m = RecordMatrix::Empty(kind, d, kind == v1::DATA_KIND_BINARY ? 2 : 0).value();
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  for (int64_t r = 0; r < n; ++r) {
    float prev = 0;
    for (int64_t c = 0; c < d; ++c) {
      if (kind == v1::DATA_KIND_BINARY) {
        m.u8.push_back(static_cast<uint8_t>((rng() % 10) < 3 + 4 * (c % 2)));
      } else {
        prev = 0.7f * prev + normal(rng);  // correlated columns
        m.f32.push_back(prev);
      }
    }
    ++m.rows;
  }
  return m;
}

class ConditionalRpcTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    temp_ = new TempDir();
    logpd_ = new InProcessServer();
    CoreOptions o;
    o.data_dir = temp_->path();
    o.jobs.training_slots = 1;
    const absl::Status started = logpd_->Start(o);
    ASSERT_TRUE(started.ok()) << started;
    client_ = &logpd_->client();
    server_ = &logpd_->server();
    binary_ = new std::string(Train(v1::DATA_KIND_BINARY, 5, v1::MODEL_FAMILY_FVSBN));
    mixture_ =
        new std::string(Train(v1::DATA_KIND_CONTINUOUS, 3, v1::MODEL_FAMILY_GAUSSIAN_MIXTURE));
    flow_ = new std::string(Train(v1::DATA_KIND_CONTINUOUS, 3, v1::MODEL_FAMILY_MAF));
  }
  static void TearDownTestSuite() {
    delete logpd_;
    delete temp_;
  }
  static std::string Train(v1::DataKind kind, int64_t d, v1::ModelFamily family,
                           int hidden_units = 0) {
    auto ds = client_->UploadDataset("train", Random(kind, 300, d, 7));
    EXPECT_TRUE(ds.ok()) << ds.status();
    v1::JobSpec spec;
    spec.set_dataset_id(ds->id());
    spec.set_validation_fraction(0.2);
    spec.mutable_model()->set_family(family);
    if (family == v1::MODEL_FAMILY_GAUSSIAN_MIXTURE) {
      spec.mutable_model()->mutable_gaussian_mixture()->set_components(2);
      spec.mutable_model()->mutable_gaussian_mixture()->set_covariance(v1::COVARIANCE_TYPE_FULL);
    }
    if (family == v1::MODEL_FAMILY_MADE)
      spec.mutable_model()->mutable_made()->set_hidden_units(hidden_units);
    spec.set_batch_size(100);
    spec.set_epochs(2);
    return TrainToModel(*client_, spec);
  }
  static v1::MarginalRequest MarginalOf(const std::string& model, const RecordMatrix& x,
                                        std::vector<uint32_t> observed) {
    v1::MarginalRequest r;
    r.set_model_id(model);
    *r.mutable_records() = Encode(x, 0, x.rows);
    for (uint32_t d : observed) r.add_observed_dims(d);
    return r;
  }
  static v1::ImputeRequest ImputeOf(const std::string& model, const RecordMatrix& x,
                                    std::vector<uint32_t> observed, uint32_t n) {
    v1::ImputeRequest r;
    r.set_model_id(model);
    *r.mutable_records() = Encode(x, 0, x.rows);
    for (uint32_t d : observed) r.add_observed_dims(d);
    r.set_num_samples(n);
    return r;
  }

  static TempDir* temp_;
  static InProcessServer* logpd_;  // destroyed before temp_
  static LogpServer* server_;
  static Client* client_;
  static std::string *binary_, *mixture_, *flow_;
};
TempDir* ConditionalRpcTest::temp_ = nullptr;
InProcessServer* ConditionalRpcTest::logpd_ = nullptr;
LogpServer* ConditionalRpcTest::server_ = nullptr;
Client* ConditionalRpcTest::client_ = nullptr;
std::string* ConditionalRpcTest::binary_ = nullptr;
std::string* ConditionalRpcTest::mixture_ = nullptr;
std::string* ConditionalRpcTest::flow_ = nullptr;

TEST_F(ConditionalRpcTest, BinaryMarginalIsTheLogSumOfScoresOverTheCompletions) {
  const RecordMatrix x = Random(v1::DATA_KIND_BINARY, 3, 5, 11);
  auto got = client_->Marginal(MarginalOf(*binary_, x, {3, 1}));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->score_kind(), v1::SCORE_KIND_EXACT);
  ASSERT_EQ(got->log_prob_size(), 3);
  for (int64_t r = 0; r < 3; ++r) {
    // The 8 completions of dimensions 0, 2, 4, scored by Score.
    RecordMatrix all = RecordMatrix::Empty(v1::DATA_KIND_BINARY, 5, 2).value();
    for (int c = 0; c < 8; ++c) {
      for (int64_t d = 0; d < 5; ++d) {
        all.u8.push_back(d == 1 || d == 3 ? x.u8[r * 5 + d]
                                          : static_cast<uint8_t>((c >> (d / 2)) & 1));
      }
      ++all.rows;
    }
    auto lp = client_->Score(*binary_, all);
    ASSERT_TRUE(lp.ok()) << lp.status();
    double m = -INFINITY, s = 0;
    for (double v : *lp) m = std::max(m, v);
    for (double v : *lp) s += std::exp(v - m);
    EXPECT_NEAR(got->log_prob(r), m + std::log(s), 1e-6);
  }
  // Every dimension observed: exactly Score's log p(x).
  auto full = client_->Marginal(MarginalOf(*binary_, x, {0, 1, 2, 3, 4}));
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->method(), "full likelihood");
  auto lp = client_->Score(*binary_, x);
  ASSERT_TRUE(lp.ok());
  for (int r = 0; r < 3; ++r) EXPECT_DOUBLE_EQ(full->log_prob(r), (*lp)[r]);
}

TEST_F(ConditionalRpcTest, ImputeKeepsTheObservedValuesAndSaysHowItDrew) {
  const RecordMatrix x = Random(v1::DATA_KIND_CONTINUOUS, 4, 3, 12);
  auto got = client_->Impute(ImputeOf(*mixture_, x, {0, 2}, 5));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->exact());
  EXPECT_EQ(got->method(), "closed form");
  EXPECT_EQ(got->num_samples(), 5u);
  EXPECT_EQ(got->conditional_mean_size(), 12);
  RecordMatrix s = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, 3, 0).value();
  ASSERT_TRUE(DecodeAppend(got->samples(), 0, &s).ok());
  ASSERT_EQ(s.rows, 20);
  for (int64_t r = 0; r < 20; ++r) {
    EXPECT_EQ(s.f32[r * 3], x.f32[(r / 5) * 3]);
    EXPECT_EQ(s.f32[r * 3 + 2], x.f32[(r / 5) * 3 + 2]);
    EXPECT_EQ(got->conditional_mean((r / 5) * 3), x.f32[(r / 5) * 3]);
  }
  auto m = client_->Marginal(MarginalOf(*mixture_, x, {1}));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->method(), "closed form");
  // JSON rows work as for Score.
  v1::ImputeRequest rows = ImputeOf(*binary_, Random(v1::DATA_KIND_BINARY, 1, 5, 3), {0}, 2);
  rows.clear_records();
  auto* row = rows.mutable_rows()->add_values()->mutable_list_value();
  for (int d = 0; d < 5; ++d) row->add_values()->set_number_value(d % 2);
  auto by_rows = client_->Impute(rows);
  ASSERT_TRUE(by_rows.ok()) << by_rows.status();
  EXPECT_EQ(by_rows->samples().num_records(), 2u);
}

TEST_F(ConditionalRpcTest, ErrorsHaveTheirExactCodes) {
  const RecordMatrix x = Random(v1::DATA_KIND_BINARY, 2, 5, 13);
  auto code = [](const absl::Status& s) { return s.code(); };
  using C = absl::StatusCode;
  EXPECT_EQ(code(client_->Marginal(MarginalOf(*binary_, x, {})).status()), C::kInvalidArgument);
  const absl::Status out_of_range = client_->Marginal(MarginalOf(*binary_, x, {5})).status();
  EXPECT_EQ(code(out_of_range), C::kInvalidArgument);
  EXPECT_NE(out_of_range.message().find("observed_dims[0]"), std::string::npos) << out_of_range;
  EXPECT_EQ(code(client_->Marginal(MarginalOf(*binary_, x, {1, 1})).status()), C::kInvalidArgument);
  EXPECT_EQ(code(client_->Impute(ImputeOf(*binary_, x, {1}, 0)).status()), C::kInvalidArgument);
  v1::MarginalRequest k1 = MarginalOf(*binary_, x, {1});
  k1.set_importance_samples(1);
  EXPECT_EQ(code(client_->Marginal(k1).status()), C::kInvalidArgument);
  EXPECT_EQ(code(client_->Marginal(MarginalOf("model-0000", x, {1})).status()), C::kNotFound);
  const RecordMatrix c = Random(v1::DATA_KIND_CONTINUOUS, 2, 3, 14);
  const absl::Status flow = client_->Marginal(MarginalOf(*flow_, c, {0})).status();
  EXPECT_EQ(code(flow), C::kFailedPrecondition) << flow;
  EXPECT_EQ(code(client_->Impute(ImputeOf(*flow_, c, {0}, 3)).status()), C::kFailedPrecondition);
  // Wrong kind of records for the model.
  EXPECT_EQ(code(client_->Marginal(MarginalOf(*binary_, c, {0})).status()), C::kInvalidArgument);
  // records x num_samples x dim over 500,000.
  EXPECT_EQ(code(client_->Impute(ImputeOf(*mixture_, c, {0}, 100000)).status()),
            C::kResourceExhausted);
}

TEST_F(ConditionalRpcTest, ADeadlineStopsALongEnumeration) {
  // MADE over 20 dimensions, 4 observed off its prefix: 2^16 completions per record, 60 records
  // (3.9 M forward rows): seconds of work, stopped by a 300 ms deadline.
  const std::string made = Train(v1::DATA_KIND_BINARY, 20, v1::MODEL_FAMILY_MADE, 500);
  auto stub = v1::ModelService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  v1::MarginalResponse response;
  const grpc::Status s = stub->Marginal(
      &ctx, MarginalOf(made, Random(v1::DATA_KIND_BINARY, 60, 20, 15), {19, 5, 11, 2}), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  // The server is free again: a small call answers.
  auto ok = client_->Marginal(MarginalOf(*binary_, Random(v1::DATA_KIND_BINARY, 1, 5, 16), {0}));
  EXPECT_TRUE(ok.ok()) << ok.status();
}

}  // namespace
}  // namespace logp
