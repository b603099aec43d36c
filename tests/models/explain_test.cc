// Per-dimension explanations (Model::PerDimensionLogProb) against exact truths: every term of
// small binary and categorical autoregressive models equals log p(x_<=d) - log p(x_<d) computed
// by enumerating the joint over the later dimensions; the full-covariance Gaussian's terms equal
// the conditional Gaussians of its covariance (Schur complements, computed here in plain
// double arithmetic); a mixture's terms equal differences of its closed-form marginals; every
// family's rows sum to log p(x); families without a decomposition answer FAILED_PRECONDITION.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "models/density_net.h"
#include "models/model.h"
#include "models/train.h"
#include "tests/models/test_data.h"

namespace logp {
namespace {

using Matrix = std::vector<std::vector<double>>;

// ---------------------------------------------------------------------------------------------
// Specs and data.

v1::ModelSpec Family(v1::ModelFamily family) {
  v1::ModelSpec s;
  s.set_family(family);
  return s;
}

v1::ModelSpec Fvsbn(uint64_t seed) {
  v1::ModelSpec s = Family(v1::MODEL_FAMILY_FVSBN);
  s.mutable_fvsbn()->set_order(v1::VARIABLE_ORDER_RANDOM);
  s.mutable_fvsbn()->set_order_seed(seed);
  return s;
}

v1::ModelSpec Nade(uint64_t seed) {
  v1::ModelSpec s = Family(v1::MODEL_FAMILY_NADE);
  s.mutable_nade()->set_hidden_units(12);
  s.mutable_nade()->set_order(v1::VARIABLE_ORDER_RANDOM);
  s.mutable_nade()->set_order_seed(seed);
  return s;
}

v1::ModelSpec Made(int masks, bool direct,
                   v1::ConditionalType conditional = v1::CONDITIONAL_TYPE_GAUSSIAN) {
  v1::ModelSpec s = Family(v1::MODEL_FAMILY_MADE);
  auto* m = s.mutable_made();
  m->set_hidden_layers(2);
  m->set_hidden_units(16);
  m->set_num_masks(masks);
  m->set_direct_connections(direct);
  m->set_order(v1::VARIABLE_ORDER_RANDOM);
  m->set_order_seed(9);
  m->set_conditional(conditional);
  m->set_mixture_components(3);
  return s;
}

v1::ModelSpec Mixture(int components, bool full) {
  v1::ModelSpec s = Family(v1::MODEL_FAMILY_GAUSSIAN_MIXTURE);
  auto* g = s.mutable_gaussian_mixture();
  g->set_components(components);
  g->set_covariance(full ? v1::COVARIANCE_TYPE_FULL : v1::COVARIANCE_TYPE_DIAGONAL);
  return s;
}

RecordMatrix Continuous(const Matrix& rows) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, rows[0].size(), 0).value();
  for (const auto& row : rows) {
    for (double v : row) m.f32.push_back(static_cast<float>(v));
    ++m.rows;
  }
  return m;
}

// n correlated continuous records of dim d: x_c = 0.7 x_{c-1} + noise, shifted by the mode.
RecordMatrix CorrelatedContinuous(int64_t n, int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0, 1);
  Matrix rows(n, std::vector<double>(d));
  for (auto& row : rows) {
    const double shift = z(rng) > 0 ? 2 : -1;
    for (int64_t c = 0; c < d; ++c) row[c] = (c > 0 ? 0.7 * row[c - 1] : shift) + 0.5 * z(rng);
  }
  return Continuous(rows);
}

std::unique_ptr<Model> Trained(const v1::ModelSpec& spec, const RecordMatrix& data) {
  TrainOptions opts;
  opts.epochs = 3;
  opts.batch_size = 32;
  opts.learning_rate = 1e-2;
  opts.seed = 3;
  auto split = SplitRecords(data, 0.2, 3).value();
  auto r = Train(spec, split.first, split.second, opts, nullptr);
  EXPECT_TRUE(r.ok()) << r.status();
  return std::move(r->model);
}

std::vector<double> Terms(const Model& model, const RecordMatrix& records) {
  auto terms = model.PerDimensionLogProb(records);
  EXPECT_TRUE(terms.ok()) << terms.status();
  if (!terms.ok()) return {};
  EXPECT_EQ(terms->size(), static_cast<size_t>(records.rows * records.cols));
  return *terms;
}

// The row sums equal LogProb.
void ExpectRowsSumToLogProb(const Model& model, const RecordMatrix& records, double tolerance) {
  const std::vector<double> terms = Terms(model, records);
  const std::vector<double> lp = model.LogProb(records).value();
  ASSERT_EQ(terms.size(), lp.size() * records.cols);
  for (int64_t r = 0; r < records.rows; ++r) {
    double sum = 0;
    for (int64_t c = 0; c < records.cols; ++c) sum += terms[r * records.cols + c];
    ASSERT_NEAR(sum, lp[r], tolerance * std::max(1.0, std::abs(lp[r]))) << "record " << r;
  }
}

// ---------------------------------------------------------------------------------------------
// Every family with a decomposition: rows sum to log p(x).

TEST(PerDimensionTest, RowsSumToLogProbInEveryFamilyWithADecomposition) {
  const RecordMatrix binary = RandomBinary(600, 10, 4, 0.6);
  const RecordMatrix categorical = AllInputs(v1::DATA_KIND_CATEGORICAL, 4, 3);
  const RecordMatrix continuous = CorrelatedContinuous(600, 5, 8);
  std::vector<std::pair<v1::ModelSpec, const RecordMatrix*>> cases = {
      {Family(v1::MODEL_FAMILY_BERNOULLI), &binary},
      {Fvsbn(2), &binary},
      {Nade(2), &binary},
      {Made(1, false), &binary},
      {Made(1, true), &binary},
      {Family(v1::MODEL_FAMILY_CATEGORICAL), &categorical},
      {Made(1, true), &categorical},
      {Family(v1::MODEL_FAMILY_GAUSSIAN), &continuous},
      {Mixture(3, false), &continuous},
      {Mixture(3, true), &continuous},
      {Made(1, false, v1::CONDITIONAL_TYPE_GAUSSIAN), &continuous},
      {Made(1, false, v1::CONDITIONAL_TYPE_MIXTURE), &continuous},
  };
  for (const auto& [spec, data] : cases) {
    SCOPED_TRACE(spec.ShortDebugString());
    auto model = Trained(spec, *data);
    ASSERT_NE(model, nullptr);
    ExpectRowsSumToLogProb(*model, *data, 1e-5);
  }
}

TEST(PerDimensionTest, RowsSumToLogProbUnderPreprocessingAndOutsideTheSupport) {
  // 8-bit values, dequantised and logit-transformed, under a diagonal Gaussian and a MADE.
  std::mt19937_64 rng(5);
  Matrix rows(300, std::vector<double>(6));
  for (auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) row[c] = static_cast<double>((rng() % 150) + 20 * c);
  }
  const RecordMatrix data = Continuous(rows);
  for (v1::ModelSpec spec : {Family(v1::MODEL_FAMILY_GAUSSIAN), Mixture(2, true), Made(1, false)}) {
    SCOPED_TRACE(spec.ShortDebugString());
    spec.mutable_preprocessing()->set_dequantize(true);
    spec.mutable_preprocessing()->set_logit(true);
    spec.mutable_preprocessing()->set_levels(256);
    auto model = Trained(spec, data);
    ASSERT_NE(model, nullptr);
    ExpectRowsSumToLogProb(*model, data, 1e-5);
    // A value outside [0, 256): that dimension's term is -inf, the others stay finite.
    const RecordMatrix outside = Continuous({{3, 300, 7, 9, 11, 13}});
    const std::vector<double> terms = Terms(*model, outside);
    ASSERT_EQ(terms.size(), 6u);
    EXPECT_EQ(terms[1], -std::numeric_limits<double>::infinity());
    for (int c : {0, 2, 3, 4, 5}) EXPECT_TRUE(std::isfinite(terms[c])) << c;
    EXPECT_EQ(model->LogProb(outside).value()[0], -std::numeric_limits<double>::infinity());
  }
}

// ---------------------------------------------------------------------------------------------
// Autoregressive families: every term by enumeration of the joint.

// log sum_{completions} p(x with the dimensions after position i in `order` free), i.e.
// log p(x_{order[0..i]}); i = -1 gives 0 (log of the total mass, which the normalisation tests
// of autoregressive_test.cc check is 1).
double LogMarginalByEnumeration(const Model& model, const RecordMatrix& x, int64_t row,
                                const std::vector<int64_t>& order, int64_t i) {
  const int64_t d = x.cols;
  const int32_t k = x.kind == v1::DATA_KIND_BINARY ? 2 : x.num_categories;
  const int64_t free = d - 1 - i;
  int64_t completions = 1;
  for (int64_t j = 0; j < free; ++j) completions *= k;
  RecordMatrix all = RecordMatrix::Empty(x.kind, d, x.num_categories).value();
  for (int64_t c = 0; c < completions; ++c) {
    std::vector<uint8_t> record(x.u8.begin() + row * d, x.u8.begin() + (row + 1) * d);
    int64_t rest = c;
    for (int64_t j = i + 1; j < d; ++j, rest /= k) record[order[j]] = rest % k;
    all.u8.insert(all.u8.end(), record.begin(), record.end());
    ++all.rows;
  }
  const std::vector<double> lp = model.LogProb(all).value();
  double max = -std::numeric_limits<double>::infinity();
  for (double v : lp) max = std::max(max, v);
  double sum = 0;
  for (double v : lp) sum += std::exp(v - max);
  return max + std::log(sum);
}

void ExpectTermsEqualEnumeration(const Model& model, const RecordMatrix& records) {
  std::vector<int64_t> order = model.FactorOrder();
  ASSERT_EQ(order.size(), static_cast<size_t>(records.cols));
  const std::vector<double> terms = Terms(model, records);
  ASSERT_FALSE(terms.empty());
  double spread = 0;  // how far the terms are from a uniform model's, so the test can fail
  for (int64_t r = 0; r < records.rows; ++r) {
    double previous = 0;
    for (int64_t i = 0; i < records.cols; ++i) {
      const double marginal = LogMarginalByEnumeration(model, records, r, order, i);
      const double term = terms[r * records.cols + order[i]];
      ASSERT_NEAR(term, marginal - previous, 1e-5) << "record " << r << " dimension " << order[i];
      spread = std::max(
          spread,
          std::abs(term + std::log(static_cast<double>(std::max(2, records.num_categories)))));
      previous = marginal;
    }
  }
  EXPECT_GT(spread, 0.05);
}

TEST(PerDimensionTest, AutoregressiveTermsEqualEnumeratedConditionals) {
  const RecordMatrix binary = AllBinaryInputs(7);
  const RecordMatrix data = RandomBinary(500, 7, 12, 0.7);
  for (const v1::ModelSpec& spec : {Fvsbn(4), Nade(4), Made(1, false), Made(1, true)}) {
    SCOPED_TRACE(spec.ShortDebugString());
    auto model = Trained(spec, data);
    ASSERT_NE(model, nullptr);
    // The order is the spec's random one, not the natural order.
    std::vector<int64_t> natural(7);
    for (int64_t i = 0; i < 7; ++i) natural[i] = i;
    EXPECT_NE(model->FactorOrder(), natural);
    ExpectTermsEqualEnumeration(*model, binary);
  }
}

TEST(PerDimensionTest, CategoricalMadeTermsEqualEnumeratedConditionals) {
  const RecordMatrix all = AllInputs(v1::DATA_KIND_CATEGORICAL, 4, 3);
  auto model = Model::Create(Made(1, true), {v1::DATA_KIND_CATEGORICAL, 4, 3}, 6).value();
  ExpectTermsEqualEnumeration(*model, all);
}

TEST(PerDimensionTest, IndependentFamiliesHaveNoOrderAndMarginalTerms) {
  // Bernoulli fitted in closed form: term d is log p_d or log(1 - p_d), p_d the column mean.
  const RecordMatrix data = RandomBinary(400, 5, 21);
  auto model = Trained(Family(v1::MODEL_FAMILY_BERNOULLI), data);
  ASSERT_NE(model, nullptr);
  EXPECT_TRUE(model->FactorOrder().empty());
  const std::vector<double> terms = Terms(*model, data);
  // The closed form uses the training split: recompute p_d on it.
  auto split = SplitRecords(data, 0.2, 3).value();
  for (int64_t c = 0; c < 5; ++c) {
    double ones = 0;
    for (int64_t r = 0; r < split.first.rows; ++r) ones += split.first.At(r, c);
    const double p = ones / split.first.rows;
    for (int64_t r = 0; r < data.rows; ++r) {
      const double expected = data.At(r, c) == 1 ? std::log(p) : std::log1p(-p);
      ASSERT_NEAR(terms[r * 5 + c], expected, 1e-5) << r << " " << c;
    }
  }
  auto gaussian = Trained(Family(v1::MODEL_FAMILY_GAUSSIAN), CorrelatedContinuous(100, 3, 2));
  EXPECT_TRUE(gaussian->FactorOrder().empty());
}

// ---------------------------------------------------------------------------------------------
// Gaussians: closed-form conditionals, computed here without torch.

// Solves A y = b for symmetric positive-definite A by Gaussian elimination with pivoting.
std::vector<double> Solve(Matrix a, std::vector<double> b) {
  const size_t n = b.size();
  for (size_t i = 0; i < n; ++i) {
    size_t p = i;
    for (size_t r = i + 1; r < n; ++r) {
      if (std::abs(a[r][i]) > std::abs(a[p][i])) p = r;
    }
    std::swap(a[i], a[p]);
    std::swap(b[i], b[p]);
    for (size_t r = i + 1; r < n; ++r) {
      const double f = a[r][i] / a[i][i];
      for (size_t c = i; c < n; ++c) a[r][c] -= f * a[i][c];
      b[r] -= f * b[i];
    }
  }
  std::vector<double> y(n);
  for (size_t i = n; i-- > 0;) {
    double s = b[i];
    for (size_t c = i + 1; c < n; ++c) s -= a[i][c] * y[c];
    y[i] = s / a[i][i];
  }
  return y;
}

// log N(x_d; conditional mean, conditional variance) given x_<d (natural order), by the Schur
// complement: mean mu_d + S_{d,<d} S_{<d}^{-1} (x_<d - mu_<d), variance S_dd - S_{d,<d}
// S_{<d}^{-1} S_{<d,d}.
double ConditionalGaussianLogDensity(const std::vector<double>& x, const std::vector<double>& mu,
                                     const Matrix& sigma, size_t d) {
  double mean = mu[d], var = sigma[d][d];
  if (d > 0) {
    Matrix s(d, std::vector<double>(d));
    std::vector<double> cross(d), centred(d);
    for (size_t i = 0; i < d; ++i) {
      for (size_t j = 0; j < d; ++j) s[i][j] = sigma[i][j];
      cross[i] = sigma[d][i];
      centred[i] = x[i] - mu[i];
    }
    const std::vector<double> w = Solve(s, cross);  // S_{<d}^{-1} S_{<d,d}
    for (size_t i = 0; i < d; ++i) {
      mean += w[i] * centred[i];
      var -= w[i] * cross[i];
    }
  }
  return -0.5 * (std::log(2 * M_PI * var) + (x[d] - mean) * (x[d] - mean) / var);
}

// log N(x_{<=d}; mu_{<=d}, S_{<=d}) as the sum of its chain-rule conditionals.
double MarginalGaussianLogDensity(const std::vector<double>& x, const std::vector<double>& mu,
                                  const Matrix& sigma, size_t d) {
  double s = 0;
  for (size_t j = 0; j <= d; ++j) s += ConditionalGaussianLogDensity(x, mu, sigma, j);
  return s;
}

struct Component {
  double weight;
  std::vector<double> mean;
  Matrix lower;  // Cholesky factor (lower triangular, positive diagonal)
};

Matrix Covariance(const Matrix& l) {
  const size_t n = l.size();
  Matrix s(n, std::vector<double>(n, 0));
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      for (size_t k = 0; k < n; ++k) s[i][j] += l[i][k] * l[j][k];
    }
  }
  return s;
}

// A mixture model whose parameters are set to `components` (FULL covariance).
std::unique_ptr<Model> MixtureWith(const std::vector<Component>& components) {
  const int64_t k = components.size(), d = components[0].mean.size();
  auto model = Model::Create(Mixture(k, true), {v1::DATA_KIND_CONTINUOUS, d, 0}, 1).value();
  torch::NoGradGuard no_grad;
  auto params = NetOf(*model).named_parameters();
  for (int64_t c = 0; c < k; ++c) {
    params["logits"][c].fill_(std::log(components[c].weight));
    for (int64_t i = 0; i < d; ++i) {
      params["means"][c][i].fill_(components[c].mean[i]);
      params["log_scale"][c][i].fill_(std::log(components[c].lower[i][i]));
      for (int64_t j = 0; j < i; ++j) params["lower"][c][i][j].fill_(components[c].lower[i][j]);
    }
  }
  return model;
}

const Matrix kRecords = {{0.3, -1.2, 2.0, 0.5}, {-2.5, 0.1, -0.4, 3.1}, {1.0, 1.0, 1.0, 1.0}};

TEST(PerDimensionTest, FullCovarianceGaussianTermsAreSchurComplementConditionals) {
  const Component c{1.0,
                    {0.5, -1.0, 0.25, 2.0},
                    {{1.2, 0, 0, 0}, {0.8, 0.7, 0, 0}, {-0.5, 0.3, 0.9, 0}, {0.2, -0.6, 0.4, 0.5}}};
  auto model = MixtureWith({c});
  const Matrix sigma = Covariance(c.lower);
  const RecordMatrix x = Continuous(kRecords);
  const std::vector<double> terms = Terms(*model, x);
  ASSERT_EQ(terms.size(), 12u);
  for (size_t r = 0; r < kRecords.size(); ++r) {
    for (size_t d = 0; d < 4; ++d) {
      EXPECT_NEAR(terms[r * 4 + d], ConditionalGaussianLogDensity(kRecords[r], c.mean, sigma, d),
                  1e-5)
          << r << " " << d;
    }
  }
  const std::vector<int64_t> natural = {0, 1, 2, 3};
  EXPECT_EQ(model->FactorOrder(), natural);
}

TEST(PerDimensionTest, MixtureTermsAreDifferencesOfClosedFormMarginals) {
  const std::vector<Component> components = {
      {0.5,
       {0.5, -1.0, 0.25, 2.0},
       {{1.2, 0, 0, 0}, {0.8, 0.7, 0, 0}, {-0.5, 0.3, 0.9, 0}, {0.2, -0.6, 0.4, 0.5}}},
      {0.3,
       {-2.0, 0.5, -0.5, 3.0},
       {{0.6, 0, 0, 0}, {-0.4, 1.1, 0, 0}, {0.1, 0.2, 0.5, 0}, {0.0, 0.7, -0.3, 0.8}}},
      {0.2, {1.0, 1.0, 1.0, 1.0}, {{2.0, 0, 0, 0}, {0, 0.3, 0, 0}, {0, 0, 1.5, 0}, {0, 0, 0, 0.4}}},
  };
  auto model = MixtureWith(components);
  const RecordMatrix x = Continuous(kRecords);
  const std::vector<double> terms = Terms(*model, x);
  ASSERT_EQ(terms.size(), 12u);
  for (size_t r = 0; r < kRecords.size(); ++r) {
    double previous = 0;  // log p(x_<0) = log 1
    for (size_t d = 0; d < 4; ++d) {
      // log p(x_<=d) = log sum_k pi_k N(x_<=d; mu_k, Sigma_k restricted to <= d).
      double p = 0;
      for (const Component& c : components) {
        p += c.weight *
             std::exp(MarginalGaussianLogDensity(kRecords[r], c.mean, Covariance(c.lower), d));
      }
      EXPECT_NEAR(terms[r * 4 + d], std::log(p) - previous, 1e-5) << r << " " << d;
      previous = std::log(p);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Families without a decomposition, and the call's errors.

TEST(PerDimensionTest, FlowsVaeAndMadeEnsemblesAnswerFailedPrecondition) {
  v1::ModelSpec maf = Family(v1::MODEL_FAMILY_MAF);
  v1::ModelSpec realnvp = Family(v1::MODEL_FAMILY_REALNVP);
  v1::ModelSpec vae = Family(v1::MODEL_FAMILY_VAE);
  const RecordMatrix continuous = CorrelatedContinuous(4, 4, 1);
  const RecordMatrix binary = RandomBinary(4, 4, 1);
  const std::vector<std::tuple<v1::ModelSpec, const RecordMatrix*, std::string>> cases = {
      {maf, &continuous, "maf"},
      {realnvp, &continuous, "realnvp"},
      {vae, &continuous, "vae"},
      {vae, &binary, "vae"},
      {Made(3, false), &binary, "made with num_masks = 3"},
  };
  for (const auto& [spec, data, name] : cases) {
    SCOPED_TRACE(name);
    auto model = Model::Create(spec, {data->kind, data->cols, data->num_categories}, 2).value();
    auto terms = model->PerDimensionLogProb(*data);
    EXPECT_EQ(terms.status().code(), absl::StatusCode::kFailedPrecondition) << terms.status();
    EXPECT_NE(terms.status().message().find(name), std::string::npos) << terms.status();
    EXPECT_TRUE(model->FactorOrder().empty());
  }
}

TEST(PerDimensionTest, WrongRecordsAndStoppedCalls) {
  auto model = Model::Create(Fvsbn(1), {v1::DATA_KIND_BINARY, 6, 2}, 2).value();
  auto wrong = model->PerDimensionLogProb(RandomBinary(3, 5, 1));
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument) << wrong.status();
  auto stopped = model->PerDimensionLogProb(RandomBinary(3, 6, 1), [] { return true; });
  EXPECT_EQ(stopped.status().code(), absl::StatusCode::kCancelled) << stopped.status();
  // More rows than one batch: the batches line up with LogProb's records.
  const RecordMatrix many = RandomBinary(kEvalBatchRows * 2 + 7, 6, 3);
  ExpectRowsSumToLogProb(*model, many, 1e-5);
  EXPECT_TRUE(model->PerDimensionLogProb(RandomBinary(0, 6, 1)).value().empty());
}

}  // namespace
}  // namespace logp
