// The simple families (independent categorical, diagonal Gaussian, Gaussian mixture) and the
// dequantisation/logit preprocessing, checked against exact truths: closed-form MLE formulas,
// normalisation by enumeration and quadrature, autograd Jacobians, sample statistics, and a
// known 5-D mixture whose true density the test computes itself.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "models/density_net.h"
#include "models/families/gaussian.h"
#include "models/families/independent.h"
#include "models/families/preprocessing.h"
#include "models/model.h"
#include "models/train.h"

namespace logp {
namespace {

// ------------------------------------------------------------------------------------------
// Helpers.

RecordMatrix Continuous(const std::vector<std::vector<double>>& rows) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, rows[0].size(), 0).value();
  for (const auto& r : rows) {
    for (double v : r) m.f32.push_back(static_cast<float>(v));
    ++m.rows;
  }
  return m;
}

torch::Tensor ToTensor(const std::vector<std::vector<double>>& rows) {
  return RecordsToTensor(Continuous(rows));
}

RecordMatrix Categorical(const std::vector<std::vector<int>>& rows, int k) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CATEGORICAL, rows[0].size(), k).value();
  for (const auto& r : rows) {
    for (int v : r) m.u8.push_back(static_cast<uint8_t>(v));
    ++m.rows;
  }
  return m;
}

DataShape ContinuousShape(int64_t d) { return DataShape{v1::DATA_KIND_CONTINUOUS, d, 0}; }

v1::ModelSpec CategoricalSpec(double a) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_CATEGORICAL);
  s.mutable_categorical()->set_pseudo_count(a);
  return s;
}

v1::ModelSpec GaussianSpec() {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_GAUSSIAN);
  return s;
}

v1::ModelSpec MixtureSpec(int k, bool full, bool em = true) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_GAUSSIAN_MIXTURE);
  auto* g = s.mutable_gaussian_mixture();
  g->set_components(k);
  g->set_covariance(full ? v1::COVARIANCE_TYPE_FULL : v1::COVARIANCE_TYPE_DIAGONAL);
  g->set_training(em ? v1::MIXTURE_TRAINING_EM : v1::MIXTURE_TRAINING_GRADIENT);
  return s;
}

std::unique_ptr<Model> MustCreate(const v1::ModelSpec& spec, const DataShape& shape,
                                  uint64_t seed = 1) {
  auto m = Model::Create(spec, shape, seed);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(m).value();
}

DensityNet& Net(const Model& m) { return *&NetOf(m); }

template <typename T>
T& NetAs(const Model& m) {
  auto* p = dynamic_cast<T*>(&Net(m));
  EXPECT_NE(p, nullptr);
  return *p;
}

// log p of every row of `x` [N, D] by the net, in double, without gradients.
std::vector<double> NetLogProb(DensityNet& net, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  std::vector<double> out;
  for (int64_t b = 0; b < x.size(0); b += 100000) {
    auto lp = net.LogProb(x.slice(0, b, std::min(x.size(0), b + 100000)).to(torch::kFloat))
                  .to(torch::kDouble)
                  .contiguous();
    out.insert(out.end(), lp.data_ptr<double>(), lp.data_ptr<double>() + lp.numel());
  }
  return out;
}

double MeanOf(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / v.size();
}

// Points of a 2-component, strongly correlated 2-D mixture (or 1-D when d == 1).
std::vector<std::vector<double>> BimodalData(int64_t n, int d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0, 1);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<std::vector<double>> rows;
  for (int64_t i = 0; i < n; ++i) {
    const bool first = u(rng) < 0.6;
    const double a = z(rng), b = z(rng);
    std::vector<double> r;
    r.push_back(first ? -1.5 + 0.6 * a : 1.5 + 0.8 * a);
    if (d == 2) r.push_back(first ? 1.0 + 0.5 * a + 0.3 * b : -0.5 - 0.4 * a + 0.5 * b);
    rows.push_back(r);
  }
  return rows;
}

// Midpoint-rule integral of exp(log p) over [lo, hi]^d (d = 1 or 2) with `n` cells per axis.
double Integrate(DensityNet& net, int d, double lo, double hi, int64_t n) {
  const double h = (hi - lo) / n;
  auto axis = torch::arange(n, torch::kDouble) * h + (lo + 0.5 * h);
  torch::Tensor grid;
  if (d == 1) {
    grid = axis.unsqueeze(1);
  } else {
    auto g = torch::meshgrid({axis, axis}, "ij");
    grid = torch::stack({g[0].reshape(-1), g[1].reshape(-1)}, 1);
  }
  double total = 0;
  for (double lp : NetLogProb(net, grid)) total += std::exp(lp);
  return total * std::pow(h, d);
}

// ------------------------------------------------------------------------------------------
// Independent categorical.

TEST(CategoricalTest, ClosedFormFitMatchesFormula) {
  const int d = 3, k = 4, n = 300;
  std::mt19937_64 rng(5);
  std::discrete_distribution<int> dist({0.1, 0.2, 0.3, 0.4});
  std::vector<std::vector<int>> rows;
  for (int i = 0; i < n; ++i) {
    std::vector<int> r;
    for (int c = 0; c < d; ++c) r.push_back(c == 0 ? dist(rng) % 3 : dist(rng));  // col 0: no 3
    rows.push_back(r);
  }
  const RecordMatrix data = Categorical(rows, k);
  for (double a : {0.0, 2.0}) {
    auto model = MustCreate(CategoricalSpec(a), DataShape{v1::DATA_KIND_CATEGORICAL, d, k});
    auto& net = NetAs<CategoricalNetImpl>(*model);
    net.FitClosedForm(RecordsToTensor(data));
    auto p = net.Probabilities().to(torch::kDouble);
    std::vector<std::vector<double>> expected(d, std::vector<double>(k));
    for (int c = 0; c < d; ++c) {
      std::vector<double> count(k, 0);
      for (const auto& r : rows) count[r[c]] += 1;
      double total = 0;
      for (int j = 0; j < k; ++j) {
        expected[c][j] = std::max(1e-6, (count[j] + a) / (n + k * a));
        total += expected[c][j];
      }
      for (int j = 0; j < k; ++j) {
        expected[c][j] /= total;
        EXPECT_NEAR(p[c][j].item<double>(), expected[c][j], 1e-6) << "a=" << a << " " << c << j;
      }
    }
    // Column 0 never shows category 3: empirical frequency 0 floored at 1e-6 when a = 0.
    if (a == 0) EXPECT_NEAR(expected[0][3], 1e-6, 1e-9);
    // A record's log p is the sum of its per-column log-probabilities.
    auto lp = model->LogProb(Categorical({{2, 0, 3}}, k)).value();
    EXPECT_NEAR(lp[0],
                std::log(expected[0][2]) + std::log(expected[1][0]) + std::log(expected[2][3]),
                1e-5);
  }
}

RecordMatrix AllCategoricalInputs(int d, int k) {
  std::vector<std::vector<int>> rows;
  int total = 1;
  for (int i = 0; i < d; ++i) total *= k;
  for (int x = 0; x < total; ++x) {
    std::vector<int> r;
    for (int c = 0, v = x; c < d; ++c, v /= k) r.push_back(v % k);
    rows.push_back(r);
  }
  return Categorical(rows, k);
}

TEST(CategoricalTest, NormalisedByEnumerationUntrainedAndTrained) {
  const int d = 5, k = 3;
  const RecordMatrix all = AllCategoricalInputs(d, k);
  ASSERT_EQ(all.rows, 243);
  auto model = MustCreate(CategoricalSpec(0.5), DataShape{v1::DATA_KIND_CATEGORICAL, d, k});
  auto sum = [&] {
    double s = 0;
    const std::vector<double> lp = model->LogProb(all).value();
    for (double v : lp) s += std::exp(v);
    return s;
  };
  EXPECT_NEAR(sum(), 1.0, 1e-5);
  std::mt19937_64 rng(9);
  std::discrete_distribution<int> dist({0.7, 0.2, 0.1});
  std::vector<std::vector<int>> rows(50, std::vector<int>(d));
  for (auto& r : rows)
    for (auto& v : r) v = dist(rng);
  NetAs<CategoricalNetImpl>(*model).FitClosedForm(RecordsToTensor(Categorical(rows, k)));
  EXPECT_NEAR(sum(), 1.0, 1e-5);
}

TEST(CategoricalTest, SamplesFollowScoresChiSquare) {
  const int d = 2, k = 3;
  std::mt19937_64 rng(4);
  std::discrete_distribution<int> c0({0.6, 0.3, 0.1}), c1({0.2, 0.2, 0.6});
  std::vector<std::vector<int>> rows;
  for (int i = 0; i < 500; ++i) rows.push_back({c0(rng), c1(rng)});
  auto model = MustCreate(CategoricalSpec(1), DataShape{v1::DATA_KIND_CATEGORICAL, d, k});
  NetAs<CategoricalNetImpl>(*model).FitClosedForm(RecordsToTensor(Categorical(rows, k)));
  const int64_t n = 20000;
  RecordMatrix s = model->Sample(n, 17).value();
  ASSERT_EQ(s.rows, n);
  std::vector<double> observed(k * k, 0);
  for (int64_t r = 0; r < n; ++r) observed[s.u8[2 * r] + k * s.u8[2 * r + 1]] += 1;
  const auto lp = model->LogProb(AllCategoricalInputs(d, k)).value();  // index x0 + k x1
  double chi2 = 0;
  for (int c = 0; c < k * k; ++c) {
    const double e = n * std::exp(lp[c]);
    chi2 += (observed[c] - e) * (observed[c] - e) / e;
  }
  EXPECT_LT(chi2, 26.12);  // chi-square, 8 degrees of freedom, p = 0.001
}

// ------------------------------------------------------------------------------------------
// Diagonal Gaussian.

TEST(GaussianTest, ClosedFormFitIsSampleMeanAndBiasedVariance) {
  auto rows = BimodalData(1000, 2, 3);
  for (auto& r : rows) r.push_back(4.25);  // a constant column: variance floored
  auto model = MustCreate(GaussianSpec(), ContinuousShape(3));
  auto& net = NetAs<GaussianNetImpl>(*model);
  net.FitClosedForm(ToTensor(rows));
  for (int c = 0; c < 3; ++c) {
    double m = 0, v = 0;
    for (const auto& r : rows) m += static_cast<float>(r[c]);
    m /= rows.size();
    for (const auto& r : rows) v += (static_cast<float>(r[c]) - m) * (static_cast<float>(r[c]) - m);
    v /= rows.size();
    EXPECT_NEAR(net.Mean()[c].item<double>(), m, 1e-5);
    EXPECT_NEAR(net.Variance()[c].item<double>(), std::max(v, 1e-6), 1e-5 * std::max(v, 1e-6));
  }
  EXPECT_NEAR(net.Variance()[2].item<double>(), 1e-6, 1e-9);
}

TEST(GaussianTest, LogProbMatchesFormula) {
  auto rows = BimodalData(500, 2, 8);
  auto model = MustCreate(GaussianSpec(), ContinuousShape(2));
  auto& net = NetAs<GaussianNetImpl>(*model);
  net.FitClosedForm(ToTensor(rows));
  const double m0 = net.Mean()[0].item<double>(), m1 = net.Mean()[1].item<double>();
  const double v0 = net.Variance()[0].item<double>(), v1 = net.Variance()[1].item<double>();
  std::vector<std::vector<double>> points = {{0, 0}, {-2.5, 1.5}, {3, -4}, {10, 10}};
  auto lp = model->LogProb(Continuous(points)).value();
  for (size_t i = 0; i < points.size(); ++i) {
    const double x0 = points[i][0], x1 = points[i][1];
    const double expected = -0.5 * ((x0 - m0) * (x0 - m0) / v0 + std::log(2 * M_PI * v0)) -
                            0.5 * ((x1 - m1) * (x1 - m1) / v1 + std::log(2 * M_PI * v1));
    EXPECT_NEAR(lp[i], expected, 1e-4 * std::max(1.0, std::abs(expected))) << i;
  }
}

TEST(GaussianTest, IntegratesToOneIn1DAnd2D) {
  for (int d : {1, 2}) {
    auto model = MustCreate(GaussianSpec(), ContinuousShape(d));
    Net(*model).FitClosedForm(ToTensor(BimodalData(800, d, 11)));
    EXPECT_NEAR(Integrate(Net(*model), d, -12, 12, d == 1 ? 20000 : 800), 1.0, 1e-3) << d;
  }
}

// ------------------------------------------------------------------------------------------
// Gaussian mixture.

void RunEm(DensityNet& net, const torch::Tensor& x, int steps) {
  torch::NoGradGuard no_grad;
  for (int i = 0; i < steps; ++i) net.EmStep(x);
}

TEST(MixtureTest, OneComponentEqualsGaussian) {
  auto rows = BimodalData(700, 2, 21);
  for (auto& r : rows) r.push_back(r[0] * r[1]);
  const auto x = ToTensor(rows);
  auto gauss = MustCreate(GaussianSpec(), ContinuousShape(3));
  Net(*gauss).FitClosedForm(x);
  auto mix = MustCreate(MixtureSpec(1, /*full=*/false), ContinuousShape(3));
  RunEm(Net(*mix), x, 3);
  std::vector<std::vector<double>> points = {{0, 0, 0}, {1, -1, 2}, {-3, 2, 0.5}, {5, 5, -5}};
  auto a = gauss->LogProb(Continuous(points)).value();
  auto b = mix->LogProb(Continuous(points)).value();
  for (size_t i = 0; i < points.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4) << i;
}

TEST(MixtureTest, IntegratesToOneDiagonalAndFull) {
  for (bool full : {false, true}) {
    for (int d : {1, 2}) {
      auto model = MustCreate(MixtureSpec(3, full), ContinuousShape(d), 5);
      auto& net = Net(*model);
      EXPECT_NEAR(Integrate(net, d, -12, 12, d == 1 ? 20000 : 1000), 1.0, 1e-3)
          << "untrained full=" << full << " d=" << d;
      RunEm(net, ToTensor(BimodalData(1000, d, 13)), 20);
      EXPECT_NEAR(Integrate(net, d, -12, 12, d == 1 ? 20000 : 1000), 1.0, 1e-3)
          << "trained full=" << full << " d=" << d;
    }
  }
}

TEST(MixtureTest, EmNeverDecreasesTrainingLikelihood) {
  const auto x = ToTensor(BimodalData(1500, 2, 31));
  for (bool full : {false, true}) {
    auto model = MustCreate(MixtureSpec(4, full), ContinuousShape(2), 2);
    auto& net = Net(*model);
    std::vector<double> ll;
    for (int step = 0; step < 10; ++step) {
      RunEm(net, x, 1);
      ll.push_back(MeanOf(NetLogProb(net, x)));
    }
    for (int i = 1; i < 10; ++i) {
      EXPECT_GE(ll[i], ll[i - 1] - 1e-6 * std::abs(ll[i - 1])) << "full=" << full << " step " << i;
    }
    EXPECT_GT(ll[9], ll[0]);  // and it did improve
  }
}

TEST(MixtureTest, SampleMomentsMatchAnalyticMoments) {
  auto model = MustCreate(MixtureSpec(3, /*full=*/true), ContinuousShape(2), 3);
  auto& net = NetAs<GaussianMixtureNetImpl>(*model);
  RunEm(net, ToTensor(BimodalData(1000, 2, 41)), 15);
  const int64_t n = 40000;
  const auto s = RecordsToTensor(model->Sample(n, 99).value()).to(torch::kDouble);
  const auto mean = net.MixtureMean(), cov = net.MixtureCovariance();
  const auto sm = s.mean(0);
  const auto c = s - sm;
  for (int i = 0; i < 2; ++i) {
    const double se = std::sqrt(cov[i][i].item<double>() / n);
    EXPECT_NEAR(sm[i].item<double>(), mean[i].item<double>(), 4 * se) << i;
    for (int j = 0; j < 2; ++j) {
      auto prod = c.select(1, i) * c.select(1, j);
      const double se_cov = prod.std().item<double>() / std::sqrt(static_cast<double>(n));
      EXPECT_NEAR(prod.mean().item<double>(), cov[i][j].item<double>(), 4 * se_cov) << i << j;
    }
  }
  // The analytic covariance is that of a genuine mixture: strongly negative correlation here.
  EXPECT_LT(cov[0][1].item<double>(), -0.5);
}

TEST(MixtureTest, FullCovarianceBeatsDiagonalOnCorrelatedData) {
  std::mt19937_64 rng(51);
  std::normal_distribution<double> z(0, 1);
  auto draw = [&](int n) {
    std::vector<std::vector<double>> rows;
    for (int i = 0; i < n; ++i) {
      const double a = z(rng), b = z(rng);
      rows.push_back({a, 0.95 * a + std::sqrt(1 - 0.95 * 0.95) * b});
    }
    return rows;
  };
  const auto train = ToTensor(draw(2000)), test = ToTensor(draw(2000));
  for (int k : {1, 3}) {
    auto diag = MustCreate(MixtureSpec(k, false), ContinuousShape(2), 6);
    auto full = MustCreate(MixtureSpec(k, true), ContinuousShape(2), 6);
    RunEm(Net(*diag), train, 30);
    RunEm(Net(*full), train, 30);
    const double nll_diag = -MeanOf(NetLogProb(Net(*diag), test));
    const double nll_full = -MeanOf(NetLogProb(Net(*full), test));
    // K = 1: the gap is -1/2 log(1 - rho^2) = 1.164 nats.
    EXPECT_LT(nll_full, nll_diag - (k == 1 ? 1.0 : 0.2)) << "K=" << k;
  }
}

// A known 5-D, 3-component full-covariance mixture; the test's own double-precision density.
struct TrueMixture {
  static constexpr int kD = 5, kK = 3;
  double w[kK] = {0.5, 0.3, 0.2};
  double mu[kK][kD];
  double l[kK][kD][kD] = {};  // Cholesky factors of A A^T + 0.3 I

  TrueMixture() {
    std::mt19937_64 rng(2024);
    std::normal_distribution<double> z(0, 1);
    const double centres[kK][kD] = {{0, 0, 0, 0, 0}, {3, 3, 0, -1, 0}, {-3, 1, 3, 0, -2}};
    for (int k = 0; k < kK; ++k) {
      double a[kD][kD], s[kD][kD];
      for (int i = 0; i < kD; ++i) {
        mu[k][i] = centres[k][i];
        for (int j = 0; j < kD; ++j) a[i][j] = 0.5 * z(rng);
      }
      for (int i = 0; i < kD; ++i) {
        for (int j = 0; j < kD; ++j) {
          s[i][j] = i == j ? 0.3 : 0.0;
          for (int m = 0; m < kD; ++m) s[i][j] += a[i][m] * a[j][m];
        }
      }
      for (int i = 0; i < kD; ++i) {  // Cholesky-Banachiewicz
        for (int j = 0; j <= i; ++j) {
          double t = s[i][j];
          for (int m = 0; m < j; ++m) t -= l[k][i][m] * l[k][j][m];
          l[k][i][j] = i == j ? std::sqrt(t) : t / l[k][j][j];
        }
      }
    }
  }

  std::vector<std::vector<double>> Draw(int n, uint64_t seed) const {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> z(0, 1);
    std::discrete_distribution<int> comp(w, w + kK);
    std::vector<std::vector<double>> rows;
    for (int r = 0; r < n; ++r) {
      const int k = comp(rng);
      double e[kD];
      for (double& v : e) v = z(rng);
      std::vector<double> x(kD);
      for (int i = 0; i < kD; ++i) {
        x[i] = mu[k][i];
        for (int j = 0; j <= i; ++j) x[i] += l[k][i][j] * e[j];
      }
      rows.push_back(x);
    }
    return rows;
  }

  double LogProb(const std::vector<double>& xin) const {
    double terms[kK], best = -std::numeric_limits<double>::infinity();
    for (int k = 0; k < kK; ++k) {
      double zv[kD], quad = 0, log_det = 0;
      for (int i = 0; i < kD; ++i) {  // forward substitution L z = x - mu
        double t = static_cast<float>(xin[i]) - mu[k][i];
        for (int j = 0; j < i; ++j) t -= l[k][i][j] * zv[j];
        zv[i] = t / l[k][i][i];
        quad += zv[i] * zv[i];
        log_det += std::log(l[k][i][i]);
      }
      terms[k] = std::log(w[k]) - 0.5 * quad - log_det - 0.5 * kD * std::log(2 * M_PI);
      best = std::max(best, terms[k]);
    }
    double s = 0;
    for (double t : terms) s += std::exp(t - best);
    return best + std::log(s);
  }
};

// Test NLL of `model` minus that of the truth (an estimate of KL(truth || model)) and its SE.
std::pair<double, double> KlEstimate(const Model& model, const TrueMixture& truth,
                                     const std::vector<std::vector<double>>& test) {
  auto lp = model.LogProb(Continuous(test)).value();
  std::vector<double> diff;
  for (size_t i = 0; i < test.size(); ++i) diff.push_back(truth.LogProb(test[i]) - lp[i]);
  const double m = MeanOf(diff);
  double v = 0;
  for (double d : diff) v += (d - m) * (d - m);
  v /= diff.size() - 1;
  return {m, std::sqrt(v / diff.size())};
}

class EpochRecorder : public TrainObserver {
 public:
  void OnEpoch(const v1::EpochSummary& e) override { epochs.push_back(e); }
  std::vector<v1::EpochSummary> epochs;
};

TEST(MixtureTest, KnownTruthEmAndGradient) {
  const TrueMixture truth;
  const auto train = truth.Draw(4000, 1), valid = truth.Draw(1000, 2), test = truth.Draw(2000, 3);
  TrainOptions opts;
  opts.epochs = 60;
  opts.seed = 7;
  EpochRecorder em_epochs;
  auto em = Train(MixtureSpec(3, true, /*em=*/true), Continuous(train), Continuous(valid), opts,
                  &em_epochs);
  ASSERT_TRUE(em.ok()) << em.status();
  ASSERT_EQ(em_epochs.epochs.size(), 60u);
  for (const auto& e : em_epochs.epochs) EXPECT_TRUE(std::isfinite(e.validation_nll()));
  auto [kl_em, se_em] = KlEstimate(*em->model, truth, test);
  std::printf("EM: KL estimate %.4f +- %.4f nats\n", kl_em, se_em);
  EXPECT_GE(kl_em, -2 * se_em);
  EXPECT_LT(kl_em, 0.05);

  opts.epochs = 40;
  opts.batch_size = 100;
  opts.learning_rate = 2e-2;
  auto grad = Train(MixtureSpec(3, true, /*em=*/false), Continuous(train), Continuous(valid), opts,
                    nullptr);
  ASSERT_TRUE(grad.ok()) << grad.status();
  auto [kl_grad, se_grad] = KlEstimate(*grad->model, truth, test);
  std::printf("gradient: KL estimate %.4f +- %.4f nats\n", kl_grad, se_grad);
  EXPECT_LT(kl_grad, kl_em + 0.1);
  EXPECT_GE(kl_grad, -2 * se_grad);
}

TEST(MixtureTest, TrainEndToEndReportsFiniteValidationAndRoundTrips) {
  const auto data = Continuous(BimodalData(1200, 2, 61));
  auto split = SplitRecords(data, 0.25, 1).value();
  for (bool em : {true, false}) {
    TrainOptions opts;
    opts.epochs = 5;
    opts.learning_rate = 1e-2;
    EpochRecorder rec;
    auto r = Train(MixtureSpec(2, true, em), split.first, split.second, opts, &rec);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(rec.epochs.size(), 5u);
    for (const auto& e : rec.epochs) {
      EXPECT_TRUE(std::isfinite(e.validation_nll()) && std::isfinite(e.train_nll()));
    }
    EXPECT_LT(rec.epochs.back().validation_nll(), 3.5) << "em=" << em;  // a Gaussian: ~3.3
    auto bytes = r->model->Serialize().value();
    auto back = Model::Deserialize(bytes).value();
    EXPECT_EQ(back->LogProb(split.second).value(), r->model->LogProb(split.second).value());
  }
}

// ------------------------------------------------------------------------------------------
// Preprocessing.

v1::ModelSpec Preprocessed(v1::ModelSpec s, int levels, bool dequantize, bool logit) {
  auto* p = s.mutable_preprocessing();
  p->set_levels(levels);
  p->set_dequantize(dequantize);
  p->set_logit(logit);
  return s;
}

// Integer data on 0..levels-1 with the given probabilities, one column.
std::vector<std::vector<double>> LevelData(const std::vector<double>& probs, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::discrete_distribution<int> dist(probs.begin(), probs.end());
  std::vector<std::vector<double>> rows;
  for (int i = 0; i < n; ++i) rows.push_back({static_cast<double>(dist(rng))});
  return rows;
}

TEST(PreprocessingTest, DataSpaceDensityIntegratesToOne) {
  const int levels = 4;
  // (a) Data in the middle levels: a smooth density, uniform grid over x' in [0, levels).
  // (b) Data on every level: the density is steep near the edges, so the nodes are graded:
  //     x' = levels * sigmoid(t) for a uniform grid in t, with dx' = levels s (1 - s) dt.
  for (bool graded : {false, true}) {
    auto model = MustCreate(Preprocessed(GaussianSpec(), levels, true, true), ContinuousShape(1));
    auto& net = Net(*model);
    const auto data =
        graded ? LevelData({0.1, 0.2, 0.3, 0.4}, 2000, 3) : LevelData({0, 0.5, 0.5, 0}, 2000, 3);
    net.FitClosedForm(ToTensor(data));
    net.eval();  // scores are of x + 1/2: evaluate at x = x' - 1/2
    const int64_t n = 200000;
    torch::Tensor xp, weight;
    if (graded) {
      const double lo = -22, hi = 22, h = (hi - lo) / n;
      auto t = torch::arange(n, torch::kDouble) * h + (lo + 0.5 * h);
      auto s = torch::sigmoid(t);
      xp = levels * s;
      weight = levels * s * (1 - s) * h;
    } else {
      const double h = static_cast<double>(levels) / n;
      xp = torch::arange(n, torch::kDouble) * h + 0.5 * h;
      weight = torch::full({n}, h, torch::kDouble);
    }
    auto lp = torch::tensor(NetLogProb(net, (xp - 0.5).unsqueeze(1)), torch::kDouble);
    EXPECT_NEAR((torch::exp(lp) * weight).sum().item<double>(), 1.0, 1e-3) << "graded=" << graded;
  }
}

TEST(PreprocessingTest, LogDetEqualsAutogradJacobian) {
  auto model = MustCreate(Preprocessed(GaussianSpec(), 256, true, true), ContinuousShape(3));
  auto& net = NetAs<PreprocessedNetImpl>(*model);
  auto x =
      torch::tensor({{0.0, 17.0, 255.0}, {128.0, 3.0, 200.0}}, torch::kDouble).requires_grad_(true);
  auto t = net.Transform(x, /*noise=*/false);
  for (int64_t r = 0; r < 2; ++r) {
    // Full Jacobian of y_r wrt x_r by autograd, one output at a time.
    double expected = 0;
    for (int64_t i = 0; i < 3; ++i) {
      auto g = torch::autograd::grad({t.y[r][i]}, {x}, {}, /*retain_graph=*/true)[0];
      for (int64_t j = 0; j < 3; ++j) {
        const double v = g[r][j].item<double>();
        if (j != i) EXPECT_EQ(v, 0.0);
        if (j == i) expected += std::log(std::abs(v));
      }
      EXPECT_EQ(g[1 - r].abs().sum().item<double>(), 0.0);  // records are independent
    }
    EXPECT_NEAR(t.log_det[r].item<double>(), expected, 1e-9 * std::abs(expected)) << r;
  }
}

TEST(PreprocessingTest, SamplesLieInRange) {
  const int levels = 4;
  const auto data = LevelData({0.1, 0.2, 0.3, 0.4}, 2000, 5);
  for (bool dequantize : {true, false}) {
    auto model =
        MustCreate(Preprocessed(GaussianSpec(), levels, dequantize, true), ContinuousShape(1));
    Net(*model).FitClosedForm(ToTensor(data));
    auto s = model->Sample(5000, 3).value();
    std::vector<int> counts(levels, 0);
    for (float v : s.f32) {
      ASSERT_GE(v, 0.0f);
      ASSERT_LT(v, static_cast<float>(levels));
      if (dequantize) {
        ASSERT_EQ(v, std::floor(v));
        ++counts[static_cast<int>(v)];
      }
    }
    if (dequantize) {
      for (int k = 0; k < levels; ++k) EXPECT_GT(counts[k], 100) << k;  // every level appears
    }
  }
}

TEST(PreprocessingTest, RoundTripAndOutOfRangeScoresMinusInfinity) {
  auto spec = Preprocessed(MixtureSpec(2, true), 4, true, true);
  auto model = MustCreate(spec, ContinuousShape(1), 8);
  RunEm(Net(*model), ToTensor(LevelData({0.4, 0.1, 0.1, 0.4}, 1000, 7)), 10);
  const auto records = Continuous({{0}, {1}, {2}, {3}, {-1}, {3.6}, {-0.5}, {3.5}});
  auto lp = model->LogProb(records).value();
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(std::isfinite(lp[i])) << i;
  EXPECT_EQ(lp[4], -std::numeric_limits<double>::infinity());  // x' = -0.5
  EXPECT_EQ(lp[5], -std::numeric_limits<double>::infinity());  // x' = 4.1
  EXPECT_TRUE(std::isfinite(lp[6]) && std::isfinite(lp[7]));   // x' = 0 and 4: the closed edges
  auto back = Model::Deserialize(model->Serialize().value()).value();
  EXPECT_EQ(back->LogProb(records).value(), lp);
  EXPECT_EQ(back->spec().preprocessing().logit_alpha(), 1e-6);
}

// ------------------------------------------------------------------------------------------
// Spec checks.

void ExpectInvalid(const v1::ModelSpec& spec, const DataShape& shape, const std::string& field) {
  absl::Status st = ResolveModelSpec(spec, shape).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << field << ": " << st;
  EXPECT_NE(st.message().find(field), std::string::npos) << st;
}

TEST(SimpleSpecTest, BadHyperParametersNameTheField) {
  const DataShape cat{v1::DATA_KIND_CATEGORICAL, 4, 3};
  const DataShape cont = ContinuousShape(4);
  ExpectInvalid(CategoricalSpec(-1), cat, "model.categorical.pseudo_count");
  auto g = GaussianSpec();
  g.mutable_gaussian()->set_min_variance(-1);
  ExpectInvalid(g, cont, "model.gaussian.min_variance");
  auto m = MixtureSpec(300, false);
  ExpectInvalid(m, cont, "model.gaussian_mixture.components");
  m = MixtureSpec(-1, false);
  ExpectInvalid(m, cont, "model.gaussian_mixture.components");
  m = MixtureSpec(3, false);
  m.mutable_gaussian_mixture()->set_covariance(static_cast<v1::CovarianceType>(7));
  ExpectInvalid(m, cont, "model.gaussian_mixture.covariance");
  m = MixtureSpec(3, false);
  m.mutable_gaussian_mixture()->set_training(static_cast<v1::MixtureTraining>(9));
  ExpectInvalid(m, cont, "model.gaussian_mixture.training");
  m = MixtureSpec(3, false);
  m.mutable_gaussian_mixture()->set_min_variance(-2);
  ExpectInvalid(m, cont, "model.gaussian_mixture.min_variance");
  ExpectInvalid(Preprocessed(GaussianSpec(), 1, true, true), cont, "model.preprocessing.levels");
  ExpectInvalid(Preprocessed(GaussianSpec(), 70000, true, true), cont,
                "model.preprocessing.levels");
  for (double alpha : {0.5, -0.1, 0.7}) {
    auto p = Preprocessed(GaussianSpec(), 256, true, true);
    p.mutable_preprocessing()->set_logit_alpha(alpha);
    ExpectInvalid(p, cont, "model.preprocessing.logit_alpha");
  }
  ExpectInvalid(Preprocessed(CategoricalSpec(0), 256, true, false), cat, "model.preprocessing");
  // And good specs pass, with their defaults filled in.
  EXPECT_TRUE(ResolveModelSpec(MixtureSpec(256, true), cont).ok());
  v1::ModelSpec bare;
  bare.set_family(v1::MODEL_FAMILY_GAUSSIAN_MIXTURE);
  bare.mutable_preprocessing()->set_logit(true);
  const v1::ModelSpec d = ResolveModelSpec(bare, cont).value();
  EXPECT_EQ(d.gaussian_mixture().components(), 5);
  EXPECT_EQ(d.gaussian_mixture().covariance(), v1::COVARIANCE_TYPE_DIAGONAL);
  EXPECT_EQ(d.gaussian_mixture().training(), v1::MIXTURE_TRAINING_EM);
  EXPECT_EQ(d.gaussian_mixture().min_variance(), 1e-6);
  EXPECT_EQ(d.preprocessing().levels(), 256);
  EXPECT_EQ(d.preprocessing().logit_alpha(), 1e-6);
  EXPECT_EQ(ResolveModelSpec(GaussianSpec(), cont).value().gaussian().min_variance(), 1e-6);
  EXPECT_FALSE(ResolveModelSpec(GaussianSpec(), cont).value().has_preprocessing());
}

TEST(SimpleSpecTest, WrongKindIsFailedPrecondition) {
  const DataShape binary{v1::DATA_KIND_BINARY, 4, 2};
  const DataShape cat{v1::DATA_KIND_CATEGORICAL, 4, 3};
  const DataShape cont = ContinuousShape(4);
  for (const auto& shape : {binary, cont}) {
    absl::Status st = ResolveModelSpec(CategoricalSpec(0), shape).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
    EXPECT_NE(st.message().find("categorical"), std::string::npos) << st;
    EXPECT_EQ(Model::Create(CategoricalSpec(0), shape, 1).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
  for (const auto& shape : {binary, cat}) {
    EXPECT_EQ(ResolveModelSpec(GaussianSpec(), shape).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(ResolveModelSpec(MixtureSpec(2, true), shape).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

}  // namespace
}  // namespace logp
