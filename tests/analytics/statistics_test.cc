// analytics/statistics.h against hand-computed values, brute force and the exact validity of the
// procedures on simulated data (fixed seeds; bounds are binomial at about 4 standard errors).
#include "analytics/statistics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace logp {
namespace {

// 4 binomial standard errors of a rate `p` over `n` trials.
double Slack(double p, int n) { return 4 * std::sqrt(p * (1 - p) / n); }

TEST(ConformalPValues, CountsTiesAsAtMost) {
  const std::vector<double> p = ConformalPValues({1, 2, 3, 4}, {0.5, 2, 3.5, 10});
  ASSERT_EQ(p.size(), 4u);
  EXPECT_DOUBLE_EQ(p[0], 1.0 / 5);
  EXPECT_DOUBLE_EQ(p[1], 3.0 / 5);  // 1 and 2 are <= 2
  EXPECT_DOUBLE_EQ(p[2], 4.0 / 5);
  EXPECT_DOUBLE_EQ(p[3], 1.0);
  EXPECT_EQ(ConformalPValues({}, {-1.0}), std::vector<double>{1.0});
}

TEST(ConformalPValues, ExactlyValidForExchangeableRecords) {
  // n = 19: P(p <= 0.1) = floor(0.1 * 20) / 20 = 0.1 exactly for a fresh record of the same law.
  std::mt19937_64 gen(7);
  std::normal_distribution<double> normal(-50, 3);
  const int trials = 20000;
  int at_most = 0;
  for (int t = 0; t < trials; ++t) {
    std::vector<double> ref(19);
    for (double& r : ref) r = normal(gen);
    std::sort(ref.begin(), ref.end());
    if (ConformalPValues(ref, {normal(gen)})[0] <= 0.1) ++at_most;
  }
  EXPECT_NEAR(double(at_most) / trials, 0.1, Slack(0.1, trials));
}

TEST(BenjaminiHochberg, StepUpOnHandExamples) {
  BhDecision d = BenjaminiHochberg({0.01, 0.04, 0.03, 0.005, 0.5}, 0.05);
  EXPECT_EQ(d.rejected, (std::vector<bool>{true, true, true, true, false}));
  EXPECT_EQ(d.num_rejected, 4);
  EXPECT_DOUBLE_EQ(d.threshold, 0.04);
  // Step-up: 0.04 > 1 * 0.05 / 2, but 0.045 <= 2 * 0.05 / 2 rejects both.
  d = BenjaminiHochberg({0.045, 0.04}, 0.05);
  EXPECT_EQ(d.rejected, (std::vector<bool>{true, true}));
  d = BenjaminiHochberg({0.3, 0.2}, 0.05);
  EXPECT_EQ(d.num_rejected, 0);
  EXPECT_EQ(d.threshold, 0);
  EXPECT_EQ(BenjaminiHochberg({}, 0.1).num_rejected, 0);
}

TEST(BenjaminiHochberg, ControlsTheFalseDiscoveryRate) {
  // 180 true nulls (uniform p) and 20 strong alternatives: with independent p-values the FDR is
  // exactly q m0 / m = 0.09 at q = 0.1.
  std::mt19937_64 gen(11);
  std::uniform_real_distribution<double> unit(0, 1);
  const int trials = 4000, m0 = 180, m1 = 20;
  double fdp_sum = 0, fdp_sq = 0;
  int64_t true_discoveries = 0;
  for (int t = 0; t < trials; ++t) {
    std::vector<double> p;
    for (int i = 0; i < m0; ++i) p.push_back(unit(gen));
    for (int i = 0; i < m1; ++i) p.push_back(std::pow(unit(gen), 8) * 1e-2);
    const BhDecision d = BenjaminiHochberg(p, 0.1);
    int false_rejections = 0;
    for (int i = 0; i < m0; ++i) false_rejections += d.rejected[i];
    true_discoveries += d.num_rejected - false_rejections;
    const double fdp = d.num_rejected ? double(false_rejections) / d.num_rejected : 0.0;
    fdp_sum += fdp;
    fdp_sq += fdp * fdp;
  }
  const double mean = fdp_sum / trials;
  const double se = std::sqrt((fdp_sq / trials - mean * mean) / trials);
  EXPECT_NEAR(mean, 0.1 * m0 / (m0 + m1), 4 * se);
  EXPECT_GT(double(true_discoveries) / (trials * m1), 0.9);  // and it finds the alternatives
}

// Log-likelihood-like draws: N(mean, sd).
std::vector<double> Draw(std::mt19937_64& gen, int n, double mean, double sd) {
  std::normal_distribution<double> normal(mean, sd);
  std::vector<double> v(n);
  for (double& x : v) x = normal(gen);
  return v;
}

TEST(TypicalityTest, TypeOneErrorIsAlphaOnBatchesOfTheReferenceLaw) {
  std::mt19937_64 gen(3);
  for (int batch : {1, 10, 100}) {
    const int trials = 1000;
    int rejected = 0;
    for (int t = 0; t < trials; ++t) {
      const std::vector<double> ref = Draw(gen, 500, -300, 20);
      const TypicalityDecision d = TypicalityTest(ref, Draw(gen, batch, -300, 20), 0.05, 400, t);
      rejected += !d.typical;
      EXPECT_EQ(d.typical, d.statistic <= d.threshold);
    }
    EXPECT_NEAR(double(rejected) / trials, 0.05, Slack(0.05, trials)) << "batch " << batch;
  }
}

TEST(TypicalityTest, RejectsShiftedBatchesAndIsDeterministic) {
  std::mt19937_64 gen(5);
  const std::vector<double> ref = Draw(gen, 2000, -300, 20);
  // A batch of 100 whose mean NLL is 10 nats (5 batch standard errors) above the entropy.
  const std::vector<double> shifted = Draw(gen, 100, -310, 20);
  const TypicalityDecision d = TypicalityTest(ref, shifted, 0.05, 1000, 1);
  EXPECT_FALSE(d.typical);
  EXPECT_NEAR(d.entropy_estimate, 300, 2);
  EXPECT_LT(d.p_value, 0.01);
  // Atypically *likely* batches are rejected too (the test is two-sided).
  EXPECT_FALSE(TypicalityTest(ref, Draw(gen, 100, -290, 20), 0.05, 1000, 1).typical);
  const TypicalityDecision again = TypicalityTest(ref, shifted, 0.05, 1000, 1);
  EXPECT_EQ(again.threshold, d.threshold);
  EXPECT_EQ(again.p_value, d.p_value);
  EXPECT_EQ(d.batch_size, 100);
  // A record of zero density makes any batch atypical, with the smallest p-value there is.
  std::vector<double> with_zero = shifted;
  with_zero[3] = -INFINITY;
  const TypicalityDecision zero = TypicalityTest(ref, with_zero, 0.05, 1000, 1);
  EXPECT_FALSE(zero.typical);
  EXPECT_EQ(zero.p_value, 1.0 / 1001);
  EXPECT_EQ(d.reference_size, 2000);
}

TEST(Auroc, EqualsTheBruteForcePairCount) {
  std::mt19937_64 gen(9);
  std::uniform_int_distribution<int> small(0, 6);  // many ties
  for (int t = 0; t < 50; ++t) {
    std::vector<double> neg(1 + t % 7), pos(1 + t % 5);
    for (double& x : neg) x = small(gen);
    for (double& x : pos) x = small(gen) + 1;
    double wins = 0;
    for (double p : pos) {
      for (double n : neg) wins += p > n ? 1.0 : (p == n ? 0.5 : 0.0);
    }
    EXPECT_NEAR(Auroc(neg, pos), wins / (neg.size() * pos.size()), 1e-12);
  }
  EXPECT_EQ(Auroc({1, 2}, {3, 4}), 1.0);
  EXPECT_EQ(Auroc({3, 4}, {1, 2}), 0.0);
  EXPECT_EQ(Auroc({1, 1}, {1}), 0.5);
  EXPECT_EQ(Auroc({}, {1}), 0.5);
}

TEST(ComparePaired, MatchesHandComputedValues) {
  // Reference values computed with Python's math module: mean of d = a - b, its standard
  // error with the n - 1 deviation, z and erfc(|z| / sqrt 2).
  const PairedComparison c = ComparePaired({1.0, 2.0, 3.5, 4.0, -1.0}, {0.5, 0.0, 1.0, 4.5, -3.0});
  EXPECT_EQ(c.num_records, 5);
  EXPECT_NEAR(c.mean_difference, 1.3, 1e-12);
  EXPECT_NEAR(c.standard_error, 0.5612486080160912, 1e-12);
  EXPECT_NEAR(c.z, 2.316264096574345, 1e-10);
  EXPECT_NEAR(c.p_value, 0.020543853397948186, 1e-10);
  EXPECT_NEAR(c.ci95_low, 1.3 - 1.96 * 0.5612486080160912, 1e-12);
  const PairedComparison same = ComparePaired({1, 2}, {1, 2});
  EXPECT_EQ(same.p_value, 1.0);
  const PairedComparison shifted = ComparePaired({2, 3}, {1, 2});
  EXPECT_EQ(shifted.p_value, 0.0);
  EXPECT_EQ(shifted.standard_error, 0.0);
}

// One record has no spread to estimate: no evidence (p = 1, an unbounded interval), not the
// p = 0 of a zero standard error.
TEST(ComparePaired, OneRecordIsNoEvidence) {
  const PairedComparison one = ComparePaired({2.0}, {1.0});
  EXPECT_EQ(one.num_records, 1);
  EXPECT_EQ(one.mean_difference, 1.0);
  EXPECT_EQ(one.standard_error, 0.0);
  EXPECT_EQ(one.z, 0.0);
  EXPECT_EQ(one.p_value, 1.0);
  EXPECT_EQ(one.ci95_low, -INFINITY);
  EXPECT_EQ(one.ci95_high, INFINITY);
  const PairedComparison none = ComparePaired({}, {});
  EXPECT_EQ(none.num_records, 0);
  EXPECT_EQ(none.p_value, 1.0);
}

}  // namespace
}  // namespace logp
