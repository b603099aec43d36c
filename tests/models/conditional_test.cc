// Marginals, conditional means and imputations (models/conditional.h) against exact truths:
// numerical quadrature of the full density over the missing dimensions (Gaussian mixtures),
// the Schur-complement formula, brute-force enumeration of every record of a small binary space,
// quadrature over the latent of a 1-D-latent VAE, and chi-square tests of imputed draws against
// the exact conditional (every test at a fixed seed, significance level 0.001).
#include "models/conditional.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "models/density_net.h"
#include "models/families/gaussian.h"
#include "models/families/vae.h"
#include "models/model.h"
#include "tests/models/test_data.h"

namespace logp {
namespace {

RecordMatrix Continuous(const std::vector<std::vector<double>>& rows) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, rows[0].size(), 0).value();
  for (const auto& r : rows) {
    for (double v : r) m.f32.push_back(static_cast<float>(v));
    ++m.rows;
  }
  return m;
}

RecordMatrix Binary(const std::vector<std::vector<int>>& rows) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_BINARY, rows[0].size(), 2).value();
  for (const auto& r : rows) {
    for (int v : r) m.u8.push_back(static_cast<uint8_t>(v));
    ++m.rows;
  }
  return m;
}

std::unique_ptr<Model> MustCreate(const v1::ModelSpec& spec, const DataShape& shape) {
  auto m = Model::Create(spec, shape, 11);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(m).value();
}

// Every parameter uniform in [-a, a] (masks folded back in): a non-trivial distribution.
void Randomise(const Model& model, double a, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& p : NetOf(model).parameters()) p.uniform_(-a, a);
  ForEachDensityNet(NetOf(model), [](DensityNet& n) { n.FoldMasks(); });
}

// A known 3-D mixture: K = 2 full-covariance components.
std::unique_ptr<Model> KnownMixture(bool full) {
  v1::ModelSpec spec;
  spec.set_family(v1::MODEL_FAMILY_GAUSSIAN_MIXTURE);
  auto* g = spec.mutable_gaussian_mixture();
  g->set_components(2);
  g->set_covariance(full ? v1::COVARIANCE_TYPE_FULL : v1::COVARIANCE_TYPE_DIAGONAL);
  auto model = MustCreate(spec, DataShape{v1::DATA_KIND_CONTINUOUS, 3, 0});
  torch::NoGradGuard no_grad;
  for (auto& p : NetOf(*model).named_parameters()) {
    if (p.key() == "logits") p.value().copy_(torch::tensor({0.3, -0.2}));
    if (p.key() == "means") p.value().copy_(torch::tensor({{-1.0, 0.5, 0.0}, {1.2, -0.4, 0.8}}));
    if (p.key() == "log_scale") {
      p.value().copy_(torch::log(torch::tensor({{0.8, 0.6, 1.1}, {0.5, 0.9, 0.7}})));
    }
    if (p.key() == "lower") {
      auto l = torch::zeros({2, 3, 3});
      l[0][1][0] = 0.5;
      l[0][2][0] = -0.3;
      l[0][2][1] = 0.4;
      l[1][1][0] = -0.6;
      l[1][2][1] = 0.7;
      p.value().copy_(l);
    }
  }
  return model;
}

// log of the trapezoid integral of exp(log_f) on a uniform grid with spacing h.
double LogTrapezoid(const std::vector<double>& log_f, double h) {
  double m = -INFINITY;
  for (double v : log_f) m = std::max(m, v);
  double s = 0;
  for (size_t i = 0; i < log_f.size(); ++i) {
    const double w = (i == 0 || i + 1 == log_f.size()) ? 0.5 : 1.0;
    s += w * std::exp(log_f[i] - m);
  }
  return m + std::log(s * h);
}

// Model log p at grid records: x with dimensions `free` replaced by every grid point.
std::vector<double> GridLogProb(const Model& model, const std::vector<double>& x,
                                const std::vector<int>& free, const std::vector<double>& grid) {
  std::vector<std::vector<double>> rows;
  if (free.size() == 1) {
    for (double t : grid) {
      auto r = x;
      r[free[0]] = t;
      rows.push_back(r);
    }
  } else {
    for (double t : grid) {
      for (double u : grid) {
        auto r = x;
        r[free[0]] = t;
        r[free[1]] = u;
        rows.push_back(r);
      }
    }
  }
  return model.LogProb(Continuous(rows)).value();
}

std::vector<double> Grid(double lo, double hi, int n) {
  std::vector<double> g;
  for (int i = 0; i < n; ++i) g.push_back(lo + (hi - lo) * i / (n - 1));
  return g;
}

TEST(MarginalTest, MixtureMatchesQuadratureOverTheMissingDimensions) {
  for (bool full : {true, false}) {
    auto model = KnownMixture(full);
    const std::vector<double> x = {0.4, -0.7, 1.3};
    // One missing dimension (1-D quadrature) and two (2-D), 14 standard deviations wide.
    const auto g1 = Grid(-12, 12, 4001);
    const auto g2 = Grid(-12, 12, 801);
    struct Case {
      std::vector<int64_t> observed;
      std::vector<int> free;
    };
    for (const Case& c : {Case{{0, 2}, {1}}, Case{{1}, {0, 2}}, Case{{2, 0}, {1}}}) {
      const auto& g = c.free.size() == 1 ? g1 : g2;
      const double h = g[1] - g[0];
      auto lp = GridLogProb(*model, x, c.free, g);
      double truth;
      if (c.free.size() == 1) {
        truth = LogTrapezoid(lp, h);
      } else {  // integrate the inner dimension, then the outer
        std::vector<double> outer;
        for (size_t i = 0; i < g.size(); ++i) {
          outer.push_back(LogTrapezoid(
              std::vector<double>(lp.begin() + i * g.size(), lp.begin() + (i + 1) * g.size()), h));
        }
        truth = LogTrapezoid(outer, h);
      }
      auto got = Marginal(*model, Continuous({x}), c.observed, ConditionalOptions{});
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(got->method, "closed form");
      EXPECT_EQ(got->kind, v1::SCORE_KIND_EXACT);
      EXPECT_TRUE(got->standard_error.empty());
      EXPECT_NEAR(got->log_prob[0], truth, 2e-4) << "full " << full << " free " << c.free[0];
    }
  }
}

TEST(MarginalTest, DiagonalGaussianIsTheSumOfTheObservedNormalTerms) {
  v1::ModelSpec spec;
  spec.set_family(v1::MODEL_FAMILY_GAUSSIAN);
  auto model = MustCreate(spec, DataShape{v1::DATA_KIND_CONTINUOUS, 4, 0});
  {
    torch::NoGradGuard no_grad;
    for (auto& p : NetOf(*model).named_parameters()) {
      if (p.key() == "mean") p.value().copy_(torch::tensor({1.0, -2.0, 0.5, 3.0}));
      if (p.key() == "log_var") p.value().copy_(torch::log(torch::tensor({0.5, 2.0, 1.5, 0.1})));
    }
  }
  const double mean[] = {1.0, -2.0, 0.5, 3.0}, var[] = {0.5, 2.0, 1.5, 0.1};
  const std::vector<double> x = {0.2, -1.0, 2.0, 2.9};
  auto got = Marginal(*model, Continuous({x}), {3, 1}, ConditionalOptions{});
  ASSERT_TRUE(got.ok()) << got.status();
  double truth = 0;
  for (int d : {1, 3}) {
    truth += -0.5 * (std::pow(x[d] - mean[d], 2) / var[d] + std::log(2 * M_PI * var[d]));
  }
  EXPECT_NEAR(got->log_prob[0], truth, 1e-5);
  // Imputation keeps the observed values and draws the rest from the prior: moments.
  auto imp = Impute(*model, Continuous({x}), {3, 1}, 20000, ConditionalOptions{});
  ASSERT_TRUE(imp.ok()) << imp.status();
  EXPECT_TRUE(imp->exact);
  double s = 0, s2 = 0;
  for (int64_t r = 0; r < imp->samples.rows; ++r) {
    ASSERT_EQ(imp->samples.f32[r * 4 + 1], static_cast<float>(x[1]));
    ASSERT_EQ(imp->samples.f32[r * 4 + 3], static_cast<float>(x[3]));
    s += imp->samples.f32[r * 4 + 2];
    s2 += std::pow(imp->samples.f32[r * 4 + 2], 2);
  }
  const double n = imp->samples.rows, m = s / n;
  // Mean within 4 standard errors; the conditional mean is the prior mean.
  EXPECT_NEAR(m, 0.5, 4 * std::sqrt(1.5 / n));
  EXPECT_NEAR(s2 / n - m * m, 1.5, 4 * 1.5 * std::sqrt(2 / n));
  ASSERT_EQ(imp->conditional_mean.size(), 4u);
  EXPECT_DOUBLE_EQ(imp->conditional_mean[0], 1.0);
  EXPECT_DOUBLE_EQ(imp->conditional_mean[2], 0.5);
  EXPECT_NEAR(imp->conditional_mean[1], -1.0, 1e-7);
}

// Behind the logit preprocessing the diagonal Gaussian's marginal is the sum of its data-space
// per-dimension terms: against quadrature of the data-space density over (0, levels).
TEST(MarginalTest, PreprocessedGaussianMatchesQuadrature) {
  v1::ModelSpec spec;
  spec.set_family(v1::MODEL_FAMILY_GAUSSIAN);
  spec.mutable_preprocessing()->set_logit(true);
  spec.mutable_preprocessing()->set_levels(256);
  spec.mutable_preprocessing()->set_logit_alpha(0.01);
  auto model = MustCreate(spec, DataShape{v1::DATA_KIND_CONTINUOUS, 2, 0});
  if (!NetOf(*model).PerDimensionLogProb(torch::full({1, 2}, 10.0)).defined()) {
    GTEST_SKIP() << "preprocessing has no PerDimensionLogProb in this build";
  }
  const std::vector<double> x = {100.0, 30.0};
  const auto g = Grid(0, 256, 20001);
  auto lp = GridLogProb(*model, x, {1}, g);
  auto got = Marginal(*model, Continuous({x}), {0}, ConditionalOptions{});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->method, "independent dimensions");
  EXPECT_NEAR(got->log_prob[0], LogTrapezoid(lp, g[1] - g[0]), 1e-3);
  // Completions stay inside the support and keep the observed value.
  auto imp = Impute(*model, Continuous({x}), {0}, 100, ConditionalOptions{});
  ASSERT_TRUE(imp.ok()) << imp.status();
  EXPECT_TRUE(imp->exact);
  for (int64_t r = 0; r < 100; ++r) {
    EXPECT_EQ(imp->samples.f32[r * 2], 100.0f);
    EXPECT_GE(imp->samples.f32[r * 2 + 1], 0.0f);
    EXPECT_LE(imp->samples.f32[r * 2 + 1], 256.0f);
  }
}

// Conditional mean of a single full-covariance Gaussian (K = 1): the Schur-complement formula,
// computed here by hand for two observed dimensions and one missing.
TEST(ImputeTest, ConditionalMeanOfOneGaussianIsTheSchurComplementFormula) {
  v1::ModelSpec spec;
  spec.set_family(v1::MODEL_FAMILY_GAUSSIAN_MIXTURE);
  spec.mutable_gaussian_mixture()->set_components(1);
  spec.mutable_gaussian_mixture()->set_covariance(v1::COVARIANCE_TYPE_FULL);
  auto model = MustCreate(spec, DataShape{v1::DATA_KIND_CONTINUOUS, 3, 0});
  const double mu[3] = {0.5, -1.0, 2.0};
  // L = [[1, 0, 0], [0.6, 0.8, 0], [-0.5, 0.3, 0.7]].
  const double l[3][3] = {{1, 0, 0}, {0.6, 0.8, 0}, {-0.5, 0.3, 0.7}};
  {
    torch::NoGradGuard no_grad;
    for (auto& p : NetOf(*model).named_parameters()) {
      if (p.key() == "means") p.value().copy_(torch::tensor({{mu[0], mu[1], mu[2]}}));
      if (p.key() == "log_scale") {
        p.value().copy_(torch::log(torch::tensor({{l[0][0], l[1][1], l[2][2]}})));
      }
      if (p.key() == "lower") {
        auto t = torch::zeros({1, 3, 3});
        t[0][1][0] = l[1][0];
        t[0][2][0] = l[2][0];
        t[0][2][1] = l[2][1];
        p.value().copy_(t);
      }
    }
  }
  double s[3][3];
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      s[i][j] = 0;
      for (int k = 0; k < 3; ++k) s[i][j] += l[i][k] * l[j][k];
    }
  }
  // Observed {0, 2}, missing 1: mu_1 + S_1o S_oo^-1 (x_o - mu_o), S_oo^-1 by the 2x2 inverse.
  const std::vector<double> x = {1.5, 0.0, 1.0};
  const double a = s[0][0], b = s[0][2], d = s[2][2], det = a * d - b * b;
  const double r0 = x[0] - mu[0], r2 = x[2] - mu[2];
  const double w0 = (d * r0 - b * r2) / det, w2 = (-b * r0 + a * r2) / det;
  const double mean = mu[1] + s[1][0] * w0 + s[1][2] * w2;
  const double var = s[1][1] - (s[1][0] * (d * s[0][1] - b * s[2][1]) / det +
                                s[1][2] * (-b * s[0][1] + a * s[2][1]) / det);
  auto imp = Impute(*model, Continuous({x}), {0, 2}, 40000, ConditionalOptions{});
  ASSERT_TRUE(imp.ok()) << imp.status();
  ASSERT_EQ(imp->conditional_mean.size(), 3u);
  EXPECT_NEAR(imp->conditional_mean[1], mean, 1e-6);
  EXPECT_NEAR(imp->conditional_mean[0], 1.5, 1e-7);
  // The draws' moments: mean within 4 SE, variance within 4 SE (Var of s^2 ~ 2 var^2 / n).
  double m1 = 0, m2 = 0;
  const double n = imp->samples.rows;
  for (int64_t r = 0; r < imp->samples.rows; ++r) m1 += imp->samples.f32[r * 3 + 1];
  m1 /= n;
  for (int64_t r = 0; r < imp->samples.rows; ++r)
    m2 += std::pow(imp->samples.f32[r * 3 + 1] - m1, 2);
  m2 /= n;
  EXPECT_NEAR(m1, mean, 4 * std::sqrt(var / n));
  EXPECT_NEAR(m2, var, 4 * var * std::sqrt(2 / n));
}

// Mixture: the conditional mean against quadrature (integral of t p(x_o, t) / p(x_o)), and the
// imputed draws against the conditional distribution by a chi-square test over 10 bins whose
// probabilities come from quadrature of the full density.
TEST(ImputeTest, MixtureConditionalMatchesQuadrature) {
  for (bool full : {true, false}) {
    auto model = KnownMixture(full);
    const std::vector<double> x = {0.1, 0.0, 0.9};
    const auto g = Grid(-12, 12, 24001);
    const double h = g[1] - g[0];
    auto lp = GridLogProb(*model, x, {1}, g);
    const double log_z = LogTrapezoid(lp, h);
    std::vector<double> cdf(g.size(), 0.0);
    double mean = 0;
    for (size_t i = 1; i < g.size(); ++i) {
      const double p0 = std::exp(lp[i - 1] - log_z), p1 = std::exp(lp[i] - log_z);
      cdf[i] = cdf[i - 1] + 0.5 * h * (p0 + p1);
      mean += 0.5 * h * (p0 * g[i - 1] + p1 * g[i]);
    }
    const int64_t n = 20000;
    ConditionalOptions options;
    options.seed = 3;
    auto imp = Impute(*model, Continuous({x}), {0, 2}, n, options);
    ASSERT_TRUE(imp.ok()) << imp.status();
    EXPECT_TRUE(imp->exact);
    EXPECT_EQ(imp->method, "closed form");
    EXPECT_NEAR(imp->conditional_mean[1], mean, 1e-4);
    // Bin edges at the conditional deciles.
    std::vector<double> edges;
    for (int q = 1; q < 10; ++q) {
      size_t i = 0;
      while (cdf[i] < q / 10.0) ++i;
      edges.push_back(g[i]);
    }
    std::vector<double> expected(10), observed(10, 0);
    double prev = 0;
    for (int b = 0; b < 10; ++b) {
      double upper = 1;
      if (b < 9) {
        size_t i = 0;
        while (g[i] < edges[b]) ++i;
        upper = cdf[i];
      }
      expected[b] = n * (upper - prev);
      prev = upper;
    }
    for (int64_t r = 0; r < n; ++r) {
      ASSERT_EQ(imp->samples.f32[r * 3], static_cast<float>(x[0]));
      ASSERT_EQ(imp->samples.f32[r * 3 + 2], static_cast<float>(x[2]));
      const double t = imp->samples.f32[r * 3 + 1];
      int b = 0;
      while (b < 9 && t >= edges[b]) ++b;
      observed[b] += 1;
    }
    double chi2 = 0;
    for (int b = 0; b < 10; ++b) chi2 += std::pow(observed[b] - expected[b], 2) / expected[b];
    EXPECT_LT(chi2, 27.877) << "chi-square, 9 df, alpha = 0.001; full " << full;
  }
}

// ------------------------------------------------------------------------------------------
// Small binary models: brute force over all 2^D records.

v1::ModelSpec BinarySpec(v1::ModelFamily family) {
  v1::ModelSpec s;
  s.set_family(family);
  if (family == v1::MODEL_FAMILY_MADE) {
    s.mutable_made()->set_hidden_units(16);
    s.mutable_made()->set_num_masks(2);
    s.mutable_made()->set_order(v1::VARIABLE_ORDER_RANDOM);
  }
  if (family == v1::MODEL_FAMILY_NADE) s.mutable_nade()->set_hidden_units(8);
  if (family == v1::MODEL_FAMILY_FVSBN) s.mutable_fvsbn()->set_order(v1::VARIABLE_ORDER_RANDOM);
  return s;
}

// log p(x_observed) by summing exp(log p) over every record of the space that agrees with x on
// the observed dimensions.
double BruteMarginal(const std::vector<double>& all_lp, int64_t d, const std::vector<int>& x,
                     const std::vector<int64_t>& observed) {
  double m = -INFINITY;
  std::vector<double> keep;
  for (size_t r = 0; r < all_lp.size(); ++r) {
    bool match = true;
    for (int64_t o : observed) match = match && (((r >> o) & 1) == static_cast<size_t>(x[o]));
    if (match) keep.push_back(all_lp[r]);
  }
  for (double v : keep) m = std::max(m, v);
  double s = 0;
  for (double v : keep) s += std::exp(v - m);
  return m + std::log(s);
}

TEST(MarginalTest, SmallBinaryModelsMatchEnumeration) {
  const int64_t d = 6;
  const std::vector<std::vector<int>> xs = {{1, 0, 1, 1, 0, 0}, {0, 0, 0, 1, 1, 1}};
  for (auto family : {v1::MODEL_FAMILY_FVSBN, v1::MODEL_FAMILY_NADE, v1::MODEL_FAMILY_MADE,
                      v1::MODEL_FAMILY_BERNOULLI}) {
    auto model = MustCreate(BinarySpec(family), DataShape{v1::DATA_KIND_BINARY, d, 2});
    Randomise(*model, 1.5, 5);
    const auto all = model->LogProb(AllBinaryInputs(d)).value();
    for (const std::vector<int64_t>& observed :
         std::vector<std::vector<int64_t>>{{0, 3}, {5, 1, 2, 4}, {2}, {0, 1, 2, 3, 4, 5}}) {
      auto got = Marginal(*model, Binary(xs), observed, ConditionalOptions{});
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(got->kind, v1::SCORE_KIND_EXACT);
      for (size_t i = 0; i < xs.size(); ++i) {
        EXPECT_NEAR(got->log_prob[i], BruteMarginal(all, d, xs[i], observed), 2e-5)
            << family << " " << got->method;
      }
    }
  }
}

TEST(MarginalTest, CategoricalMadeMatchesEnumeration) {
  // D = 4, K = 3: brute force over the 81 records (record x has value (x / 3^c) mod 3 in c).
  v1::ModelSpec spec;
  spec.set_family(v1::MODEL_FAMILY_MADE);
  spec.mutable_made()->set_hidden_units(12);
  auto model = MustCreate(spec, DataShape{v1::DATA_KIND_CATEGORICAL, 4, 3});
  Randomise(*model, 1.5, 12);
  const auto all = model->LogProb(AllInputs(v1::DATA_KIND_CATEGORICAL, 4, 3)).value();
  RecordMatrix x = RecordMatrix::Empty(v1::DATA_KIND_CATEGORICAL, 4, 3).value();
  x.u8 = {2, 0, 1, 1};
  x.rows = 1;
  const std::vector<int64_t> observed = {2, 0};
  double m = -INFINITY, s = 0;
  std::vector<double> keep;
  for (int r = 0; r < 81; ++r) {
    if (r % 3 == 2 && (r / 9) % 3 == 1) keep.push_back(all[r]);
  }
  ASSERT_EQ(keep.size(), 9u);
  for (double v : keep) m = std::max(m, v);
  for (double v : keep) s += std::exp(v - m);
  auto got = Marginal(*model, x, observed, ConditionalOptions{});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_NEAR(got->log_prob[0], m + std::log(s), 2e-5) << got->method;
  // Completions: only the 9 records agreeing on dimensions 0 and 2.
  auto imp = Impute(*model, x, observed, 50, ConditionalOptions{});
  ASSERT_TRUE(imp.ok()) << imp.status();
  for (int64_t r = 0; r < 50; ++r) {
    EXPECT_EQ(imp->samples.u8[r * 4], 2);
    EXPECT_EQ(imp->samples.u8[r * 4 + 2], 1);
    EXPECT_LT(imp->samples.u8[r * 4 + 1], 3);
  }
}

// The autoregressive prefix: FVSBN over 20 dimensions observed on the first 3 of its order
// (2^17 completions: too many to enumerate, so only the prefix path answers), against brute
// force over the completions. Needs the families' PerDimensionLogProb.
TEST(MarginalTest, AutoregressivePrefixMatchesBruteForce) {
  const int64_t d = 20;
  auto model =
      MustCreate(BinarySpec(v1::MODEL_FAMILY_FVSBN), DataShape{v1::DATA_KIND_BINARY, d, 2});
  Randomise(*model, 0.8, 9);
  const std::vector<int64_t> order = NetOf(*model).FactorOrder();
  if (order.empty()) GTEST_SKIP() << "FVSBN has no FactorOrder in this build";
  const std::vector<int64_t> observed = {order[2], order[0], order[1]};
  RecordMatrix x = RandomBinary(1, d, 4);
  auto got = Marginal(*model, x, observed, ConditionalOptions{});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->method, "autoregressive prefix");
  auto brute = [&](const std::vector<int64_t>& obs) {  // every completion of the 17 others
    RecordMatrix all = RecordMatrix::Empty(v1::DATA_KIND_BINARY, d, 2).value();
    for (int64_t c = 0; c < (int64_t{1} << 17); ++c) {
      int64_t j = 0;
      for (int64_t col = 0; col < d; ++col) {
        const bool o = std::find(obs.begin(), obs.end(), col) != obs.end();
        all.u8.push_back(o ? x.u8[col] : static_cast<uint8_t>((c >> j++) & 1));
      }
      ++all.rows;
    }
    const auto lp = model->LogProb(all).value();
    double m = -INFINITY, s = 0;
    for (double v : lp) m = std::max(m, v);
    for (double v : lp) s += std::exp(v - m);
    return m + std::log(s);
  };
  EXPECT_NEAR(got->log_prob[0], brute(observed), 1e-4);
  // Off the prefix with as many completions: an ESTIMATE by the clamped ancestral proposal,
  // within 4 standard errors of brute force, and resampled completions that keep x_o.
  const std::vector<int64_t> off_prefix = {order[5], order[0], order[1]};
  ConditionalOptions options;
  options.importance_samples = 2000;
  options.seed = 4;
  auto off = Marginal(*model, x, off_prefix, options);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ(off->kind, v1::SCORE_KIND_ESTIMATE);
  EXPECT_EQ(off->method, "importance sampling (k=2000, ancestral proposal)");
  EXPECT_LT(std::abs(off->log_prob[0] - brute(off_prefix)), 4 * off->standard_error[0])
      << off->log_prob[0] << " ± " << off->standard_error[0];
  auto imp = Impute(*model, x, off_prefix, 10, options);
  ASSERT_TRUE(imp.ok()) << imp.status();
  EXPECT_FALSE(imp->exact);
  ASSERT_EQ(imp->effective_sample_size.size(), 1u);
  EXPECT_GT(imp->effective_sample_size[0], 1);
  for (int64_t r = 0; r < 10; ++r) {
    for (int64_t o : off_prefix) EXPECT_EQ(imp->samples.u8[r * d + o], x.u8[o]);
  }
}

// Ancestral continuation of a prefix: exact draws, against brute force by chi-square.
TEST(ImputeTest, PrefixContinuationFollowsTheExactConditional) {
  const int64_t d = 6;
  auto model = MustCreate(BinarySpec(v1::MODEL_FAMILY_NADE), DataShape{v1::DATA_KIND_BINARY, d, 2});
  Randomise(*model, 1.5, 14);
  const std::vector<int64_t> order = NetOf(*model).FactorOrder();
  if (order.empty()) GTEST_SKIP() << "NADE has no FactorOrder in this build";
  const std::vector<int64_t> observed = {order[1], order[0]};
  const std::vector<int> x = {1, 1, 0, 1, 0, 1};
  const auto all = model->LogProb(AllBinaryInputs(d)).value();
  const double log_po = BruteMarginal(all, d, x, observed);
  const int64_t n = 16000;
  ConditionalOptions options;
  options.seed = 5;
  auto imp = Impute(*model, Binary({x}), observed, n, options);
  ASSERT_TRUE(imp.ok()) << imp.status();
  EXPECT_TRUE(imp->exact);
  EXPECT_EQ(imp->method, "ancestral continuation of the prefix");
  std::map<int, double> counts;
  for (int64_t r = 0; r < n; ++r) {
    int code = 0;
    for (int64_t c = 0; c < d; ++c) code |= imp->samples.u8[r * d + c] << c;
    counts[code] += 1;
  }
  double chi2 = 0;
  int cells = 0;
  for (int code = 0; code < 64; ++code) {
    bool match = true;
    for (int64_t o : observed) match = match && ((code >> o) & 1) == x[o];
    if (!match) {
      EXPECT_EQ(counts[code], 0) << "an observed value changed";
      continue;
    }
    const double p = std::exp(all[code] - log_po);
    chi2 += std::pow(counts[code] - n * p, 2) / (n * p);
    ++cells;
  }
  ASSERT_EQ(cells, 16);
  EXPECT_LT(chi2, 37.697) << "chi-square, 15 df, alpha = 0.001";
}

// Chi-square of imputed binary completions against the exact conditional (brute force).
TEST(ImputeTest, BinaryDrawsFollowTheExactConditional) {
  const int64_t d = 6;
  const std::vector<int> x = {1, 0, 0, 1, 0, 1};
  const std::vector<int64_t> observed = {0, 3};
  for (auto family : {v1::MODEL_FAMILY_FVSBN, v1::MODEL_FAMILY_MADE}) {
    auto model = MustCreate(BinarySpec(family), DataShape{v1::DATA_KIND_BINARY, d, 2});
    Randomise(*model, 1.5, 6);
    const auto all = model->LogProb(AllBinaryInputs(d)).value();
    const double log_po = BruteMarginal(all, d, x, observed);
    std::map<int, double> expected;  // record code -> probability
    for (size_t r = 0; r < all.size(); ++r) {
      if (((r >> 0) & 1) == 1 && ((r >> 3) & 1) == 1) expected[r] = std::exp(all[r] - log_po);
    }
    ASSERT_EQ(expected.size(), 16u);
    const int64_t n = 16000;
    ConditionalOptions options;
    options.seed = 17;
    auto imp = Impute(*model, Binary({x}), observed, n, options);
    ASSERT_TRUE(imp.ok()) << imp.status();
    EXPECT_TRUE(imp->exact);
    std::map<int, double> counts;
    for (int64_t r = 0; r < n; ++r) {
      int code = 0;
      for (int64_t c = 0; c < d; ++c) code |= imp->samples.u8[r * d + c] << c;
      ASSERT_EQ(expected.count(code), 1u) << "an observed value changed";
      counts[code] += 1;
    }
    double chi2 = 0;
    for (const auto& [code, p] : expected) chi2 += std::pow(counts[code] - n * p, 2) / (n * p);
    EXPECT_LT(chi2, 37.697) << "chi-square, 15 df, alpha = 0.001; family " << family;
  }
}

// ------------------------------------------------------------------------------------------
// The VAE: a 1-D latent makes p(x_o) = sum over completions of int N(z) p(x | z) dz exact by
// quadrature.

std::unique_ptr<Model> SmallVae() {
  v1::ModelSpec spec;
  spec.set_family(v1::MODEL_FAMILY_VAE);
  spec.mutable_vae()->set_latent_dim(1);
  spec.mutable_vae()->set_hidden_units(8);
  auto model = MustCreate(spec, DataShape{v1::DATA_KIND_BINARY, 6, 2});
  Randomise(*model, 1.5, 8);
  return model;
}

// log p(x) of every record of the 6-D space by quadrature over z in [-10, 10].
std::vector<double> VaeLogProbByQuadrature(const Model& model) {
  auto& vae = dynamic_cast<VaeImpl&>(NetOf(model));
  torch::NoGradGuard no_grad;
  auto x = RecordsToTensor(AllBinaryInputs(6));  // [64, 6]
  const int64_t g = 4001;
  auto z = torch::linspace(-10, 10, g);
  auto ll = vae.LogLikelihood(x, z.view({g, 1, 1}).expand({g, 64, 1})).to(torch::kDouble);
  auto log_prior = (-0.5 * z.pow(2) - 0.5 * std::log(2 * M_PI)).to(torch::kDouble);
  auto f = ll + log_prior.unsqueeze(1);  // [g, 64]
  std::vector<double> out;
  for (int64_t r = 0; r < 64; ++r) {
    auto col = f.select(1, r).contiguous();
    out.push_back(LogTrapezoid(
        std::vector<double>(col.data_ptr<double>(), col.data_ptr<double>() + g), 20.0 / (g - 1)));
  }
  return out;
}

TEST(MarginalTest, VaeEstimateIsWithinItsStandardErrors) {
  auto model = SmallVae();
  const auto all = VaeLogProbByQuadrature(*model);
  const std::vector<int64_t> observed = {0, 2, 4};
  std::vector<std::vector<int>> xs;
  for (int r = 0; r < 16; ++r) {
    std::vector<int> x;
    for (int c = 0; c < 6; ++c) x.push_back((r * 7 + c * 3) % 5 < 2);
    xs.push_back(x);
  }
  // Five seeds x 16 records: every estimate within 4 SE of the truth, an informative SE, and
  // the 2-SE interval covering the truth about 95% of the time (at least 85% of 80).
  int within_2se = 0, total = 0;
  for (uint64_t seed : {21, 22, 23, 24, 25}) {
    ConditionalOptions options;
    options.importance_samples = 200;
    options.seed = seed;
    auto got = Marginal(*model, Binary(xs), observed, options);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->kind, v1::SCORE_KIND_ESTIMATE);
    EXPECT_EQ(got->method, "importance sampling (k=200)");
    ASSERT_EQ(got->standard_error.size(), xs.size());
    for (size_t i = 0; i < xs.size(); ++i) {
      const double truth = BruteMarginal(all, 6, xs[i], observed);
      const double se = got->standard_error[i];
      EXPECT_GT(se, 0);
      EXPECT_LT(se, 0.2);
      EXPECT_LT(std::abs(got->log_prob[i] - truth), 4 * se) << i;
      within_2se += std::abs(got->log_prob[i] - truth) < 2 * se;
      ++total;
    }
  }
  EXPECT_GE(within_2se, 0.85 * total) << within_2se << " of " << total;
}

TEST(ImputeTest, VaeResampledDrawsApproachTheConditional) {
  auto model = SmallVae();
  const auto all = VaeLogProbByQuadrature(*model);
  const std::vector<int> x = {1, 0, 1, 0, 0, 1};
  const std::vector<int64_t> observed = {0, 1, 5};
  const double log_po = BruteMarginal(all, 6, x, observed);
  ConditionalOptions options;
  options.importance_samples = 5000;
  options.seed = 2;
  const int64_t n = 4000;
  auto imp = Impute(*model, Binary({x}), observed, n, options);
  ASSERT_TRUE(imp.ok()) << imp.status();
  EXPECT_FALSE(imp->exact);
  ASSERT_EQ(imp->effective_sample_size.size(), 1u);
  EXPECT_GT(imp->effective_sample_size[0], 100);
  EXPECT_LE(imp->effective_sample_size[0], 5000 + 1e-6);
  std::map<int, double> counts;
  for (int64_t r = 0; r < n; ++r) {
    int code = 0;
    for (int64_t c = 0; c < 6; ++c) code |= imp->samples.u8[r * 6 + c] << c;
    counts[code] += 1;
  }
  double chi2 = 0;
  int cells = 0;
  for (int code = 0; code < 64; ++code) {
    if ((code & 1) != 1 || ((code >> 1) & 1) != 0 || ((code >> 5) & 1) != 1) {
      EXPECT_EQ(counts[code], 0) << "an observed value changed";
      continue;
    }
    const double p = std::exp(all[code] - log_po);
    chi2 += std::pow(counts[code] - n * p, 2) / (n * p);
    ++cells;
  }
  ASSERT_EQ(cells, 8);
  EXPECT_LT(chi2, 24.322) << "chi-square, 7 df, alpha = 0.001";
}

// ------------------------------------------------------------------------------------------
// Errors.

TEST(ConditionalErrorsTest, ObservedDimsAndLimits) {
  EXPECT_EQ(CheckObservedDims({}, 3).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckObservedDims({3}, 3).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckObservedDims({-1}, 3).code(), absl::StatusCode::kInvalidArgument);
  const absl::Status dup = CheckObservedDims({1, 0, 1}, 3);
  EXPECT_EQ(dup.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(dup.message().find("observed_dims[2]"), std::string::npos) << dup;
  EXPECT_TRUE(CheckObservedDims({2, 0, 1}, 3).ok());

  auto fvsbn =
      MustCreate(BinarySpec(v1::MODEL_FAMILY_FVSBN), DataShape{v1::DATA_KIND_BINARY, 6, 2});
  ConditionalOptions small;
  small.max_forward_rows = 50;  // 2 records x 32 completions = 64
  auto over = Marginal(*fvsbn, Binary({{1, 0, 1, 1, 0, 0}, {1, 0, 1, 1, 0, 0}}), {0}, small);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted) << over.status();
  auto zero = Impute(*fvsbn, Binary({{1, 0, 1, 1, 0, 0}}), {0}, 0, ConditionalOptions{});
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  auto wrong = Marginal(*fvsbn, Continuous({{1, 2, 3}}), {0}, ConditionalOptions{});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);

  v1::ModelSpec maf;
  maf.set_family(v1::MODEL_FAMILY_MAF);
  auto flow = MustCreate(maf, DataShape{v1::DATA_KIND_CONTINUOUS, 3, 0});
  auto no = Marginal(*flow, Continuous({{1, 2, 3}}), {0}, ConditionalOptions{});
  EXPECT_EQ(no.status().code(), absl::StatusCode::kFailedPrecondition) << no.status();
  auto no_impute = Impute(*flow, Continuous({{1, 2, 3}}), {0, 1}, 4, ConditionalOptions{});
  EXPECT_EQ(no_impute.status().code(), absl::StatusCode::kFailedPrecondition);
  // All observed: the full likelihood, for any family.
  auto full = Marginal(*flow, Continuous({{1, 2, 3}}), {0, 1, 2}, ConditionalOptions{});
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_NEAR(full->log_prob[0], flow->LogProb(Continuous({{1, 2, 3}})).value()[0], 1e-9);

  auto vae = SmallVae();
  ConditionalOptions one;
  one.importance_samples = 1;
  EXPECT_EQ(Marginal(*vae, Binary({{1, 0, 1, 1, 0, 0}}), {0}, one).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace logp
