// Autoregressive families (FVSBN, NADE, MADE with masks, direct connections, categorical and
// continuous conditionals) against exact truths: normalisation by enumeration and quadrature,
// the autoregressive property by autograd, the mask ensemble as a log-mean-exp, sampling
// against scoring, and a known-truth KL estimate on data from a random FVSBN.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <iostream>
#include <random>
#include <string>

#include "models/density_net.h"
#include "models/families/fvsbn.h"
#include "models/families/made.h"
#include "models/families/nade.h"
#include "models/model.h"
#include "models/stats.h"
#include "models/train.h"
#include "tests/models/test_data.h"

namespace logp {
namespace {

// ---------------------------------------------------------------------------------------------
// Data.

RecordMatrix RandomCategorical(int64_t n, int64_t d, int32_t k, uint64_t seed, double p_copy) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CATEGORICAL, d, k).value();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < d; ++c) {
      const bool copy = c > 0 && u(rng) < p_copy;
      // Skewed marginal: category 0 is the most frequent.
      const double v = u(rng);
      const uint8_t fresh = static_cast<uint8_t>(std::min<double>(k - 1, std::floor(k * v * v)));
      m.u8.push_back(copy ? m.u8.back() : fresh);
    }
    ++m.rows;
  }
  return m;
}

// A bimodal 1-D variable and, for d = 2, a second one depending on it non-linearly.
RecordMatrix RandomContinuous(int64_t n, int64_t d, uint64_t seed) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, d, 0).value();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0, 1);
  std::uniform_real_distribution<double> u(0, 1);
  for (int64_t r = 0; r < n; ++r) {
    const double x1 = u(rng) < 0.4 ? -2 + 0.5 * z(rng) : 1.5 + 0.7 * z(rng);
    m.f32.push_back(static_cast<float>(x1));
    if (d == 2) m.f32.push_back(static_cast<float>(0.8 * x1 - 0.2 * x1 * x1 + 0.5 * z(rng)));
    ++m.rows;
  }
  return m;
}

double TotalProbability(const Model& model) {
  const DataShape& s = model.shape();
  auto lp = model.LogProb(AllInputs(s.kind, s.dim, s.num_categories));
  EXPECT_TRUE(lp.ok()) << lp.status();
  double total = 0;
  for (double v : *lp) total += std::exp(v);
  return total;
}

// ---------------------------------------------------------------------------------------------
// Specs.

v1::ModelSpec Fvsbn(bool random_order, uint64_t seed = 5) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_FVSBN);
  s.mutable_fvsbn()->set_order(random_order ? v1::VARIABLE_ORDER_RANDOM
                                            : v1::VARIABLE_ORDER_NATURAL);
  s.mutable_fvsbn()->set_order_seed(seed);
  return s;
}

v1::ModelSpec Nade(int units, bool random_order, uint64_t seed = 5) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_NADE);
  s.mutable_nade()->set_hidden_units(units);
  s.mutable_nade()->set_order(random_order ? v1::VARIABLE_ORDER_RANDOM
                                           : v1::VARIABLE_ORDER_NATURAL);
  s.mutable_nade()->set_order_seed(seed);
  return s;
}

v1::ModelSpec Made(int layers, int units, int masks = 1, bool direct = false,
                   bool random_order = true, uint64_t seed = 7) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_MADE);
  auto* m = s.mutable_made();
  m->set_hidden_layers(layers);
  m->set_hidden_units(units);
  m->set_num_masks(masks);
  m->set_direct_connections(direct);
  m->set_order(random_order ? v1::VARIABLE_ORDER_RANDOM : v1::VARIABLE_ORDER_NATURAL);
  m->set_order_seed(seed);
  return s;
}

v1::ModelSpec MadeContinuous(v1::ConditionalType conditional, int masks = 1) {
  v1::ModelSpec s = Made(1, 16, masks, false, false);
  s.mutable_made()->set_conditional(conditional);
  s.mutable_made()->set_mixture_components(3);
  return s;
}

TrainResult MustTrain(const v1::ModelSpec& spec, const RecordMatrix& data, int epochs = 5,
                      double learning_rate = 1e-2) {
  auto split = SplitRecords(data, 0.2, 3).value();
  TrainOptions opts;
  opts.epochs = epochs;
  opts.batch_size = 32;
  opts.learning_rate = learning_rate;
  opts.seed = 11;
  auto r = Train(spec, split.first, split.second, opts, nullptr);
  EXPECT_TRUE(r.ok()) << r.status();
  return std::move(r).value();
}

template <typename Net>
Net* NetAs(const Model& model) {
  auto* net = dynamic_cast<Net*>(&NetOf(model));
  EXPECT_NE(net, nullptr);
  return net;
}

std::vector<int64_t> Positions(const std::vector<int64_t>& order) {
  std::vector<int64_t> position(order.size());
  for (size_t i = 0; i < order.size(); ++i) position[order[i]] = static_cast<int64_t>(i);
  return position;
}

// ---------------------------------------------------------------------------------------------
// Normalisation by enumeration.

TEST(NormalisationTest, BinaryFamiliesSumToOneBeforeAndAfterTraining) {
  const std::vector<std::pair<std::string, v1::ModelSpec>> specs = {
      {"fvsbn", Fvsbn(true)},
      {"nade", Nade(16, true)},
      {"made 1 mask", Made(1, 24, 1)},
      {"made 3 masks", Made(2, 24, 3)},
      {"made direct", Made(1, 24, 1, true)},
  };
  const RecordMatrix data = RandomBinary(300, 10, 6, 0.7);
  for (const auto& [name, spec] : specs) {
    SCOPED_TRACE(name);
    auto untrained = Model::Create(spec, {v1::DATA_KIND_BINARY, 10, 2}, 5).value();
    EXPECT_NEAR(TotalProbability(*untrained), 1.0, 1e-5);
    auto trained = MustTrain(spec, data);
    EXPECT_NEAR(TotalProbability(*trained.model), 1.0, 1e-5);
  }
}

TEST(NormalisationTest, CategoricalMadeSumsToOneBeforeAndAfterTraining) {
  const RecordMatrix data = RandomCategorical(400, 5, 3, 8, 0.6);
  for (const auto& spec : {Made(1, 24, 1), Made(2, 24, 3, true)}) {
    SCOPED_TRACE(spec.ShortDebugString());
    auto untrained = Model::Create(spec, {v1::DATA_KIND_CATEGORICAL, 5, 3}, 5).value();
    EXPECT_NEAR(TotalProbability(*untrained), 1.0, 1e-5);
    auto trained = MustTrain(spec, data);
    EXPECT_NEAR(TotalProbability(*trained.model), 1.0, 1e-5);
  }
}

// ---------------------------------------------------------------------------------------------
// Normalisation by quadrature (continuous MADE).

// Midpoint rule over [-range, range]^d with `cells` cells per axis; d in {1, 2}.
struct Quadrature {
  double mass = 0, mean = 0, variance = 0, fourth = 0;  // moments of the first variable
};

Quadrature Integrate(const Model& model, double range, int64_t cells) {
  const int64_t d = model.shape().dim;
  const double h = 2 * range / cells;
  RecordMatrix grid = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, d, 0).value();
  std::vector<double> first;
  for (int64_t i = 0; i < cells; ++i) {
    const double a = -range + (i + 0.5) * h;
    for (int64_t j = 0; j < (d == 2 ? cells : 1); ++j) {
      grid.f32.push_back(static_cast<float>(a));
      if (d == 2) grid.f32.push_back(static_cast<float>(-range + (j + 0.5) * h));
      first.push_back(grid.f32[grid.f32.size() - d]);
      ++grid.rows;
    }
  }
  auto lp = model.LogProb(grid);
  EXPECT_TRUE(lp.ok()) << lp.status();
  const double cell = d == 2 ? h * h : h;
  Quadrature q;
  double m1 = 0, m2 = 0;
  for (size_t r = 0; r < lp->size(); ++r) {
    const double w = std::exp((*lp)[r]) * cell;
    q.mass += w;
    m1 += w * first[r];
  }
  q.mean = m1 / q.mass;
  double m4 = 0;
  for (size_t r = 0; r < lp->size(); ++r) {
    const double w = std::exp((*lp)[r]) * cell, c = first[r] - q.mean;
    m2 += w * c * c;
    m4 += w * c * c * c * c;
  }
  q.variance = m2 / q.mass;
  q.fourth = m4 / q.mass;
  return q;
}

TEST(NormalisationTest, ContinuousMadeIntegratesToOneIn1DAnd2D) {
  for (auto conditional : {v1::CONDITIONAL_TYPE_GAUSSIAN, v1::CONDITIONAL_TYPE_MIXTURE}) {
    for (int64_t d : {1, 2}) {
      SCOPED_TRACE(testing::Message() << "conditional=" << conditional << " d=" << d);
      const v1::ModelSpec spec = MadeContinuous(conditional, d == 2 ? 2 : 1);
      const int64_t cells = d == 1 ? 20000 : 500;
      auto untrained = Model::Create(spec, {v1::DATA_KIND_CONTINUOUS, d, 0}, 3).value();
      EXPECT_NEAR(Integrate(*untrained, 12, cells).mass, 1.0, 1e-3);
      auto trained = MustTrain(spec, RandomContinuous(1000, d, 21), 3);
      EXPECT_NEAR(Integrate(*trained.model, 12, cells).mass, 1.0, 1e-3);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The autoregressive property by autograd.

// `outputs` [B, D, P] computed from `inputs` [B, D * units]: the gradient of every output of
// variable i wrt the units of variable j is exactly 0 unless j comes before i, and non-zero
// for more than D (i, j) pairs.
void ExpectAutoregressive(const torch::Tensor& outputs, const torch::Tensor& inputs, int64_t units,
                          const std::vector<int64_t>& position) {
  const int64_t d = outputs.size(1), p = outputs.size(2);
  int64_t nonzero_allowed = 0;
  for (int64_t i = 0; i < d; ++i) {
    for (int64_t k = 0; k < p; ++k) {
      auto g = torch::autograd::grad({outputs.select(1, i).select(1, k).sum()}, {inputs}, {},
                                     /*retain_graph=*/true, false, /*allow_unused=*/true)[0];
      if (!g.defined()) g = torch::zeros_like(inputs);
      for (int64_t j = 0; j < d; ++j) {
        const double mag = g.slice(1, j * units, (j + 1) * units).abs().sum().item<double>();
        if (position[j] >= position[i]) {
          EXPECT_EQ(mag, 0.0) << "output " << i << "/" << k << " depends on input " << j;
        } else if (mag > 0) {
          ++nonzero_allowed;
        }
      }
    }
  }
  EXPECT_GT(nonzero_allowed, d);
}

TEST(AutoregressiveTest, FvsbnAndNadeLogitsDependOnlyOnEarlierInputs) {
  const int64_t d = 9;
  torch::manual_seed(0);
  auto x = torch::rand({4, d}).requires_grad_(true);
  auto fvsbn_model = Model::Create(Fvsbn(true, 3), {v1::DATA_KIND_BINARY, d, 2}, 3).value();
  auto* fvsbn = NetAs<FvsbnImpl>(*fvsbn_model);
  ASSERT_NE(fvsbn->order(), VariableOrder(v1::VARIABLE_ORDER_NATURAL, 0, d));
  ExpectAutoregressive(fvsbn->Logits(x).unsqueeze(2), x, 1, Positions(fvsbn->order()));
  auto nade_model = Model::Create(Nade(16, true, 4), {v1::DATA_KIND_BINARY, d, 2}, 3).value();
  auto* nade = NetAs<NadeImpl>(*nade_model);
  ASSERT_NE(nade->order(), VariableOrder(v1::VARIABLE_ORDER_NATURAL, 0, d));
  ExpectAutoregressive(nade->Logits(x).unsqueeze(2), x, 1, Positions(nade->order()));
}

TEST(AutoregressiveTest, MadeWithDirectConnectionsEveryMask) {
  const int64_t d = 9;
  auto model = Model::Create(Made(2, 32, 3, true), {v1::DATA_KIND_BINARY, d, 2}, 3).value();
  auto* made = NetAs<MadeImpl>(*model);
  torch::manual_seed(1);
  auto x = torch::rand({4, d}).requires_grad_(true);
  for (int64_t m = 0; m < 3; ++m) {
    SCOPED_TRACE(testing::Message() << "mask " << m);
    ExpectAutoregressive(made->Forward(made->Encode(x), m), x, 1, Positions(made->order(m)));
  }
  EXPECT_NE(made->order(1), made->order(2));
}

TEST(AutoregressiveTest, MadeCategoricalLogitsWrtOneHotInputs) {
  const int64_t d = 6, k = 4;
  auto model =
      Model::Create(Made(2, 32, 1, true), {v1::DATA_KIND_CATEGORICAL, d, static_cast<int>(k)}, 3)
          .value();
  auto* made = NetAs<MadeImpl>(*model);
  ASSERT_EQ(made->params_per_var(), k);
  auto x = torch::tensor({0, 1, 2, 3, 1, 0, 3, 3, 2, 1, 0, 2}, torch::kFloat).reshape({2, d});
  auto onehot = made->Encode(x).detach().requires_grad_(true);
  ASSERT_EQ(onehot.size(1), d * k);
  ExpectAutoregressive(made->Forward(onehot, 0), onehot, k, Positions(made->order()));
}

TEST(AutoregressiveTest, MadeContinuousMeansAndLogStds) {
  const int64_t d = 7;
  for (auto conditional : {v1::CONDITIONAL_TYPE_GAUSSIAN, v1::CONDITIONAL_TYPE_MIXTURE}) {
    v1::ModelSpec spec = MadeContinuous(conditional);
    spec.mutable_made()->set_order(v1::VARIABLE_ORDER_RANDOM);
    auto model = Model::Create(spec, {v1::DATA_KIND_CONTINUOUS, d, 0}, 3).value();
    auto* made = NetAs<MadeImpl>(*model);
    ASSERT_EQ(made->params_per_var(), conditional == v1::CONDITIONAL_TYPE_MIXTURE ? 9 : 2);
    torch::manual_seed(2);
    auto x = torch::randn({4, d}).requires_grad_(true);
    ExpectAutoregressive(made->Forward(made->Encode(x), 0), x, 1, Positions(made->order()));
  }
}

// ---------------------------------------------------------------------------------------------
// The mask ensemble is log((1/M) sum_m p_m), not the mean of log p_m.

TEST(EnsembleTest, LogProbIsLogMeanExpOverMasks) {
  const int64_t d = 8;
  auto trained = MustTrain(Made(1, 16, 3), RandomBinary(400, d, 17, 0.7), 3);
  auto* made = NetAs<MadeImpl>(*trained.model);
  ASSERT_EQ(made->num_masks(), 3);
  const RecordMatrix all = AllInputs(v1::DATA_KIND_BINARY, d, 2);
  auto ensemble = trained.model->LogProb(all).value();
  torch::NoGradGuard no_grad;
  auto x = RecordsToTensor(all);
  std::vector<torch::Tensor> per_mask;
  for (int64_t m = 0; m < 3; ++m)
    per_mask.push_back(made->LogProbWithMask(x, m).to(torch::kDouble));
  double max_jensen_gap = 0;
  for (int64_t r = 0; r < all.rows; ++r) {
    double p = 0, mean_log = 0;
    for (const auto& lp : per_mask) {
      p += std::exp(lp[r].item<double>()) / 3;
      mean_log += lp[r].item<double>() / 3;
    }
    ASSERT_NEAR(ensemble[r], std::log(p), 1e-5) << "record " << r;
    max_jensen_gap = std::max(max_jensen_gap, ensemble[r] - mean_log);
  }
  // The masks disagree, so the test separates log-mean-exp from the mean of log p.
  EXPECT_GT(max_jensen_gap, 1e-3);
}

TEST(EnsembleTest, BeforeStepTrainsMaskStepModuloM) {
  auto model = Model::Create(Made(1, 16, 3), {v1::DATA_KIND_BINARY, 8, 2}, 2).value();
  auto* made = NetAs<MadeImpl>(*model);
  auto x = RecordsToTensor(RandomBinary(50, 8, 3, 0.5));
  torch::NoGradGuard no_grad;
  made->eval();
  std::vector<double> losses;
  for (int64_t step : {0, 1, 2, 3, 5}) {
    made->BeforeStep(step);
    const double loss = made->Loss(x).item<double>();
    EXPECT_NEAR(loss, -made->LogProbWithMask(x, step % 3).mean().item<double>(), 1e-6);
    losses.push_back(loss);
  }
  EXPECT_NE(losses[0], losses[1]);
  EXPECT_NE(losses[1], losses[2]);
  EXPECT_EQ(losses[0], losses[3]);  // step 3 is mask 0 again
  EXPECT_EQ(losses[2], losses[4]);  // step 5 is mask 2
}

// ---------------------------------------------------------------------------------------------
// Sampling agrees with scoring.

double ChiSquare(const Model& model, int64_t n, uint64_t seed) {
  const DataShape& s = model.shape();
  auto samples = model.Sample(n, seed).value();
  const RecordMatrix all = AllInputs(s.kind, s.dim, s.num_categories);
  std::vector<double> counts(all.rows, 0);
  for (int64_t r = 0; r < n; ++r) {
    int64_t idx = 0, scale = 1;
    for (int64_t c = 0; c < s.dim; ++c, scale *= s.num_categories) {
      idx += samples.u8[r * s.dim + c] * scale;
    }
    counts[idx] += 1;
  }
  auto lp = model.LogProb(all).value();
  double chi2 = 0;
  for (int64_t i = 0; i < all.rows; ++i) {
    const double expected = n * std::exp(lp[i]);
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi2;
}

TEST(SamplingTest, FrequenciesMatchScoredProbabilities) {
  const RecordMatrix data = RandomBinary(300, 4, 13, 0.6);
  // 15 degrees of freedom: P(chi2 > 37.7) = 0.001.
  EXPECT_LT(ChiSquare(*MustTrain(Fvsbn(true), data).model, 20000, 42), 37.7);
  EXPECT_LT(ChiSquare(*MustTrain(Nade(8, true), data).model, 20000, 43), 37.7);
  // Categorical MADE, 3^3 outcomes: 26 degrees of freedom, P(chi2 > 54.05) = 0.001.
  auto cat = MustTrain(Made(1, 16, 1, true), RandomCategorical(400, 3, 3, 5, 0.6)).model;
  EXPECT_LT(ChiSquare(*cat, 20000, 44), 54.05);
}

TEST(SamplingTest, ContinuousMomentsMatchTheDensity) {
  for (auto conditional : {v1::CONDITIONAL_TYPE_GAUSSIAN, v1::CONDITIONAL_TYPE_MIXTURE}) {
    SCOPED_TRACE(testing::Message() << "conditional=" << conditional);
    auto model = MustTrain(MadeContinuous(conditional), RandomContinuous(1000, 1, 4), 5).model;
    const Quadrature q = Integrate(*model, 15, 30000);
    ASSERT_NEAR(q.mass, 1.0, 1e-3);
    const int64_t n = 20000;
    auto s = model->Sample(n, 9).value();
    ASSERT_EQ(s.f32.size(), static_cast<size_t>(n));
    double mean = 0, var = 0;
    for (float v : s.f32) mean += v / n;
    for (float v : s.f32) var += (v - mean) * (v - mean) / (n - 1);
    // Within 4.5 standard errors of the density's own moments.
    EXPECT_NEAR(mean, q.mean, 4.5 * std::sqrt(q.variance / n));
    EXPECT_NEAR(var, q.variance, 4.5 * std::sqrt((q.fourth - q.variance * q.variance) / n));
    if (conditional == v1::CONDITIONAL_TYPE_MIXTURE) {
      // The mixture learned the bimodal data: its variance is far from a unit Gaussian's.
      EXPECT_GT(q.variance, 2.0);
    }
  }
}

TEST(SamplingTest, ReproducibleBySeedForEveryKind) {
  const std::vector<std::pair<v1::ModelSpec, DataShape>> cases = {
      {Fvsbn(true), {v1::DATA_KIND_BINARY, 6, 2}},
      {Nade(8, true), {v1::DATA_KIND_BINARY, 6, 2}},
      {Made(1, 8, 2), {v1::DATA_KIND_CATEGORICAL, 6, 5}},
      {MadeContinuous(v1::CONDITIONAL_TYPE_MIXTURE), {v1::DATA_KIND_CONTINUOUS, 6, 0}},
  };
  for (const auto& [spec, shape] : cases) {
    SCOPED_TRACE(spec.ShortDebugString());
    auto model = Model::Create(spec, shape, 1).value();
    auto a = model->Sample(30, 5).value(), b = model->Sample(30, 5).value(),
         c = model->Sample(30, 6).value();
    EXPECT_EQ(a.u8, b.u8);
    EXPECT_EQ(a.f32, b.f32);
    EXPECT_TRUE(a.u8 != c.u8 || a.f32 != c.f32);
    for (uint8_t v : a.u8) EXPECT_LT(v, shape.num_categories);
  }
}

// ---------------------------------------------------------------------------------------------
// Known truth: data from a random FVSBN over 20 binary variables.

double Softplus(double l) { return std::max(l, 0.0) + std::log1p(std::exp(-std::abs(l))); }

struct TrueFvsbn {
  int64_t d;
  std::vector<double> w, b;  // natural order, w[i * d + j] for j < i

  double Logit(const uint8_t* x, int64_t i) const {
    double l = b[i];
    for (int64_t j = 0; j < i; ++j) l += w[i * d + j] * x[j];
    return l;
  }
  double LogProb(const uint8_t* x) const {
    double lp = 0;
    for (int64_t i = 0; i < d; ++i) {
      const double l = Logit(x, i);
      lp += x[i] * l - Softplus(l);
    }
    return lp;
  }
  RecordMatrix Sample(int64_t n, std::mt19937_64& rng) const {
    RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_BINARY, d, 2).value();
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<uint8_t> x(d);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t i = 0; i < d; ++i) {
        x[i] = u(rng) < 1.0 / (1.0 + std::exp(-Logit(x.data(), i)));
      }
      m.u8.insert(m.u8.end(), x.begin(), x.end());
      ++m.rows;
    }
    return m;
  }
};

// Mean and standard error of log p_true(x) - log q(x) over the test records.
std::pair<double, double> KlEstimate(const Model& model, const TrueFvsbn& truth,
                                     const RecordMatrix& test) {
  auto lq = model.LogProb(test).value();
  std::vector<double> gap(test.rows);
  double mean = 0;
  for (int64_t r = 0; r < test.rows; ++r) {
    gap[r] = truth.LogProb(&test.u8[r * truth.d]) - lq[r];
    mean += gap[r] / test.rows;
  }
  double var = 0;
  for (double g : gap) var += (g - mean) * (g - mean) / (test.rows - 1);
  return {mean, std::sqrt(var / test.rows)};
}

TEST(KnownTruthTest, RandomFvsbnOverTwentyVariables) {
  TrueFvsbn truth{20, std::vector<double>(400, 0.0), std::vector<double>(20, 0.0)};
  std::mt19937_64 rng(2024);
  std::uniform_real_distribution<double> u(-1, 1);
  for (int64_t i = 0; i < truth.d; ++i) {
    double row = 0;
    for (int64_t j = 0; j < i; ++j) row += (truth.w[i * truth.d + j] = 1.5 * u(rng));
    truth.b[i] = u(rng) - 0.5 * row;  // centred so that no variable is nearly constant
  }
  const RecordMatrix train = truth.Sample(5000, rng), test = truth.Sample(5000, rng);
  double entropy = 0;
  for (int64_t r = 0; r < test.rows; ++r) entropy -= truth.LogProb(&test.u8[r * 20]) / test.rows;
  auto split = SplitRecords(train, 0.1, 1).value();
  TrainOptions opts;
  opts.epochs = 30;
  opts.batch_size = 100;
  opts.learning_rate = 1e-2;
  opts.seed = 3;
  const std::vector<std::pair<std::string, v1::ModelSpec>> specs = {
      {"fvsbn", Fvsbn(false)},
      {"nade", Nade(32, false)},
      {"made", Made(1, 64, 1, false, false)},
  };
  for (const auto& [name, spec] : specs) {
    SCOPED_TRACE(name);
    auto r = Train(spec, split.first, split.second, opts, nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    const auto [kl, se] = KlEstimate(*r->model, truth, test);
    std::cout << "known truth (random FVSBN, D=20, entropy " << entropy << " nats): " << name
              << " test NLL - true NLL = " << kl << " +- " << se << " nats\n";
    RecordProperty(name + "_kl_nats", std::to_string(kl));
    EXPECT_GE(kl, -2 * se);
    if (name == "fvsbn") {
      EXPECT_LT(kl, 0.1);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Serialization, dropout and spec checks.

TEST(SerializeTest, RoundTripKeepsScoresOfEveryKind) {
  struct Case {
    v1::ModelSpec spec;
    RecordMatrix data;
  };
  v1::ModelSpec mix = MadeContinuous(v1::CONDITIONAL_TYPE_MIXTURE, 3);
  mix.mutable_made()->set_direct_connections(true);
  mix.mutable_made()->set_order(v1::VARIABLE_ORDER_RANDOM);
  const std::vector<Case> cases = {
      {Fvsbn(true), RandomBinary(100, 6, 1, 0.5)},
      {Nade(8, true), RandomBinary(100, 6, 1, 0.5)},
      {Made(1, 8, 3, true), RandomCategorical(100, 4, 3, 2, 0.5)},
      {mix, RandomContinuous(100, 2, 3)},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.spec.ShortDebugString());
    auto trained = MustTrain(c.spec, c.data, 2);
    auto loaded = Model::Deserialize(trained.model->Serialize().value());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(trained.model->LogProb(c.data).value(), (*loaded)->LogProb(c.data).value());
  }
}

TEST(NadeTest, ChunkedBatchEqualsSmallBatches) {
  // 2100 rows x 16 variables x 1024 hidden units exceed NadeImpl::kMaxChunkElements: the batch
  // is processed in 3 chunks, which must not change any record's log p.
  const int64_t d = 16, h = 1024, n = 2100;
  ASSERT_GT(n * d * h, 2 * NadeImpl::kMaxChunkElements);
  auto model = Model::Create(Nade(h, true), {v1::DATA_KIND_BINARY, d, 2}, 4).value();
  auto* nade = NetAs<NadeImpl>(*model);
  auto x = RecordsToTensor(RandomBinary(n, d, 5, 0.5));
  torch::NoGradGuard no_grad;
  auto whole = nade->LogProb(x);
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < n; b += 100) parts.push_back(nade->LogProb(x.slice(0, b, b + 100)));
  EXPECT_LT((whole - torch::cat(parts)).abs().max().item<double>(), 1e-5);
}

// The record-by-record recurrence with its hand-written gradient against the cumulative-sum
// form differentiated by autograd: equal logits and equal gradients for every parameter.
TEST(NadeTest, RecurrenceMatchesCumsumValuesAndGradients) {
  const int64_t d = 12, h = 16;
  auto model = Model::Create(Nade(h, true, 9), {v1::DATA_KIND_BINARY, d, 2}, 6).value();
  auto* nade = NetAs<NadeImpl>(*model);
  nade->train();
  auto x = RecordsToTensor(RandomBinary(64, d, 7, 0.5));
  auto run = [&](bool recurrence) {
    nade->set_use_recurrence(recurrence);
    nade->zero_grad();
    auto logits = nade->Logits(x);
    auto loss = -BernoulliLogLikelihood(logits, x).mean();
    loss.backward();
    std::vector<torch::Tensor> out = {logits.detach().clone()};
    for (const auto& p : nade->parameters()) out.push_back(p.grad().clone());
    return out;
  };
  const auto fast = run(true), reference = run(false);
  ASSERT_EQ(fast.size(), 5u);  // logits, W, c, V, b
  for (size_t i = 0; i < fast.size(); ++i) {
    const double scale = reference[i].abs().max().item<double>();
    ASSERT_GT(scale, 0) << "tensor " << i << " is zero: the comparison would be vacuous";
    EXPECT_LT((fast[i] - reference[i]).abs().max().item<double>(), 1e-5 * std::max(1.0, scale))
        << "tensor " << i;
  }
}

TEST(DropoutTest, AppliesInTrainModeOnly) {
  auto x = RecordsToTensor(RandomBinary(20, 8, 4, 0.5));
  v1::ModelSpec made = Made(1, 32), nade = Nade(32, false);
  made.mutable_regularization()->set_dropout(0.5);
  nade.mutable_regularization()->set_dropout(0.5);
  for (const auto& spec : {made, nade}) {
    SCOPED_TRACE(spec.ShortDebugString());
    auto model = Model::Create(spec, {v1::DATA_KIND_BINARY, 8, 2}, 1).value();
    auto* net = &NetOf(*model);
    torch::NoGradGuard no_grad;
    net->train();
    EXPECT_FALSE(torch::equal(net->LogProb(x), net->LogProb(x)));
    net->eval();
    EXPECT_TRUE(torch::equal(net->LogProb(x), net->LogProb(x)));
  }
}

void ExpectInvalid(const v1::ModelSpec& spec, const DataShape& shape, const std::string& field) {
  const absl::Status st = ResolveModelSpec(spec, shape).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(std::string(st.message()).find(field), std::string::npos) << st;
}

TEST(SpecTest, BadFieldsAreNamedAndKindsChecked) {
  const DataShape binary{v1::DATA_KIND_BINARY, 10, 2};
  const DataShape categorical{v1::DATA_KIND_CATEGORICAL, 10, 4};
  const DataShape continuous{v1::DATA_KIND_CONTINUOUS, 10, 0};
  for (const DataShape& shape : {binary, categorical, continuous}) {
    EXPECT_TRUE(ResolveModelSpec(Made(1, 10, 4, true), shape).ok());
  }
  EXPECT_TRUE(ResolveModelSpec(Fvsbn(true), binary).ok());
  EXPECT_TRUE(ResolveModelSpec(Nade(10, true), binary).ok());
  for (const DataShape& shape : {categorical, continuous}) {
    EXPECT_EQ(ResolveModelSpec(Fvsbn(true), shape).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(ResolveModelSpec(Nade(10, true), shape).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }

  ExpectInvalid(Made(1, 10, 65), binary, "model.made.num_masks");
  ExpectInvalid(Made(1, 10, -1), binary, "model.made.num_masks");
  ExpectInvalid(Made(1, -5), binary, "model.made.hidden_units");
  v1::ModelSpec s = MadeContinuous(v1::CONDITIONAL_TYPE_MIXTURE);
  s.mutable_made()->set_mixture_components(65);
  ExpectInvalid(s, continuous, "model.made.mixture_components");
  s.mutable_made()->set_mixture_components(-2);
  ExpectInvalid(s, continuous, "model.made.mixture_components");
  s = MadeContinuous(static_cast<v1::ConditionalType>(9));
  ExpectInvalid(s, continuous, "model.made.conditional");
  s = Made(1, 10);
  s.mutable_made()->set_order(static_cast<v1::VariableOrder>(9));
  ExpectInvalid(s, binary, "model.made.order");
  ExpectInvalid(Nade(8193, false), binary, "model.nade.hidden_units");
  ExpectInvalid(Nade(-1, false), binary, "model.nade.hidden_units");
  s = Nade(10, false);
  s.mutable_nade()->set_order(static_cast<v1::VariableOrder>(9));
  ExpectInvalid(s, binary, "model.nade.order");
  s = Fvsbn(false);
  s.mutable_fvsbn()->set_order(static_cast<v1::VariableOrder>(9));
  ExpectInvalid(s, binary, "model.fvsbn.order");
  // Defaults: NADE 500 hidden units, MADE one mask with 5-component mixtures when asked.
  v1::ModelSpec defaults;
  defaults.set_family(v1::MODEL_FAMILY_NADE);
  EXPECT_EQ(ResolveModelSpec(defaults, binary).value().nade().hidden_units(), 500);
  defaults.set_family(v1::MODEL_FAMILY_MADE);
  EXPECT_EQ(ResolveModelSpec(defaults, binary).value().made().num_masks(), 1);
  EXPECT_EQ(ResolveModelSpec(defaults, binary).value().made().mixture_components(), 5);
  EXPECT_EQ(ResolveModelSpec(defaults, binary).value().made().conditional(),
            v1::CONDITIONAL_TYPE_GAUSSIAN);
}

}  // namespace
}  // namespace logp
