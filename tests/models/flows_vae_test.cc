// MAF, RealNVP and the VAE against exact truths: log-dets against autograd Jacobians, inversion,
// normalisation by quadrature, the autoregressive property by autograd, sample moments against
// quadrature moments, the VAE's bound ordering and the normalisation of its estimator's limit,
// and known-truth KL on data from a known Gaussian.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <limits>
#include <random>

#include "models/density_net.h"
#include "models/families/flows.h"
#include "models/families/vae.h"
#include "models/model.h"
#include "models/train.h"
#include "tests/models/test_data.h"

namespace logp {
namespace {

constexpr double kPi = 3.14159265358979323846;

v1::ModelSpec Maf(int layers, int hidden_layers, int units, bool batch_norm) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_MAF);
  s.mutable_maf()->set_flow_layers(layers);
  s.mutable_maf()->set_hidden_layers(hidden_layers);
  s.mutable_maf()->set_hidden_units(units);
  s.mutable_maf()->set_batch_norm(batch_norm);
  return s;
}

v1::ModelSpec RealNvp(int layers, int hidden_layers, int units, bool batch_norm) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_REALNVP);
  s.mutable_realnvp()->set_coupling_layers(layers);
  s.mutable_realnvp()->set_hidden_layers(hidden_layers);
  s.mutable_realnvp()->set_hidden_units(units);
  s.mutable_realnvp()->set_batch_norm(batch_norm);
  return s;
}

v1::ModelSpec Vae(int latent, int units) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_VAE);
  s.mutable_vae()->set_latent_dim(latent);
  s.mutable_vae()->set_hidden_units(units);
  return s;
}

DataShape Continuous(int64_t d) { return DataShape{v1::DATA_KIND_CONTINUOUS, d, 0}; }

std::shared_ptr<DensityNet> MakeNet(const v1::ModelSpec& spec, const DataShape& shape,
                                    uint64_t seed) {
  const absl::StatusOr<v1::ModelSpec> resolved = ResolveModelSpec(spec, shape);
  EXPECT_TRUE(resolved.ok()) << resolved.status();
  torch::manual_seed(seed);
  return MakeDensityNet(resolved.value(), shape);
}

// A curved ("banana") distribution in d dimensions, so the flows have structure to learn.
torch::Tensor BananaData(int64_t n, int64_t d, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto x = torch::randn({n, d}, gen);
  for (int64_t j = 1; j < d; ++j) {
    x.select(1, j).mul_(0.5).add_(0.5 * x.select(1, j - 1).pow(2) - 0.5);
  }
  return x;
}

// A few Adam steps in train mode (batch norm updates its running statistics), then eval mode.
void TrainSteps(DensityNet& net, const torch::Tensor& data, int steps, double lr, uint64_t seed) {
  net.train();
  torch::optim::Adam opt(net.parameters(), torch::optim::AdamOptions(lr));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (int s = 0; s < steps; ++s) {
    auto idx = torch::randint(data.size(0), {64}, gen, torch::TensorOptions(torch::kLong));
    auto loss = net.Loss(data.index_select(0, idx));
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  net.eval();
}

struct FlowCase {
  std::string name;
  v1::ModelSpec spec;
};

std::vector<FlowCase> FlowCases(int64_t maf_layers = 3) {
  return {{"maf", Maf(maf_layers, 2, 16, false)},
          {"maf_bn", Maf(maf_layers, 2, 16, true)},
          {"realnvp", RealNvp(4, 2, 16, false)},
          {"realnvp_bn", RealNvp(4, 2, 16, true)}};
}

// A trained-a-little flow in eval mode, in double precision.
std::shared_ptr<FlowNet> TrainedFlow(const v1::ModelSpec& spec, int64_t d, uint64_t seed) {
  auto net = MakeNet(spec, Continuous(d), seed);
  TrainSteps(*net, BananaData(2000, d, seed + 1), 30, 1e-2, seed + 2);
  net->to(torch::kDouble);
  auto flow = std::dynamic_pointer_cast<FlowNet>(net);
  EXPECT_NE(flow, nullptr);
  return flow;
}

TEST(FlowTest, LogDetEqualsAutogradJacobian) {
  for (int64_t d : {3, 4}) {
    for (const auto& c : FlowCases()) {
      SCOPED_TRACE(c.name + " D=" + std::to_string(d));
      auto flow = TrainedFlow(c.spec, d, 5);
      auto points = BananaData(5, d, 99).to(torch::kDouble);
      for (int64_t r = 0; r < points.size(0); ++r) {
        auto x = points.slice(0, r, r + 1).clone().requires_grad_(true);
        auto out = flow->Forward(x);
        auto jac = torch::zeros({d, d}, torch::kDouble);
        for (int64_t i = 0; i < d; ++i) {
          auto g = torch::autograd::grad({out.y[0][i]}, {x}, {}, /*retain_graph=*/true)[0];
          jac[i].copy_(g[0]);
        }
        auto [sign, log_abs_det] = torch::slogdet(jac);
        EXPECT_NEAR(out.log_det.item<double>(), log_abs_det.item<double>(), 1e-4);
        // Not a trivially zero log-det: training moved the transform away from the identity.
        EXPECT_GT(std::abs(log_abs_det.item<double>()), 1e-3);
      }
    }
  }
}

TEST(FlowTest, InvertsInFloat) {
  for (const auto& c : FlowCases(5)) {
    SCOPED_TRACE(c.name);
    auto net = MakeNet(c.spec, Continuous(4), 8);
    TrainSteps(*net, BananaData(2000, 4, 9), 30, 1e-2, 10);
    auto flow = std::dynamic_pointer_cast<FlowNet>(net);
    torch::NoGradGuard no_grad;
    auto x = BananaData(500, 4, 11);
    auto u = flow->Forward(x).y;
    auto back = flow->Inverse(u);
    EXPECT_LT((back - x).abs().max().item<double>(), 1e-4);
    EXPECT_GT((u - x).abs().max().item<double>(), 1e-2);  // the transform is not the identity
    // A training batch of one record has no batch variance: batch norm uses its running
    // statistics, so the train-mode log-density equals the eval-mode one.
    net->train();
    auto one_train = net->LogProb(x.slice(0, 0, 1)).item<double>();
    net->eval();
    EXPECT_NEAR(one_train, net->LogProb(x.slice(0, 0, 1)).item<double>(), 1e-5);
  }
}

TEST(FlowTest, MafLayersAreAutoregressiveInTheirOrder) {
  const int64_t d = 4;
  auto net = MakeNet(Maf(3, 2, 16, true), Continuous(d), 21);
  TrainSteps(*net, BananaData(2000, d, 22), 30, 1e-2, 23);
  net->to(torch::kDouble);
  auto& maf = dynamic_cast<MafImpl&>(*net);
  ASSERT_EQ(maf.num_layers(), 3);
  for (int64_t l = 0; l < maf.num_layers(); ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    auto& layer = maf.layer(l);
    const auto& order = layer->order();
    if (l > 0) {
      auto prev = maf.layer(l - 1)->order();
      std::reverse(prev.begin(), prev.end());
      EXPECT_EQ(order, prev);
    }
    std::vector<int64_t> pos(d);
    for (int64_t i = 0; i < d; ++i) pos[order[i]] = i;
    auto x = BananaData(1, d, 24 + l).to(torch::kDouble).requires_grad_(true);
    auto [mu, alpha] = layer->Conditionals(x);
    auto u = layer->Forward(x).y;
    for (int64_t i = 0; i < d; ++i) {
      auto gmu = torch::autograd::grad({mu[0][i]}, {x}, {}, true)[0][0];
      auto galpha = torch::autograd::grad({alpha[0][i]}, {x}, {}, true)[0][0];
      auto gu = torch::autograd::grad({u[0][i]}, {x}, {}, true)[0][0];
      double earlier = 0;
      for (int64_t j = 0; j < d; ++j) {
        if (pos[j] >= pos[i]) {
          EXPECT_EQ(gmu[j].item<double>(), 0.0) << "mu_" << i << " vs x_" << j;
          EXPECT_EQ(galpha[j].item<double>(), 0.0) << "alpha_" << i << " vs x_" << j;
        } else {
          earlier += std::abs(gmu[j].item<double>()) + std::abs(galpha[j].item<double>());
        }
        if (pos[j] > pos[i]) EXPECT_EQ(gu[j].item<double>(), 0.0) << "u_" << i << " vs x_" << j;
      }
      // du_i/dx_i = exp(-alpha_i) > 0, and the first variable's conditionals are constants.
      EXPECT_NEAR(gu[i].item<double>(), std::exp(-alpha[0][i].item<double>()), 1e-12);
      if (pos[i] > 0) EXPECT_GT(earlier, 0.0) << "output " << i << " sees no earlier input";
    }
  }
}

struct Quadrature {
  double mass = 0;
  double mean[2] = {0, 0};
  double cov[2][2] = {{0, 0}, {0, 0}};
};

// Midpoint rule on an n x n grid over [-r, r]^2, accumulated in double.
Quadrature Integrate2D(FlowNet& flow, double r, int64_t n) {
  torch::NoGradGuard no_grad;
  const double h = 2 * r / n;
  auto g = torch::arange(n, torch::kDouble) * h + (-r + h / 2);
  auto pts = torch::stack({g.repeat_interleave(n), g.repeat({n})}, 1);
  std::vector<torch::Tensor> lps;
  for (int64_t b = 0; b < pts.size(0); b += 65536) {
    lps.push_back(flow.LogProb(pts.slice(0, b, std::min(pts.size(0), b + 65536))));
  }
  auto w = torch::exp(torch::cat(lps)) * (h * h);
  Quadrature q;
  q.mass = w.sum().item<double>();
  auto mean = (w.unsqueeze(1) * pts).sum(0) / q.mass;
  auto c = pts - mean;
  for (int i = 0; i < 2; ++i) {
    q.mean[i] = mean[i].item<double>();
    for (int j = 0; j < 2; ++j) {
      q.cov[i][j] = (w * c.select(1, i) * c.select(1, j)).sum().item<double>() / q.mass;
    }
  }
  return q;
}

TEST(FlowTest, DensityIntegratesToOneIn2DAndSamplesMatchItsMoments) {
  for (const auto& c : FlowCases()) {
    SCOPED_TRACE(c.name);
    auto flow = TrainedFlow(c.spec, 2, 31);
    const Quadrature q = Integrate2D(*flow, 10.0, 800);
    std::cout << c.name << ": 2-D mass " << q.mass << "\n";
    EXPECT_NEAR(q.mass, 1.0, 1e-3);

    // Sampling agrees with scoring: sample mean and covariance against the quadrature moments.
    const int64_t n = 20000;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(32);
    torch::Tensor s;
    {
      torch::NoGradGuard no_grad;
      s = flow->Sample(n, gen);
    }
    ASSERT_EQ(s.sizes(), (std::vector<int64_t>{n, 2}));
    auto sm = s.mean(0);
    auto sc = s - sm;
    for (int i = 0; i < 2; ++i) {
      const double se = std::sqrt(q.cov[i][i] / n);
      EXPECT_NEAR(sm[i].item<double>(), q.mean[i], 4 * se) << "mean " << i;
      for (int j = 0; j < 2; ++j) {
        auto prod = sc.select(1, i) * sc.select(1, j);
        const double cov_se = prod.std().item<double>() / std::sqrt(static_cast<double>(n));
        EXPECT_NEAR(prod.mean().item<double>(), q.cov[i][j], 4 * cov_se) << "cov " << i << j;
      }
    }
  }
}

TEST(FlowTest, MafDensityIntegratesToOneIn1D) {
  for (bool bn : {false, true}) {
    SCOPED_TRACE(bn ? "batch norm" : "no batch norm");
    auto net = MakeNet(Maf(3, 1, 16, bn), Continuous(1), 41);
    // A skewed 1-D sample: exp of a normal, shifted.
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(42);
    auto data = torch::exp(0.5 * torch::randn({2000, 1}, gen)) - 1;
    TrainSteps(*net, data, 30, 1e-2, 43);
    net->to(torch::kDouble);
    torch::NoGradGuard no_grad;
    const double r = 15, h = 1e-3;
    const int64_t n = static_cast<int64_t>(2 * r / h);
    auto g = (torch::arange(n, torch::kDouble) * h + (-r + h / 2)).unsqueeze(1);
    const double mass = (torch::exp(net->LogProb(g)) * h).sum().item<double>();
    std::cout << "1-D mass " << mass << "\n";
    EXPECT_NEAR(mass, 1.0, 1e-3);
  }
}

// ---------------------------------------------------------------------------------------------
// Known truth: a correlated 2-D Gaussian.

struct Gaussian2D {
  double m0 = 1.0, m1 = -2.0, s00 = 2.0, s01 = 1.2, s11 = 1.0;

  RecordMatrix Draw(int64_t n, uint64_t seed) const {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> z(0, 1);
    // Cholesky factor of the covariance.
    const double l00 = std::sqrt(s00), l10 = s01 / l00, l11 = std::sqrt(s11 - l10 * l10);
    RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, 2, 0).value();
    for (int64_t r = 0; r < n; ++r) {
      const double a = z(rng), b = z(rng);
      m.f32.push_back(static_cast<float>(m0 + l00 * a));
      m.f32.push_back(static_cast<float>(m1 + l10 * a + l11 * b));
      ++m.rows;
    }
    return m;
  }
  double LogDensity(double x0, double x1) const {
    const double det = s00 * s11 - s01 * s01;
    const double a = x0 - m0, b = x1 - m1;
    const double q = (s11 * a * a - 2 * s01 * a * b + s00 * b * b) / det;
    return -0.5 * q - std::log(2 * kPi) - 0.5 * std::log(det);
  }
};

TEST(FlowTest, KnownTruthGaussianKlIsSmallAndNonNegative) {
  const Gaussian2D truth;
  const RecordMatrix train = truth.Draw(4000, 1), valid = truth.Draw(1000, 2),
                     test = truth.Draw(2000, 3);
  for (const auto& c :
       {FlowCase{"maf_bn", Maf(2, 1, 32, true)}, FlowCase{"realnvp", RealNvp(4, 2, 32, false)}}) {
    SCOPED_TRACE(c.name);
    TrainOptions opts;
    opts.epochs = 20;
    opts.batch_size = 100;
    opts.learning_rate = 3e-3;
    opts.seed = 4;
    auto trained = Train(c.spec, train, valid, opts, nullptr);
    ASSERT_TRUE(trained.ok()) << trained.status();
    auto lp = trained->model->LogProb(test);
    ASSERT_TRUE(lp.ok()) << lp.status();
    // Paired differences log p_true(x) - log p_model(x): their mean estimates KL(P || P_model).
    double sum = 0, sum2 = 0;
    for (int64_t r = 0; r < test.rows; ++r) {
      const double diff = truth.LogDensity(test.At(r, 0), test.At(r, 1)) - (*lp)[r];
      sum += diff;
      sum2 += diff * diff;
    }
    const double n = static_cast<double>(test.rows);
    const double kl = sum / n;
    const double se = std::sqrt((sum2 / n - kl * kl) / (n - 1));
    std::cout << c.name << ": test NLL - true NLL = " << kl << " +- " << se << "\n";
    EXPECT_GE(kl, -2 * se);
    EXPECT_LT(kl, 0.1);

    // Serialisation keeps everything that defines the density (batch-norm running statistics).
    auto bytes = trained->model->Serialize();
    ASSERT_TRUE(bytes.ok());
    auto back = Model::Deserialize(*bytes);
    ASSERT_TRUE(back.ok()) << back.status();
    auto lp2 = (*back)->LogProb(test);
    ASSERT_TRUE(lp2.ok());
    for (int64_t r = 0; r < 10; ++r) EXPECT_DOUBLE_EQ((*lp2)[r], (*lp)[r]);
  }
}

// ---------------------------------------------------------------------------------------------
// VAE

// Binary records near one of three prototypes, each bit flipped with probability 0.1.
RecordMatrix PrototypeBinary(int64_t n, int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_BINARY, d, 2).value();
  for (int64_t r = 0; r < n; ++r) {
    const int proto = static_cast<int>(u(rng) * 3);
    for (int64_t c = 0; c < d; ++c) {
      const bool bit = proto == 0 ? c < d / 2 : proto == 1 ? c % 2 == 0 : c >= d / 3;
      m.u8.push_back(static_cast<uint8_t>(bit != (u(rng) < 0.1)));
    }
    ++m.rows;
  }
  return m;
}

Scores MustScore(const Model& model, const RecordMatrix& x, int k, uint64_t seed) {
  auto s = model.Score(x, ScoreOptions{k, seed});
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

// Mean and standard error of a - b over records.
std::pair<double, double> PairedMean(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0, sum2 = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sum += a[i] - b[i];
    sum2 += (a[i] - b[i]) * (a[i] - b[i]);
  }
  const double n = static_cast<double>(a.size());
  const double mean = sum / n;
  return {mean, std::sqrt(std::max(0.0, sum2 / n - mean * mean) / (n - 1))};
}

void CheckBoundChain(const Model& model, const RecordMatrix& records) {
  const Scores elbo = MustScore(model, records, 0, 100);
  const Scores iw1 = MustScore(model, records, 1, 101);
  const Scores iw5 = MustScore(model, records, 5, 102);
  const Scores iw50 = MustScore(model, records, 50, 103);
  EXPECT_EQ(elbo.kind, v1::SCORE_KIND_LOWER_BOUND);
  EXPECT_EQ(elbo.importance_samples, 0);
  EXPECT_EQ(elbo.standard_error.size(), static_cast<size_t>(records.rows));
  for (const Scores* s : {&iw1, &iw5, &iw50}) {
    EXPECT_EQ(s->kind, v1::SCORE_KIND_ESTIMATE);
    ASSERT_EQ(s->standard_error.size(), static_cast<size_t>(records.rows));
    for (double se : s->standard_error) EXPECT_GT(se, 0.0);
  }
  EXPECT_EQ(iw1.importance_samples, 1);
  EXPECT_EQ(iw5.importance_samples, 5);
  EXPECT_EQ(iw50.importance_samples, 50);
  // ELBO (analytic KL) and IWAE-1 have the same expectation.
  auto [d0, se0] = PairedMean(iw1.log_prob, elbo.log_prob);
  std::cout << "IWAE-1 - ELBO = " << d0 << " +- " << se0;
  EXPECT_LT(std::abs(d0), 3 * se0 + 1e-9);
  // IWAE-k increases with k on average (and the ELBO is below IWAE-5 and IWAE-50).
  auto [d1, se1] = PairedMean(iw5.log_prob, iw1.log_prob);
  auto [d2, se2] = PairedMean(iw50.log_prob, iw5.log_prob);
  auto [d3, se3] = PairedMean(iw5.log_prob, elbo.log_prob);
  std::cout << "; IWAE-5 - IWAE-1 = " << d1 << " +- " << se1 << "; IWAE-50 - IWAE-5 = " << d2
            << " +- " << se2 << "\n";
  EXPECT_GT(d1, 0.0);
  EXPECT_GT(d2, 0.0);
  EXPECT_GT(d3, 0.0);
}

TEST(VaeTest, ElboBelowIwaeWhichIncreasesWithK) {
  const RecordMatrix data = PrototypeBinary(2500, 12, 1);
  const RecordMatrix records = PrototypeBinary(500, 12, 2);
  {
    SCOPED_TRACE("untrained");
    auto model = Model::Create(Vae(4, 32), DataShape{v1::DATA_KIND_BINARY, 12, 2}, 3);
    ASSERT_TRUE(model.ok()) << model.status();
    EXPECT_EQ((*model)->score_kind(), v1::SCORE_KIND_LOWER_BOUND);
    CheckBoundChain(**model, records);
  }
  {
    SCOPED_TRACE("trained");
    auto split = SplitRecords(data, 0.2, 4).value();
    TrainOptions opts;
    opts.epochs = 5;
    opts.batch_size = 50;
    opts.learning_rate = 3e-3;
    opts.seed = 5;
    auto trained = Train(Vae(4, 32), split.first, split.second, opts, nullptr);
    ASSERT_TRUE(trained.ok()) << trained.status();
    CheckBoundChain(*trained->model, records);
  }
}

void CheckEstimatorNormalises(const Model& model) {
  const RecordMatrix all = AllBinaryInputs(6);
  // IWAE-k tends to log p(x) as k grows, so its exponentials sum to about 1 over all inputs.
  const Scores iw = MustScore(model, all, 5000, 7);
  double iw_total = 0;
  for (double v : iw.log_prob) iw_total += std::exp(v);
  // The ELBO is a lower bound on log p(x).
  const Scores elbo = MustScore(model, all, 0, 1000);
  double elbo_total = 0;
  for (double v : elbo.log_prob) elbo_total += std::exp(v);
  std::cout << "sum exp(IWAE-5000) = " << iw_total << ", sum exp(ELBO) = " << elbo_total << "\n";
  EXPECT_NEAR(iw_total, 1.0, 0.05);
  EXPECT_LE(elbo_total, 1.0 + 1e-3);
}

// A VAE (latent 2, 16 units) trained for 10 epochs on 2,000 structured D = 6 binary records.
absl::StatusOr<TrainResult> TrainedSixDimVae() {
  const RecordMatrix data = PrototypeBinary(2000, 6, 9);
  auto split = SplitRecords(data, 0.2, 10).value();
  TrainOptions opts;
  opts.epochs = 10;
  opts.batch_size = 50;
  opts.learning_rate = 1e-2;
  opts.seed = 11;
  return Train(Vae(2, 16), split.first, split.second, opts, nullptr);
}

TEST(VaeTest, ImportanceEstimateNormalisesAndElboUnderCounts) {
  const DataShape shape{v1::DATA_KIND_BINARY, 6, 2};
  {
    SCOPED_TRACE("untrained");
    auto model = Model::Create(Vae(2, 16), shape, 8);
    ASSERT_TRUE(model.ok()) << model.status();
    CheckEstimatorNormalises(**model);
  }
  {
    SCOPED_TRACE("trained");
    auto trained = TrainedSixDimVae();
    ASSERT_TRUE(trained.ok()) << trained.status();
    CheckEstimatorNormalises(*trained->model);

    // Sampling agrees with scoring: frequencies of 20000 ancestral samples against
    // exp(IWAE-5000) (normalised) by a chi-square statistic over the 64 cells (63 dof; the bound
    // is mean + 5 sd).
    const int64_t n = 20000;
    auto samples = trained->model->Sample(n, 12);
    ASSERT_TRUE(samples.ok()) << samples.status();
    std::vector<double> counts(64, 0.0);
    for (int64_t r = 0; r < n; ++r) {
      int cell = 0;
      for (int64_t c = 0; c < 6; ++c) cell |= (samples->u8[r * 6 + c] ? 1 : 0) << c;
      counts[cell] += 1;
    }
    const Scores iw = MustScore(*trained->model, AllBinaryInputs(6), 5000, 13);
    double total = 0;
    for (double v : iw.log_prob) total += std::exp(v);
    double chi2 = 0;
    for (int cell = 0; cell < 64; ++cell) {
      const double expected = n * std::exp(iw.log_prob[cell]) / total;
      chi2 += (counts[cell] - expected) * (counts[cell] - expected) / expected;
    }
    std::cout << "VAE samples vs IWAE-5000: chi2 = " << chi2 << " (63 dof)\n";
    EXPECT_LT(chi2, 63 + 5 * std::sqrt(2.0 * 63));
  }
}

// A LOWER_BOUND score is a bound on every record, not only on average: over all 64 records of a
// trained D = 6 model, the exponentials sum to at most 1, and each record's value lies below its
// IWAE-5000 estimate (itself below log p(x) in expectation) within 4 combined standard errors.
// A one-draw ELBO failed both (sums 1.06-1.46; most records above their IWAE value).
TEST(VaeTest, LowerBoundIsABoundOnEveryRecord) {
  auto trained = TrainedSixDimVae();
  ASSERT_TRUE(trained.ok()) << trained.status();
  const Model& model = *trained->model;
  const RecordMatrix all = AllBinaryInputs(6);
  const Scores iw = MustScore(model, all, 5000, 77);
  ASSERT_EQ(iw.standard_error.size(), 64u);
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE(seed);
    const Scores lb = MustScore(model, all, 0, seed);
    EXPECT_EQ(lb.kind, v1::SCORE_KIND_LOWER_BOUND);
    double total = 0;
    for (double v : lb.log_prob) total += std::exp(v);
    std::cout << "seed " << seed << ": sum exp(LOWER_BOUND) = " << total << "\n";
    EXPECT_LE(total, 1.0);
    ASSERT_EQ(lb.standard_error.size(), 64u);
    int above = 0;
    for (int64_t r = 0; r < 64; ++r) {
      const double se = std::hypot(lb.standard_error[r], iw.standard_error[r]);
      EXPECT_GT(lb.standard_error[r], 0.0);
      if (lb.log_prob[r] > iw.log_prob[r] + 4 * se) ++above;
    }
    EXPECT_EQ(above, 0) << "records whose LOWER_BOUND exceeds IWAE-5000 by > 4 SE";
  }
}

// Every continuous family scores every finite record finite or -inf, never NaN or +inf, also far
// outside the training data (mean (1, -2, 0.5), scales 1-2) and at the ends of the float range.
TEST(ContinuousOutlierTest, FarOutliersScoreFiniteOrMinusInfinity) {
  RecordMatrix data = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, 3, 0).value();
  std::mt19937_64 rng(3);
  std::normal_distribution<float> g(0, 1);
  const float mean[3] = {1, -2, 0.5}, scale[3] = {1, 2, 1.5};
  for (int r = 0; r < 1500; ++r, ++data.rows) {
    for (int c = 0; c < 3; ++c) data.f32.push_back(mean[c] + scale[c] * g(rng));
  }
  const float big = 3.4e38f;
  const std::vector<std::vector<float>> outliers = {
      {100, 100, 100},    {1e3, 1e3, 1e3}, {1e10, 1e10, 1e10}, {-100, -100, -100}, {big, big, big},
      {-big, -big, -big}, {big, -big, 0},  {0, 0, 1e20},       {1, -2, 0.5}};
  RecordMatrix records = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, 3, 0).value();
  for (const auto& o : outliers) {
    records.f32.insert(records.f32.end(), o.begin(), o.end());
    ++records.rows;
  }
  v1::ModelSpec made_gauss, made_mog, gauss, gmm;
  made_gauss.set_family(v1::MODEL_FAMILY_MADE);
  made_gauss.mutable_made()->set_hidden_units(32);
  made_mog = made_gauss;
  made_mog.mutable_made()->set_conditional(v1::CONDITIONAL_TYPE_MIXTURE);
  gauss.set_family(v1::MODEL_FAMILY_GAUSSIAN);
  gmm.set_family(v1::MODEL_FAMILY_GAUSSIAN_MIXTURE);
  const std::vector<std::pair<std::string, v1::ModelSpec>> specs = {
      {"maf", Maf(3, 1, 32, false)},
      {"maf_bn", Maf(3, 1, 32, true)},
      {"realnvp", RealNvp(4, 1, 32, false)},
      {"realnvp_bn", RealNvp(4, 1, 32, true)},
      {"made_gaussian", made_gauss},
      {"made_mixture", made_mog},
      {"vae", Vae(2, 16)},
      {"gaussian", gauss},
      {"gmm", gmm}};
  auto split = SplitRecords(data, 0.2, 4).value();
  for (const auto& [name, spec] : specs) {
    SCOPED_TRACE(name);
    TrainOptions opts;
    opts.epochs = 3;
    opts.batch_size = 50;
    opts.learning_rate = 3e-3;
    opts.seed = 5;
    auto trained = Train(spec, split.first, split.second, opts, nullptr);
    ASSERT_TRUE(trained.ok()) << trained.status();
    for (int k : {-1, 0, 10}) {
      const Scores s = MustScore(*trained->model, records, k, 6);
      ASSERT_EQ(s.log_prob.size(), outliers.size());
      std::cout << name << " k=" << k << ":";
      for (size_t r = 0; r < outliers.size(); ++r) {
        const double v = s.log_prob[r];
        std::cout << " " << v;
        EXPECT_FALSE(std::isnan(v)) << "record " << r;
        EXPECT_NE(v, std::numeric_limits<double>::infinity()) << "record " << r;
      }
      std::cout << "\n";
      EXPECT_TRUE(std::isfinite(s.log_prob.back())) << "the data's mean";
      // [100, 100, 100] is finite for most of these models, but whether a 3-epoch flow's u
      // overflows float32 there depends on its trajectory: with OpenBLAS's AVX-512 kernels the
      // batch-normed MAF gives -inf, with its Haswell ones a finite value. Either way it must
      // rank below the data's mean.
      EXPECT_LT(s.log_prob[0], s.log_prob.back()) << "[100, 100, 100]";
      if (name != "maf_bn") EXPECT_TRUE(std::isfinite(s.log_prob[0])) << "[100, 100, 100]";
    }
  }
}

// The score kind a model reports (a static property of family and spec) is the kind its default
// scores carry.
TEST(VaeTest, ReportedScoreKindIsTheKindOfItsDefaultScores) {
  const DataShape shape{v1::DATA_KIND_BINARY, 6, 2};
  const RecordMatrix records = AllBinaryInputs(6);
  for (int k : {0, 5}) {
    v1::ModelSpec spec = Vae(2, 8);
    spec.mutable_vae()->set_importance_samples(k);
    auto model = Model::Create(spec, shape, 1);
    ASSERT_TRUE(model.ok()) << model.status();
    const Scores s = MustScore(**model, records, -1, 2);
    EXPECT_EQ((*model)->score_kind(), s.kind) << "k = " << k;
    EXPECT_EQ(s.kind, k == 0 ? v1::SCORE_KIND_LOWER_BOUND : v1::SCORE_KIND_ESTIMATE);
  }
  auto maf = Model::Create(Maf(2, 1, 8, false), Continuous(3), 1);
  ASSERT_TRUE(maf.ok());
  EXPECT_EQ((*maf)->score_kind(), v1::SCORE_KIND_EXACT);
}

TEST(VaeTest, EvalLogProbIsReproducibleAndSamplesAreDeterministic) {
  for (auto kind : {v1::DATA_KIND_BINARY, v1::DATA_KIND_CONTINUOUS}) {
    const DataShape shape{kind, 5, kind == v1::DATA_KIND_BINARY ? 2 : 0};
    auto model = Model::Create(Vae(3, 8), shape, 12);
    ASSERT_TRUE(model.ok()) << model.status();
    auto a = (*model)->Sample(50, 13), b = (*model)->Sample(50, 13);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->u8, b->u8);
    EXPECT_EQ(a->f32, b->f32);
    auto lp1 = (*model)->LogProb(*a), lp2 = (*model)->LogProb(*a);
    ASSERT_TRUE(lp1.ok() && lp2.ok());
    EXPECT_EQ(*lp1, *lp2);
    if (kind == v1::DATA_KIND_BINARY) {
      for (uint8_t v : a->u8) EXPECT_LE(v, 1);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Spec checks

void ExpectInvalid(const v1::ModelSpec& spec, const DataShape& shape, const std::string& field) {
  auto st = ResolveModelSpec(spec, shape).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << field << ": " << st;
  EXPECT_NE(std::string(st.message()).find(field), std::string::npos) << st;
}

TEST(FlowVaeSpecTest, BadFieldsAreNamedAndKindsRefused) {
  const DataShape c2 = Continuous(2), bin{v1::DATA_KIND_BINARY, 4, 2};
  EXPECT_TRUE(ResolveModelSpec(Maf(5, 1, 100, true), c2).ok());
  EXPECT_TRUE(ResolveModelSpec(RealNvp(6, 2, 100, false), c2).ok());
  EXPECT_TRUE(ResolveModelSpec(Vae(32, 500), bin).ok());
  EXPECT_TRUE(ResolveModelSpec(Vae(32, 500), c2).ok());

  ExpectInvalid(Maf(33, 1, 10, false), c2, "model.maf.flow_layers");
  ExpectInvalid(Maf(-1, 1, 10, false), c2, "model.maf.flow_layers");
  ExpectInvalid(Maf(2, 9, 10, false), c2, "model.maf.hidden_layers");
  ExpectInvalid(Maf(2, 1, 8193, false), c2, "model.maf.hidden_units");
  ExpectInvalid(RealNvp(1, 1, 10, false), c2, "model.realnvp.coupling_layers");
  ExpectInvalid(RealNvp(33, 1, 10, false), c2, "model.realnvp.coupling_layers");
  ExpectInvalid(RealNvp(2, -2, 10, false), c2, "model.realnvp.hidden_layers");
  ExpectInvalid(RealNvp(2, 1, -5, false), c2, "model.realnvp.hidden_units");
  ExpectInvalid(RealNvp(2, 1, 10, false), Continuous(1), "model.realnvp needs dim >= 2");
  ExpectInvalid(Vae(1025, 10), bin, "model.vae.latent_dim");
  ExpectInvalid(Vae(2, 9000), bin, "model.vae.hidden_units");
  v1::ModelSpec v = Vae(2, 10);
  v.mutable_vae()->set_hidden_layers(9);
  ExpectInvalid(v, bin, "model.vae.hidden_layers");
  v = Vae(2, 10);
  v.mutable_vae()->set_importance_samples(-1);
  ExpectInvalid(v, bin, "model.vae.importance_samples");
  v.mutable_vae()->set_importance_samples(10001);
  ExpectInvalid(v, bin, "model.vae.importance_samples");
  v = Vae(2, 10);
  v.mutable_regularization()->set_dropout(1.5);
  ExpectInvalid(v, bin, "model.regularization.dropout");

  // Defaults: MAF 5 x (1 x 100), RealNVP 6 x (2 x 100), VAE latent 32, 1 x 500, k = 0.
  v1::ModelSpec empty_maf, empty_nvp, empty_vae;
  empty_maf.set_family(v1::MODEL_FAMILY_MAF);
  empty_nvp.set_family(v1::MODEL_FAMILY_REALNVP);
  empty_vae.set_family(v1::MODEL_FAMILY_VAE);
  const auto m = ResolveModelSpec(empty_maf, c2).value().maf();
  EXPECT_EQ(m.flow_layers(), 5);
  EXPECT_EQ(m.hidden_layers(), 1);
  EXPECT_EQ(m.hidden_units(), 100);
  const auto r = ResolveModelSpec(empty_nvp, c2).value().realnvp();
  EXPECT_EQ(r.coupling_layers(), 6);
  EXPECT_EQ(r.hidden_layers(), 2);
  EXPECT_EQ(r.hidden_units(), 100);
  const auto va = ResolveModelSpec(empty_vae, bin).value().vae();
  EXPECT_EQ(va.latent_dim(), 32);
  EXPECT_EQ(va.hidden_layers(), 1);
  EXPECT_EQ(va.hidden_units(), 500);
  EXPECT_EQ(va.importance_samples(), 0);

  EXPECT_EQ(ResolveModelSpec(Maf(2, 1, 10, false), bin).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ResolveModelSpec(RealNvp(2, 1, 10, false), bin).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      ResolveModelSpec(Vae(2, 10), DataShape{v1::DATA_KIND_CATEGORICAL, 4, 3}).status().code(),
      absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace logp
