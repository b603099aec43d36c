// NADE's hand-written pass (models/families/nade_kernels.h, NadeImpl::LossAndGradients) against
// exact truths: loss and gradients against float64 autograd of NADE's definition written out
// position by position, normalisation by enumeration, and training steps against the autograd
// path. Each check runs with the AVX-512 implementation (when the CPU has it) and the portable
// loops.
#include "models/families/nade_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "models/density_net.h"
#include "models/families/nade.h"
#include "models/fused_adam.h"
#include "models/model.h"
#include "tests/models/test_data.h"

namespace logp {
namespace {

v1::ModelSpec Nade(int units, uint64_t order_seed = 5, double dropout = 0) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_NADE);
  s.mutable_nade()->set_hidden_units(units);
  s.mutable_nade()->set_order(v1::VARIABLE_ORDER_RANDOM);
  s.mutable_nade()->set_order_seed(order_seed);
  s.mutable_regularization()->set_dropout(dropout);
  return s;
}

struct RandomModel {
  std::unique_ptr<Model> model;
  NadeImpl* nade;
};

// A NADE with weights large enough that the sigmoids are far from linear and logits spread.
RandomModel RandomNade(int64_t dim, int64_t hidden, uint64_t seed) {
  auto model = Model::Create(Nade(hidden, seed), {v1::DATA_KIND_BINARY, dim, 2}, seed).value();
  auto* nade = dynamic_cast<NadeImpl*>(&NetOf(*model));
  EXPECT_NE(nade, nullptr);
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& p : nade->parameters()) p.copy_(torch::randn(p.sizes()) * 1.5);
  return {std::move(model), nade};
}

// Mean NLL of x under NADE's definition, by autograd in float64, position by position:
// a = c + sum_{j<i} W[:, o_j] x_{o_j}, logit = b_{o_i} + V[o_i] . sigmoid(a).
struct Reference {
  double loss;
  std::vector<torch::Tensor> grads;  // W, c, V, b
  torch::Tensor logits;              // [B, D] in variable order
};

Reference Float64Reference(NadeImpl& nade, const torch::Tensor& x) {
  std::vector<torch::Tensor> p;
  for (const auto& q : nade.parameters()) {
    p.push_back(q.detach().to(torch::kDouble).clone().requires_grad_(true));
  }
  const auto &w = p[0], &c = p[1], &v = p[2], &b = p[3];
  const auto xd = x.to(torch::kDouble);
  const int64_t batch = x.size(0), dim = x.size(1);
  auto a = c.unsqueeze(0).expand({batch, c.size(0)});
  torch::Tensor loss = torch::zeros({}, torch::kDouble);
  std::vector<torch::Tensor> logits(dim);
  for (int64_t d : nade.order()) {
    auto l = torch::mv(torch::sigmoid(a), v[d]) + b[d];
    logits[d] = l.detach();
    loss = loss + (torch::softplus(l) - xd.select(1, d) * l).sum();
    a = a + xd.select(1, d).unsqueeze(1) * w.select(1, d).unsqueeze(0);
  }
  loss = loss / static_cast<double>(batch);
  loss.backward();
  Reference r{loss.item<double>(), {}, torch::stack(logits, 1)};
  for (const auto& q : p) r.grads.push_back(q.grad());
  return r;
}

class NadeKernelsTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam() && !__builtin_cpu_supports("avx512f")) GTEST_SKIP() << "no AVX-512";
    TEST_NadeKernelsAllowAvx512(GetParam());
    ASSERT_EQ(NadeKernelsUseAvx512(), GetParam());
  }
  void TearDown() override { TEST_NadeKernelsAllowAvx512(true); }
};

void ExpectClose(const torch::Tensor& got, const torch::Tensor& want, const char* what) {
  const double scale = want.abs().max().item<double>();
  ASSERT_GT(scale, 0) << what << " is zero: the comparison would be vacuous";
  EXPECT_LT((got.to(torch::kDouble) - want).abs().max().item<double>(), 2e-5 * scale) << what;
}

TEST_P(NadeKernelsTest, LossAndGradientsMatchFloat64Autograd) {
  // H = 37: two whole vectors of 16 and a masked tail; batches of 1, under one block of 8, one
  // block, and not a multiple of it.
  for (const int64_t hidden : {37, 16, 5}) {
    for (const int64_t batch : {1, 5, 8, 19}) {
      SCOPED_TRACE(testing::Message() << "hidden " << hidden << " batch " << batch);
      RandomModel m = RandomNade(13, hidden, 3 + batch);
      m.nade->train();
      torch::manual_seed(batch);
      const auto x = (torch::rand({batch, 13}) < 0.45).to(torch::kFloat);
      const Reference ref = Float64Reference(*m.nade, x);
      for (auto& p : m.nade->parameters()) p.mutable_grad().reset();
      const torch::Tensor loss = m.nade->LossAndGradients(x);
      ASSERT_TRUE(loss.defined());
      EXPECT_NEAR(loss.item<double>(), ref.loss, 1e-5 * ref.loss);
      const char* names[] = {"dW", "dc", "dV", "db"};
      const auto params = m.nade->parameters();
      ASSERT_EQ(params.size(), 4u);
      for (size_t i = 0; i < 4; ++i) {
        ASSERT_TRUE(params[i].grad().defined()) << names[i];
        ASSERT_EQ(params[i].grad().sizes(), params[i].sizes()) << names[i];
        ExpectClose(params[i].grad(), ref.grads[i], names[i]);
      }
      // Scoring without gradients takes the kernels' forward pass.
      torch::NoGradGuard no_grad;
      m.nade->eval();
      ExpectClose(m.nade->Logits(x), ref.logits, "logits");
    }
  }
}

TEST_P(NadeKernelsTest, ProbabilitiesSumToOneOverAllInputs) {
  for (const int64_t dim : {1, 7, 10}) {
    SCOPED_TRACE(testing::Message() << "dim " << dim);
    RandomModel m = RandomNade(dim, 21, 40 + dim);
    m.nade->eval();
    torch::NoGradGuard no_grad;
    const auto lp = m.nade->LogProb(RecordsToTensor(AllBinaryInputs(dim))).to(torch::kDouble);
    EXPECT_NEAR(lp.exp().sum().item<double>(), 1.0, 1e-5);
    // The enumeration must not be dominated by one record (a vacuous sum).
    if (dim > 1) EXPECT_LT(lp.max().item<double>(), -0.05);
  }
}

// Adam steps from the same start on the same batches: the hand-written gradients and the
// autograd path (the recurrence's autograd Function) give the same loss at every step.
TEST_P(NadeKernelsTest, TrainingStepsFollowTheAutogradPath) {
  const int64_t dim = 20, hidden = 24, batch = 30, steps = 40;
  const auto data = RecordsToTensor(RandomBinary(batch * 4, dim, 9, 0.7));
  std::vector<std::vector<double>> losses(2);
  for (int path = 0; path < 2; ++path) {
    RandomModel m = RandomNade(dim, hidden, 77);
    m.nade->train();
    m.nade->set_use_kernels(path == 0);
    FusedAdam opt(m.nade->parameters(), torch::optim::AdamOptions(1e-2));
    for (int64_t s = 0; s < steps; ++s) {
      const auto x = data.slice(0, (s % 4) * batch, (s % 4 + 1) * batch);
      torch::Tensor loss = m.nade->LossAndGradients(x);
      ASSERT_EQ(loss.defined(), path == 0);
      if (!loss.defined()) {
        for (auto& p : m.nade->parameters()) p.mutable_grad().reset();
        loss = m.nade->Loss(x);
        loss.backward();
      }
      losses[path].push_back(loss.item<double>());
      opt.step();
    }
  }
  for (int64_t s = 0; s < steps; ++s) {
    EXPECT_NEAR(losses[0][s], losses[1][s], 1e-3 * losses[1][s]) << "step " << s;
  }
  EXPECT_LT(losses[0].back(), 0.8 * losses[0].front());
}

INSTANTIATE_TEST_SUITE_P(Implementations, NadeKernelsTest, ::testing::Bool(),
                         [](const testing::TestParamInfo<bool>& i) {
                           return i.param ? std::string("Avx512") : std::string("Portable");
                         });

TEST(NadeLossAndGradientsTest, DeclinesWhatItDoesNotCover) {
  auto dropout = Model::Create(Nade(8, 1, 0.5), {v1::DATA_KIND_BINARY, 6, 2}, 1).value();
  NetOf(*dropout).train();
  EXPECT_FALSE(NetOf(*dropout).LossAndGradients(torch::zeros({4, 6})).defined());
  RandomModel m = RandomNade(6, 8, 2);
  m.nade->eval();
  EXPECT_FALSE(m.nade->LossAndGradients(torch::zeros({4, 6})).defined());
  m.nade->train();
  m.nade->to(torch::kDouble);
  EXPECT_FALSE(m.nade->LossAndGradients(torch::zeros({4, 6})).defined());
  m.nade->to(torch::kFloat);
  EXPECT_TRUE(m.nade->LossAndGradients(torch::zeros({4, 6})).defined());
}

}  // namespace
}  // namespace logp
