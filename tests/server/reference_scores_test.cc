// ComputeReferenceScores (the kept subsample) and the sidecar's byte format.
#include "server/core/reference_scores.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace logp {
namespace {

std::unique_ptr<Model> Gaussian() {
  v1::ModelSpec spec;
  spec.set_family(v1::MODEL_FAMILY_GAUSSIAN);
  DataShape shape;
  shape.kind = v1::DATA_KIND_CONTINUOUS;
  shape.dim = 1;
  return Model::Create(spec, shape, 1).value();
}

RecordMatrix Records(int64_t n) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, 1, 0).value();
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (int64_t i = 0; i < n; ++i) m.f32.push_back(normal(rng));
  m.rows = n;
  return m;
}

TEST(ReferenceScoresTest, KeepsAllOrASeededSubsampleOfTheScores) {
  const auto model = Gaussian();
  const RecordMatrix x = Records(1000);
  std::vector<double> all = model->LogProb(x).value();
  std::sort(all.begin(), all.end());
  const ReferenceScores full = ComputeReferenceScores(*model, x, 5).value();
  EXPECT_EQ(full.sorted_log_prob, all);
  EXPECT_EQ(full.num_scored, 1000);
  EXPECT_EQ(full.kind, v1::SCORE_KIND_EXACT);
  const ReferenceScores part = ComputeReferenceScores(*model, x, 5, nullptr, 300).value();
  ASSERT_EQ(part.sorted_log_prob.size(), 300u);
  EXPECT_EQ(part.num_scored, 1000);
  EXPECT_TRUE(std::is_sorted(part.sorted_log_prob.begin(), part.sorted_log_prob.end()));
  // A sub-multiset of the scores, the same for the same seed, another for another seed.
  EXPECT_TRUE(std::includes(all.begin(), all.end(), part.sorted_log_prob.begin(),
                            part.sorted_log_prob.end()));
  EXPECT_EQ(ComputeReferenceScores(*model, x, 5, nullptr, 300)->sorted_log_prob,
            part.sorted_log_prob);
  EXPECT_NE(ComputeReferenceScores(*model, x, 6, nullptr, 300)->sorted_log_prob,
            part.sorted_log_prob);
}

TEST(ReferenceScoresTest, BytesRoundTripAndForeignBytesAreDataLoss) {
  ReferenceScores r;
  r.sorted_log_prob = {-3.5, -1.25, -1.25, 0.5};
  r.kind = v1::SCORE_KIND_ESTIMATE;
  r.importance_samples = 50;
  r.seed = 0x1234567890abcdefull;
  r.num_scored = 9;
  const std::string bytes = SerializeReferenceScores(r);
  const ReferenceScores back = ParseReferenceScores(bytes, "x").value();
  EXPECT_EQ(back.sorted_log_prob, r.sorted_log_prob);
  EXPECT_EQ(back.kind, r.kind);
  EXPECT_EQ(back.importance_samples, 50);
  EXPECT_EQ(back.seed, r.seed);
  EXPECT_EQ(back.num_scored, 9);
  for (const std::string& bad :
       {std::string("LOGPMDL1"), bytes.substr(0, bytes.size() - 1), bytes + "12345678"}) {
    EXPECT_EQ(ParseReferenceScores(bad, "x").status().code(), absl::StatusCode::kDataLoss);
  }
}

}  // namespace
}  // namespace logp
