// The incremental samplers of the binary autoregressive families (models/families/ar_sampling.h)
// against exact truths: the state they keep gives, at every position, the logits of the model's
// own forward pass; their samples follow exp(log p) over every outcome of a small space
// (chi-square); and they are reproducible by seed whatever the number of threads.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "models/density_net.h"
#include "models/families/ar_sampling.h"
#include "models/families/fvsbn.h"
#include "models/families/made.h"
#include "models/families/nade.h"
#include "models/model.h"
#include "tests/models/frequency_check.h"
#include "tests/models/test_data.h"

namespace logp {
namespace {

v1::ModelSpec Made(int layers, int units, int masks, bool direct) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_MADE);
  auto* m = s.mutable_made();
  m->set_hidden_layers(layers);
  m->set_hidden_units(units);
  m->set_num_masks(masks);
  m->set_direct_connections(direct);
  m->set_order(v1::VARIABLE_ORDER_RANDOM);
  m->set_order_seed(7);
  return s;
}

v1::ModelSpec Nade(int units) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_NADE);
  s.mutable_nade()->set_hidden_units(units);
  s.mutable_nade()->set_order(v1::VARIABLE_ORDER_RANDOM);
  s.mutable_nade()->set_order_seed(3);
  return s;
}

v1::ModelSpec Fvsbn() {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_FVSBN);
  s.mutable_fvsbn()->set_order(v1::VARIABLE_ORDER_RANDOM);
  s.mutable_fvsbn()->set_order_seed(5);
  return s;
}

struct Case {
  std::string name;
  v1::ModelSpec spec;
};

std::vector<Case> Cases() {
  return {{"made 1x16", Made(1, 16, 1, false)},
          {"made 2x12 direct", Made(2, 12, 1, true)},
          {"made 3x10", Made(3, 10, 1, false)},
          {"made 2x12 direct, 3 masks (mask 0)", Made(2, 12, 3, true)},
          {"nade 10", Nade(10)},
          {"fvsbn", Fvsbn()}};
}

// A model with weights far from initialisation: every weight scaled by its own N(0, 3) factor
// (masked weights, folded to 0, stay 0) and every bias N(0, 1), so that the conditionals are
// far from 1/2 and differ between contexts.
std::unique_ptr<Model> RandomModel(const v1::ModelSpec& spec, int64_t dim, uint64_t seed) {
  auto model = Model::Create(spec, {v1::DATA_KIND_BINARY, dim, 2}, seed).value();
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& p : NetOf(*model).parameters()) {
    if (p.dim() == 1) {
      p.normal_(0, 1);
    } else {
      p.mul_(torch::randn_like(p) * 3);
    }
  }
  NetOf(*model).eval();
  return model;
}

// The model's forward-pass logits [B, D] and those of the incremental state.
std::pair<torch::Tensor, torch::Tensor> BothLogits(DensityNet& net, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  if (auto* made = dynamic_cast<MadeImpl*>(&net)) {
    return {made->Logits(x), IncrementalLogits(MadeSamplingWeightsOf(*made), x)};
  }
  if (auto* nade = dynamic_cast<NadeImpl*>(&net)) {
    return {nade->Logits(x), IncrementalLogits(NadeSamplingWeightsOf(*nade), x)};
  }
  auto* fvsbn = dynamic_cast<FvsbnImpl*>(&net);
  EXPECT_NE(fvsbn, nullptr);
  return {fvsbn->Logits(x), IncrementalLogits(FvsbnSamplingWeightsOf(*fvsbn), x)};
}

TEST(IncrementalSamplingTest, StateGivesTheForwardPassLogitsAtEveryPosition) {
  // Every outcome of D = 8, and random records of D = 40 (several chunks of records, hidden
  // units spread over many degrees).
  for (const Case& c : Cases()) {
    for (int64_t dim : {8, 40}) {
      SCOPED_TRACE(c.name + ", D = " + std::to_string(dim));
      auto model = RandomModel(c.spec, dim, 1);
      const torch::Tensor x =
          RecordsToTensor(dim == 8 ? AllBinaryInputs(8) : RandomBinary(150, dim, 2, 0.5));
      auto [forward, incremental] = BothLogits(NetOf(*model), x);
      ASSERT_EQ(incremental.sizes(), forward.sizes());
      const double scale = forward.abs().max().item<double>();
      EXPECT_GT(scale, 1.0);  // the logits are far from 0: the check has teeth
      EXPECT_LT((incremental - forward).abs().max().item<double>(), 1e-5 * (1 + scale));
    }
  }
}

TEST(IncrementalSamplingTest, FrequenciesMatchExactProbabilities) {
  const int64_t dim = 6, outcomes = 64, n = 60000;
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    auto model = RandomModel(c.spec, dim, 4);
    const std::vector<double> counts = OutcomeCounts(model->Sample(n, 42).value().u8, n, dim);
    // An ensemble samples from its mask 0: its own log p, not the ensemble's.
    std::vector<double> lp = model->LogProb(AllBinaryInputs(dim)).value();
    if (auto* made = dynamic_cast<MadeImpl*>(&NetOf(*model)); made && made->num_masks() > 1) {
      torch::NoGradGuard no_grad;
      const torch::Tensor lp0 =
          made->LogProbWithMask(RecordsToTensor(AllBinaryInputs(dim)), 0).to(torch::kDouble);
      lp.assign(lp0.data_ptr<double>(), lp0.data_ptr<double>() + outcomes);
    }
    const ChiSquare c2 = PooledChiSquare(counts, lp, n);
    ASSERT_GE(c2.cells, 20);
    EXPECT_GT(c2.max_p, 3.0 / outcomes);  // far from uniform: the check has teeth
    EXPECT_LT(c2.statistic, ChiSquareQuantile999(c2.cells - 1)) << c2.cells << " cells";
  }
}

TEST(IncrementalSamplingTest, ReproducibleBySeedWhateverTheThreads) {
  const int threads = at::get_num_threads();
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    auto model = RandomModel(c.spec, 30, 2);
    // 300 records: several chunks, the last one partial.
    at::set_num_threads(1);
    auto one_thread = model->Sample(300, 5).value();
    at::set_num_threads(2);
    auto a = model->Sample(300, 5).value(), b = model->Sample(300, 6).value();
    at::set_num_threads(threads);
    EXPECT_EQ(a.u8, one_thread.u8);
    EXPECT_NE(a.u8, b.u8);
  }
}

}  // namespace
}  // namespace logp
