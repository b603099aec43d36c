// The PixelCNN family (models/families/pixelcnn.h) against exact truths: its cropped tap
// products equal PyTorch-style masked convolutions (torch::conv2d with the full 7 x 7 mask-A and
// 3 x 3 mask-B kernels); no logit depends on its own pixel or a later one (autograd); exp(log p)
// sums to 1 over every image of a small space (enumeration); the hand-written head's gradients
// equal autograd's; the cached sampler draws what a full forward pass per pixel draws, with
// frequencies matching exp(log p) (chi-square), reproducibly by seed.
#include "models/families/pixelcnn.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "models/density_net.h"
#include "models/model.h"
#include "tests/models/frequency_check.h"
#include "tests/models/test_data.h"

namespace logp {
namespace {

namespace F = torch::nn::functional;

v1::ModelSpec Spec(int height, int width, int channels = 8, int blocks = 2, int units = 12,
                   bool batch_norm = true) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_PIXELCNN);
  auto* m = s.mutable_pixelcnn();
  m->set_height(height);
  m->set_width(width);
  m->set_channels(channels);
  m->set_residual_blocks(blocks);
  m->set_hidden_units(units);
  m->set_batch_norm(batch_norm);
  return s;
}

// A model far from initialisation, in eval mode: weights scaled by N(0, 1.5) factors, biases
// and batch-norm affine terms N(0, 0.5) (the head's last weight and the U biases before it
// N(0, 1.5), so that the logits are far from 0), running means N(0, 0.5) and variances in [0.5, 2].
std::unique_ptr<Model> RandomModel(const v1::ModelSpec& spec, uint64_t seed) {
  const int64_t dim = spec.pixelcnn().height() * spec.pixelcnn().width();
  auto model = Model::Create(spec, {v1::DATA_KIND_BINARY, dim, 2}, seed).value();
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  auto& net = NetOf(*model);
  for (auto& p : net.parameters()) {
    if (p.dim() == 1) {
      p.normal_(0, p.size(0) == spec.pixelcnn().hidden_units() ? 1.5 : 0.5);
    } else {
      p.mul_(torch::randn_like(p) * 1.5);
    }
  }
  for (auto& b : net.named_buffers()) {
    if (b.key().find("running_mean") != std::string::npos) b.value().normal_(0, 0.5);
    if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 2);
  }
  net.eval();
  return model;
}

PixelCnnImpl& Net(Model& model) { return dynamic_cast<PixelCnnImpl&>(NetOf(model)); }

torch::Tensor Param(PixelCnnImpl& net, const std::string& name) {
  for (const auto& p : net.named_parameters()) {
    if (p.key() == name) return p.value();
  }
  for (const auto& p : net.named_buffers()) {
    if (p.key() == name) return p.value();
  }
  ADD_FAILURE() << "no " << name;
  return torch::Tensor();
}

// The same network written as a PyTorch user writes it: NCHW activations, torch::conv2d with
// the full masked kernels, batch norm from the stored statistics.
torch::Tensor ConvolutionLogits(PixelCnnImpl& net, const torch::Tensor& x) {
  const auto& s = net.shape();
  const int64_t c = s.channels, h = c / 2;
  auto norm = [&](const torch::Tensor& t, const std::string& p) {
    if (!s.batch_norm) return t;
    return torch::batch_norm(t, Param(net, p + ".weight"), Param(net, p + ".bias"),
                             Param(net, p + ".running_mean"), Param(net, p + ".running_var"), false,
                             0.1, 1e-5, false);
  };
  auto conv1x1 = [](const torch::Tensor& t, const torch::Tensor& w_in_out, const torch::Tensor& b) {
    return F::conv2d(t, w_in_out.t().unsqueeze(2).unsqueeze(3), F::Conv2dFuncOptions().bias(b));
  };
  auto img = x.reshape({x.size(0), 1, s.height, s.width});
  auto a = F::conv2d(img, net.FullInputKernel(), F::Conv2dFuncOptions().padding(3));
  for (int64_t b = 0; b < s.blocks; ++b) {
    const std::string p = "block" + std::to_string(b) + "_";
    auto t = norm(conv1x1(torch::relu(a), Param(net, p + "reduce_weight"),
                          Param(net, p + "reduce_bias")),
                  p + "bn1")
                 .relu();
    t = F::conv2d(t, net.FullMaskedKernel(b),
                  F::Conv2dFuncOptions().bias(Param(net, p + "masked_bias")).padding(1));
    t = norm(t, p + "bn2").relu();
    a = a +
        norm(conv1x1(t, Param(net, p + "expand_weight"), Param(net, p + "expand_bias")), p + "bn3");
  }
  auto u = conv1x1(torch::relu(a), Param(net, "head_weight1"), Param(net, "head_bias1")).relu();
  auto out = conv1x1(u, Param(net, "head_weight2").unsqueeze(1), Param(net, "head_bias2"));
  EXPECT_EQ(h * 2, c);
  return out.reshape({x.size(0), -1});
}

TEST(PixelCnnTest, FullKernelsHaveTheMasksOfPixelCnn) {
  auto model = RandomModel(Spec(5, 7, 8, 1), 1);
  auto& net = Net(*model);
  // Mask A: zero at the centre, right of it and in every row below; mask B keeps the centre.
  auto a = net.FullInputKernel().abs().sum(std::vector<int64_t>{0, 1});  // [7, 7]
  auto b = net.FullMaskedKernel(0).abs().sum(std::vector<int64_t>{0, 1});
  for (int y = 0; y < 7; ++y) {
    for (int x = 0; x < 7; ++x) {
      const bool causal = y < 3 || (y == 3 && x < 3);
      EXPECT_EQ(a[y][x].item().toFloat() > 0, causal) << y << "," << x;
    }
  }
  for (int y = 0; y < 3; ++y) {
    for (int x = 0; x < 3; ++x) {
      const bool causal = y < 1 || (y == 1 && x <= 1);
      EXPECT_EQ(b[y][x].item().toFloat() > 0, causal) << y << "," << x;
    }
  }
}

TEST(PixelCnnTest, TapProductsEqualMaskedConvolutions) {
  for (bool batch_norm : {true, false}) {
    SCOPED_TRACE(batch_norm ? "batch norm" : "no batch norm");
    auto model = RandomModel(Spec(5, 7, 8, 3, 12, batch_norm), 2);
    auto& net = Net(*model);
    torch::NoGradGuard no_grad;
    auto x = RecordsToTensor(RandomBinary(6, 35, 3, 0.5));
    auto mine = net.Logits(x), theirs = ConvolutionLogits(net, x);
    const double scale = theirs.abs().max().item<double>();
    EXPECT_GT(scale, 1.0);
    EXPECT_LT((mine - theirs).abs().max().item<double>(), 1e-4 * (1 + scale));
  }
}

// Scoring goes 64 records at a time (eval mode, no graph): 150 records are three chunks, the
// last one short, each row still equal to its convolution.
TEST(PixelCnnTest, ScoringInChunksEqualsMaskedConvolutions) {
  auto model = RandomModel(Spec(5, 7, 8, 3, 12, true), 4);
  auto& net = Net(*model);
  net.eval();
  torch::NoGradGuard no_grad;
  auto x = RecordsToTensor(RandomBinary(150, 35, 5, 0.5));
  auto mine = net.Logits(x), theirs = ConvolutionLogits(net, x);
  ASSERT_EQ(mine.sizes(), theirs.sizes());
  const double scale = theirs.abs().max().item<double>();
  EXPECT_GT(scale, 1.0);
  EXPECT_LT((mine - theirs).abs().max().item<double>(), 1e-4 * (1 + scale));
}

TEST(PixelCnnTest, NoLogitDependsOnItsOwnOrALaterPixel) {
  const int64_t h = 4, w = 5, d = h * w;
  auto model = RandomModel(Spec(h, w, 8, 2), 3);
  auto& net = Net(*model);
  auto x = RecordsToTensor(RandomBinary(3, d, 4, 0.3)).requires_grad_(true);
  auto logits = net.Logits(x);
  int64_t dependent = 0;
  for (int64_t i = 0; i < d; ++i) {
    auto g = torch::autograd::grad({logits.select(1, i).sum()}, {x}, {}, true)[0].abs().sum(0);
    for (int64_t j = i; j < d; ++j)
      EXPECT_EQ(g[j].item<float>(), 0) << "logit " << i << ", x " << j;
    // The receptive field reaches the left neighbour and the pixel above.
    if (i % w > 0) dependent += g[i - 1].item<float>() > 0;
    if (i >= w) dependent += g[i - w].item<float>() > 0;
  }
  EXPECT_EQ(dependent, (d - h) + (d - w));
}

TEST(PixelCnnTest, ProbabilitiesSumToOneOverEveryImage) {
  // 3 x 4 = 12 pixels: all 4,096 images.
  for (bool batch_norm : {true, false}) {
    auto model = RandomModel(Spec(3, 4, 8, 2, 12, batch_norm), 5);
    std::vector<double> lp = model->LogProb(AllBinaryInputs(12)).value();
    double total = 0, max_p = 0;
    for (double v : lp) {
      total += std::exp(v);
      max_p = std::max(max_p, std::exp(v));
    }
    EXPECT_NEAR(total, 1.0, 1e-4);
    EXPECT_GT(max_p, 20.0 / 4096);  // far from uniform
  }
}

TEST(PixelCnnTest, PerDimensionTermsSumToLogProb) {
  auto model = RandomModel(Spec(4, 4), 6);
  auto& net = Net(*model);
  torch::NoGradGuard no_grad;
  auto x = RecordsToTensor(RandomBinary(20, 16, 7, 0.4));
  auto terms = net.PerDimensionLogProb(x);
  EXPECT_LT((terms.sum(1) - net.LogProb(x).to(torch::kDouble)).abs().max().item<double>(), 1e-4);
  EXPECT_EQ(net.FactorOrder().size(), 16u);
}

TEST(PixelCnnTest, HeadGradientsEqualAutograd) {
  torch::manual_seed(8);
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  // 600 rows: three chunks of the head, the last partial.
  auto r = torch::randn({600, 6}, opts).relu().requires_grad_(true);
  auto w1 = torch::randn({6, 10}, opts).requires_grad_(true);
  auto b1 = torch::randn({10}, opts).requires_grad_(true);
  auto w2 = torch::randn({10}, opts).requires_grad_(true);
  auto b2 = torch::randn({1}, opts).requires_grad_(true);
  auto weights = torch::randn({600}, opts);
  auto mine = PixelCnnHead(r, w1, b1, w2, b2);
  auto plain = torch::addmm(b1, r, w1).relu().mv(w2) + b2;
  EXPECT_LT((mine - plain).abs().max().item<double>(), 1e-12);
  auto g1 = torch::autograd::grad({(mine * mine * weights).sum()}, {r, w1, b1, w2, b2});
  auto g2 = torch::autograd::grad({(plain * plain * weights).sum()}, {r, w1, b1, w2, b2});
  for (size_t i = 0; i < g1.size(); ++i) {
    EXPECT_GT(g2[i].abs().max().item<double>(), 0) << i;
    EXPECT_LT((g1[i] - g2[i]).abs().max().item<double>(), 1e-9) << i;
  }
}

TEST(PixelCnnTest, CachedSamplerDrawsWhatAForwardPassPerPixelDraws) {
  auto model = RandomModel(Spec(4, 6, 8, 3), 9);
  auto& net = Net(*model);
  torch::manual_seed(10);
  auto u = torch::rand({200, 24});
  auto cached = net.SampleWithUniforms(u), reference = net.ReferenceSampleWithUniforms(u);
  // Identical up to a uniform within rounding of its probability (and what follows from it).
  const int64_t differing_records = (cached != reference).any(1).sum().item<int64_t>();
  EXPECT_LE(differing_records, 1);
  // The draws vary: a third of the pixels take both values over the records.
  auto mean = cached.mean(0);
  EXPECT_GE((mean > 0.02).logical_and(mean < 0.98).sum().item<int64_t>(), 8);
}

TEST(PixelCnnTest, SampleFrequenciesMatchExactProbabilities) {
  const int64_t dim = 6, outcomes = 64, n = 40000;
  auto model = RandomModel(Spec(2, 3, 8, 2), 11);
  const std::vector<double> counts = OutcomeCounts(model->Sample(n, 42).value().u8, n, dim);
  const std::vector<double> lp = model->LogProb(AllBinaryInputs(dim)).value();
  const ChiSquare c2 = PooledChiSquare(counts, lp, n);
  ASSERT_GE(c2.cells, 10);
  EXPECT_GT(c2.max_p, 3.0 / outcomes);
  EXPECT_LT(c2.statistic, ChiSquareQuantile999(c2.cells - 1)) << c2.cells << " cells";
  // Reproducible by seed.
  EXPECT_EQ(model->Sample(50, 42).value().u8, model->Sample(50, 42).value().u8);
  EXPECT_NE(model->Sample(50, 42).value().u8, model->Sample(50, 43).value().u8);
}

TEST(PixelCnnTest, TrainingLowersTheNll) {
  v1::ModelSpec spec = Spec(4, 4, 8, 2, 16);
  auto model = Model::Create(spec, {v1::DATA_KIND_BINARY, 16, 2}, 1).value();
  auto& net = Net(*model);
  auto x = RecordsToTensor(RandomBinary(512, 16, 12, 0.7));
  auto nll = [&] {
    net.eval();
    torch::NoGradGuard no_grad;
    return -net.LogProb(x).mean().item<double>();
  };
  const double before = nll();
  torch::optim::Adam opt(net.parameters(), torch::optim::AdamOptions(1e-2));
  net.train();
  for (int step = 0; step < 150; ++step) {
    opt.zero_grad();
    net.Loss(x.narrow(0, (step % 8) * 64, 64)).backward();
    opt.step();
  }
  // Copying the previous pixel with probability 0.7 is learnable from the left neighbour.
  EXPECT_LT(nll(), before - 1.0);
}

TEST(PixelCnnTest, BadSpecsAreRefusedWithTheirField) {
  const DataShape square{v1::DATA_KIND_BINARY, 784, 2}, odd{v1::DATA_KIND_BINARY, 30, 2};
  v1::ModelSpec defaults;
  defaults.set_family(v1::MODEL_FAMILY_PIXELCNN);
  auto resolved = ResolveModelSpec(defaults, square);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->pixelcnn().channels(), 48);
  EXPECT_EQ(resolved->pixelcnn().residual_blocks(), 10);
  EXPECT_EQ(resolved->pixelcnn().hidden_units(), 1248);
  EXPECT_TRUE(resolved->pixelcnn().batch_norm());
  // The reference architecture's parameter count (bench/reference/pixelcnn_pytorch.py) less the
  // 25 x 48 masked weights of the input kernel and 4 x 24 x 24 of each mask-B kernel, which the
  // reference holds but never uses.
  auto model = Model::Create(*resolved, square, 1).value();
  EXPECT_EQ(model->NumParameters(), 142513 - 25 * 48 - 10 * 4 * 24 * 24);

  auto status_of = [](v1::ModelSpec s, const DataShape& shape) {
    return ResolveModelSpec(s, shape).status();
  };
  auto st = status_of(defaults, odd);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("model.pixelcnn.height"), std::string::npos) << st;
  v1::ModelSpec s = defaults;
  s.mutable_pixelcnn()->set_height(5);
  s.mutable_pixelcnn()->set_width(7);
  st = status_of(s, odd);
  EXPECT_NE(st.message().find("height * width"), std::string::npos) << st;
  s.mutable_pixelcnn()->set_width(6);
  EXPECT_TRUE(status_of(s, odd).ok());
  s.mutable_pixelcnn()->set_channels(7);
  EXPECT_NE(status_of(s, odd).message().find("model.pixelcnn.channels"), std::string::npos);
  s.mutable_pixelcnn()->set_channels(8);
  s.mutable_regularization()->set_dropout(0.1);
  EXPECT_NE(status_of(s, odd).message().find("dropout"), std::string::npos);
  EXPECT_EQ(status_of(defaults, {v1::DATA_KIND_CONTINUOUS, 784, 0}).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace logp
