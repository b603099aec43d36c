// Model zoo checks against exact truths: closed-form MLE, normalisation by enumeration of all
// 2^D inputs, and the autoregressive property by autograd.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "models/density_net.h"
#include "models/families/bernoulli.h"
#include "models/families/made.h"
#include "models/fused_adam.h"
#include "models/kernels.h"
#include "models/model.h"
#include "models/stats.h"
#include "models/train.h"
#include "tests/models/test_data.h"

namespace logp {
namespace {

double TotalProbability(const Model& model) {
  auto lp = model.LogProb(AllBinaryInputs(model.shape().dim));
  EXPECT_TRUE(lp.ok()) << lp.status();
  double total = 0;
  for (double v : *lp) total += std::exp(v);
  return total;
}

v1::ModelSpec Made(int layers, int units, bool random_order, uint64_t seed = 7) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_MADE);
  s.mutable_made()->set_hidden_layers(layers);
  s.mutable_made()->set_hidden_units(units);
  s.mutable_made()->set_order(random_order ? v1::VARIABLE_ORDER_RANDOM
                                           : v1::VARIABLE_ORDER_NATURAL);
  s.mutable_made()->set_order_seed(seed);
  return s;
}

v1::ModelSpec Bernoulli(double pseudo_count) {
  v1::ModelSpec s;
  s.set_family(v1::MODEL_FAMILY_BERNOULLI);
  s.mutable_bernoulli()->set_pseudo_count(pseudo_count);
  return s;
}

TrainResult MustTrain(const v1::ModelSpec& spec, const RecordMatrix& data, int epochs = 5) {
  auto split = SplitRecords(data, 0.2, 3).value();
  TrainOptions opts;
  opts.epochs = epochs;
  opts.batch_size = 32;
  opts.learning_rate = 1e-2;
  opts.seed = 11;
  auto r = Train(spec, split.first, split.second, opts, nullptr);
  EXPECT_TRUE(r.ok()) << r.status();
  return std::move(r).value();
}

TEST(BernoulliTest, ClosedFormFitEqualsEmpiricalMean) {
  const RecordMatrix data = RandomBinary(400, 12, 1);
  RecordMatrix empty_valid = RandomBinary(1, 12, 2);
  auto r = Train(Bernoulli(0), data, empty_valid, TrainOptions{}, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  auto* net = static_cast<BernoulliNetImpl*>(&NetOf(*r->model));
  auto p = net->Probabilities();
  for (int64_t c = 0; c < 12; ++c) {
    double ones = 0;
    for (int64_t row = 0; row < data.rows; ++row) ones += data.u8[row * 12 + c];
    ASSERT_GT(ones, 0);
    ASSERT_LT(ones, data.rows);
    EXPECT_NEAR(p[c].item<double>(), ones / data.rows, 1e-6) << "column " << c;
  }
}

TEST(BernoulliTest, PseudoCountSmoothsTowardsOneHalf) {
  RecordMatrix data = RecordMatrix::Empty(v1::DATA_KIND_BINARY, 2, 2).value();
  data.u8 = {1, 0, 1, 0, 1, 0};  // column 0 always 1, column 1 always 0
  data.rows = 3;
  auto r = Train(Bernoulli(1.0), data, data, TrainOptions{}, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  auto* net = static_cast<BernoulliNetImpl*>(&NetOf(*r->model));
  EXPECT_NEAR(net->Probabilities()[0].item<double>(), 4.0 / 5.0, 1e-6);
  EXPECT_NEAR(net->Probabilities()[1].item<double>(), 1.0 / 5.0, 1e-6);
}

TEST(NormalisationTest, BernoulliSumsToOneBeforeAndAfterTraining) {
  auto untrained = Model::Create(Bernoulli(0.5), {v1::DATA_KIND_BINARY, 10, 2}, 1).value();
  EXPECT_NEAR(TotalProbability(*untrained), 1.0, 1e-5);
  auto trained = MustTrain(Bernoulli(0.5), RandomBinary(300, 10, 4));
  EXPECT_NEAR(TotalProbability(*trained.model), 1.0, 1e-5);
}

TEST(NormalisationTest, MadeSumsToOneBeforeAndAfterTraining) {
  for (int layers : {1, 2}) {
    for (bool random_order : {false, true}) {
      SCOPED_TRACE(testing::Message() << "layers=" << layers << " random=" << random_order);
      auto untrained =
          Model::Create(Made(layers, 24, random_order), {v1::DATA_KIND_BINARY, 10, 2}, 5).value();
      EXPECT_NEAR(TotalProbability(*untrained), 1.0, 1e-5);
      auto trained = MustTrain(Made(layers, 24, random_order), RandomBinary(300, 10, 6, 0.7));
      EXPECT_NEAR(TotalProbability(*trained.model), 1.0, 1e-5);
    }
  }
}

TEST(MadeTest, OutputDependsOnlyOnEarlierInputs) {
  const int64_t d = 9;
  auto model = Model::Create(Made(2, 32, true, 99), {v1::DATA_KIND_BINARY, d, 2}, 3).value();
  auto* made = static_cast<MadeImpl*>(&NetOf(*model));
  std::vector<int64_t> position(d);
  for (int64_t i = 0; i < d; ++i) position[made->order()[i]] = i;
  ASSERT_NE(made->order(), std::vector<int64_t>({0, 1, 2, 3, 4, 5, 6, 7, 8}));
  torch::manual_seed(0);
  auto x = torch::rand({4, d}).requires_grad_(true);
  auto logits = made->Logits(x);
  int64_t nonzero_allowed = 0;
  for (int64_t i = 0; i < d; ++i) {
    auto g = torch::autograd::grad({logits.select(1, i).sum()}, {x}, {}, true)[0];
    for (int64_t j = 0; j < d; ++j) {
      const double mag = g.select(1, j).abs().sum().item<double>();
      if (position[j] >= position[i]) {
        EXPECT_EQ(mag, 0.0) << "output " << i << " depends on input " << j;
      } else if (mag > 0) {
        ++nonzero_allowed;
      }
    }
  }
  // The property is not satisfied vacuously: earlier inputs do reach later outputs.
  EXPECT_GT(nonzero_allowed, d);
}

TEST(MadeTest, LearnsStructureTheIndependentModelCannot) {
  const RecordMatrix data = RandomBinary(2000, 10, 8, 0.8);
  auto split = SplitRecords(data, 0.25, 1).value();
  TrainOptions opts;
  opts.epochs = 20;
  opts.batch_size = 50;
  opts.learning_rate = 1e-2;
  auto made = Train(Made(1, 32, false), split.first, split.second, opts, nullptr);
  auto bern = Train(Bernoulli(0.5), split.first, split.second, opts, nullptr);
  ASSERT_TRUE(made.ok() && bern.ok());
  EXPECT_LT(made->best_validation_nll, bern->best_validation_nll - 0.5);
}

TEST(ModelTest, SerializeRoundTripKeepsScores) {
  auto trained = MustTrain(Made(1, 16, true), RandomBinary(200, 10, 9, 0.5));
  auto bytes = trained.model->Serialize();
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto loaded = Model::Deserialize(*bytes);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const RecordMatrix x = RandomBinary(50, 10, 10);
  auto a = trained.model->LogProb(x).value(), b = (*loaded)->LogProb(x).value();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]);
  EXPECT_EQ(absl::StatusCode::kDataLoss, Model::Deserialize("garbage").status().code());
}

// Found by fuzz/model_fuzzer: LibTorch loads any tensor in place of a weight, and sizes a storage
// by what the pickle declares rather than by the record it read.
TEST(ModelTest, DeserializeRefusesWeightsTheArchitectureCannotUse) {
  // A weight whose storage claims 60 bytes over a 24-byte record (the fuzzer's input, after its
  // mode byte): scoring and serialising read past the record.
  std::ifstream in(
      std::string(LOGP_SOURCE_DIR) + "/fuzz/corpus/model/regress_storage_beyond_record",
      std::ios::binary);
  const std::string input((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(input.size(), 1u);
  auto bad_storage = Model::Deserialize(input.substr(1));
  EXPECT_EQ(bad_storage.status().code(), absl::StatusCode::kDataLoss) << bad_storage.status();

  // A D = 6 Bernoulli file whose header declares D = 7: its logits have the wrong shape.
  v1::ModelSpec spec;
  spec.set_family(v1::MODEL_FAMILY_BERNOULLI);
  std::string bytes =
      Model::Create(spec, DataShape{v1::DATA_KIND_BINARY, 6, 2}, 1).value()->Serialize().value();
  uint32_t spec_len;
  std::memcpy(&spec_len, bytes.data() + 8, 4);
  const int64_t dim = 7;
  bytes.replace(12 + spec_len + 4, 8, reinterpret_cast<const char*>(&dim), 8);
  auto bad_shape = Model::Deserialize(bytes);
  EXPECT_EQ(bad_shape.status().code(), absl::StatusCode::kDataLoss) << bad_shape.status();
  EXPECT_NE(bad_shape.status().message().find("has shape [6], expected [7]"), std::string::npos)
      << bad_shape.status();

  // The D = 6 file declaring K = 65536 for its binary data: loaded, it could never score.
  const int64_t six = 6;
  bytes.replace(12 + spec_len + 4, 8, reinterpret_cast<const char*>(&six), 8);
  ASSERT_TRUE(Model::Deserialize(bytes).ok());
  const int32_t k = 65536;
  bytes.replace(12 + spec_len + 12, 4, reinterpret_cast<const char*>(&k), 4);
  EXPECT_EQ(Model::Deserialize(bytes).status().code(), absl::StatusCode::kDataLoss);
}

TEST(ModelTest, SamplesAreReproducibleBySeed) {
  auto model = MustTrain(Made(1, 16, false), RandomBinary(200, 10, 12, 0.5)).model;
  auto a = model->Sample(40, 5).value(), b = model->Sample(40, 5).value(),
       c = model->Sample(40, 6).value();
  EXPECT_EQ(a.u8, b.u8);
  EXPECT_NE(a.u8, c.u8);
  EXPECT_EQ(a.rows, 40);
  for (uint8_t v : a.u8) EXPECT_LE(v, 1);
}

TEST(ModelTest, SampleFrequenciesMatchScoredProbabilities) {
  // A small model's samples follow exp(log p): chi-square over all 2^4 outcomes.
  auto model = MustTrain(Made(1, 8, false), RandomBinary(300, 4, 13, 0.6)).model;
  const int64_t n = 20000;
  auto s = model->Sample(n, 42).value();
  std::vector<double> counts(16, 0);
  for (int64_t r = 0; r < n; ++r) {
    int idx = 0;
    for (int c = 0; c < 4; ++c) idx |= s.u8[r * 4 + c] << c;
    counts[idx] += 1;
  }
  auto lp = model->LogProb(AllBinaryInputs(4)).value();
  double chi2 = 0;
  for (int i = 0; i < 16; ++i) {
    const double expected = n * std::exp(lp[i]);
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  // 15 degrees of freedom: P(chi2 > 37.7) = 0.001.
  EXPECT_LT(chi2, 37.7);
}

TEST(ModelTest, RejectsRecordsOfTheWrongShape) {
  auto model = Model::Create(Made(1, 8, false), {v1::DATA_KIND_BINARY, 10, 2}, 1).value();
  EXPECT_EQ(absl::StatusCode::kInvalidArgument,
            model->LogProb(RandomBinary(3, 11, 1)).status().code());
}

TEST(SpecTest, CodesNameTheProblem) {
  const DataShape binary{v1::DATA_KIND_BINARY, 10, 2};
  const DataShape continuous{v1::DATA_KIND_CONTINUOUS, 10, 0};
  EXPECT_TRUE(ResolveModelSpec(Made(1, 10, false), binary).ok());
  // MADE models every kind (continuous with Gaussian conditionals by default).
  EXPECT_TRUE(ResolveModelSpec(Made(1, 10, false), continuous).ok());
  EXPECT_EQ(absl::StatusCode::kFailedPrecondition,
            ResolveModelSpec(Bernoulli(0), continuous).status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument,
            ResolveModelSpec(v1::ModelSpec(), binary).status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument,
            ResolveModelSpec(Made(9, 10, false), binary).status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument,
            ResolveModelSpec(Bernoulli(-1), binary).status().code());
  v1::ModelSpec unknown;
  unknown.set_family(static_cast<v1::ModelFamily>(77));
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, ResolveModelSpec(unknown, binary).status().code());
}

class StopAfter : public TrainObserver {
 public:
  explicit StopAfter(int n) : n_(n) {}
  bool StopRequested() override { return polls_++ >= n_; }
  void OnEpoch(const v1::EpochSummary&) override { ++epochs_; }
  int polls_ = 0, n_, epochs_ = 0;
};

TEST(TrainTest, StopsAtAStepBoundaryWhenAsked) {
  StopAfter observer(3);
  TrainOptions opts;
  opts.epochs = 100;
  opts.batch_size = 10;
  auto data = RandomBinary(200, 10, 1);
  auto r = Train(Made(1, 8, false), data, data, opts, &observer);
  EXPECT_EQ(absl::StatusCode::kCancelled, r.status().code());
  EXPECT_EQ(observer.polls_, 4);
  EXPECT_EQ(observer.epochs_, 0);
}

// FusedAdam's one-pass update is Adam's: same parameters after several steps (with and without
// weight decay), and its state saves and loads as Adam's.
TEST(FusedAdamTest, MatchesTorchAdamAndSharesItsState) {
  for (double wd : {0.0, 0.01}) {
    torch::manual_seed(3);
    auto a = torch::randn({300, 70}).requires_grad_(true);
    auto b = a.detach().clone().requires_grad_(true);
    auto opts = torch::optim::AdamOptions(1e-2).weight_decay(wd);
    torch::optim::Adam reference({a}, opts);
    FusedAdam fused({b}, opts);
    for (int step = 0; step < 25; ++step) {
      auto g = torch::randn({300, 70}) * (step + 1);
      a.mutable_grad() = g.clone();
      b.mutable_grad() = g.clone();
      reference.step();
      fused.step();
    }
    EXPECT_LT((a - b).abs().max().item<double>(), 1e-5) << "weight decay " << wd;
    EXPECT_GT((a - a.detach().clone().zero_()).abs().max().item<double>(), 0.1);
    // Fused state -> Adam: the next steps still agree.
    torch::serialize::OutputArchive out;
    fused.save(out);
    std::ostringstream bytes;
    out.save_to(bytes);
    auto c = b.detach().clone().requires_grad_(true);
    torch::optim::Adam restored({c}, opts);
    torch::serialize::InputArchive in;
    std::istringstream read(bytes.str());
    in.load_from(read);
    restored.load(in);
    for (int step = 0; step < 5; ++step) {
      auto g = torch::randn({300, 70});
      b.mutable_grad() = g.clone();
      c.mutable_grad() = g.clone();
      fused.step();
      restored.step();
    }
    EXPECT_LT((b - c).abs().max().item<double>(), 1e-5) << "weight decay " << wd;
  }
}

// The Bernoulli NLL kernel against the closed form in double precision, computed without
// cancellation (softplus of the logit signed by the outcome), from tiny to huge logits.
TEST(KernelsTest, BernoulliNllAndGradMatchClosedForm) {
  std::vector<float> logits = {0,   1e-8f, -1e-8f, 1e-3f, -1e-3f, 0.5f, -0.5f, 17,   -17,  30,
                               -30, 60,    -60,    88,    -88,    100,  -100,  1e4f, -1e4f};
  for (int i = 0; i <= 2000; ++i) logits.push_back(-40 + 80.0f * i / 2000);
  std::vector<float> l, x;
  for (float v : logits) {
    for (float o : {0.0f, 1.0f}) l.push_back(v), x.push_back(o);
  }
  const int64_t n = static_cast<int64_t>(l.size());  // not a multiple of the 16 lanes
  std::vector<float> grad(n);
  const double scale = 0.25;
  const double total = BernoulliNllAndGrad(n, l.data(), x.data(), scale, grad.data());
  double expected_total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double t = x[i] > 0.5 ? -static_cast<double>(l[i]) : l[i];  // NLL = softplus(t)
    const double nll = std::max(t, 0.0) + std::log1p(std::exp(-std::fabs(t)));
    const double p_other = 1 / (1 + std::exp(-t));  // sigmoid(l) - x = +-(1 - p(x | l))
    const double g = (x[i] > 0.5 ? -p_other : p_other) * scale;
    expected_total += nll;
    float one_grad;
    const double one = BernoulliNllAndGrad(1, &l[i], &x[i], scale, &one_grad);
    // Relative error 1e-6, or absolute 2e-38 where the truth is below float's normal range.
    EXPECT_LE(std::fabs(one - nll), std::max(1e-6 * nll, 2e-38))
        << "l = " << l[i] << ", x = " << x[i];
    EXPECT_LE(std::fabs(grad[i] - g), std::max(1e-6 * std::fabs(g), 2e-38))
        << "l = " << l[i] << ", x = " << x[i];
    EXPECT_EQ(one_grad, grad[i]);
  }
  EXPECT_LE(std::fabs(total - expected_total), 1e-6 * expected_total);
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    std::vector<float> lb(40, 0.5f), xb(40, 1.0f), gb(40);
    lb[37] = bad;
    EXPECT_FALSE(std::isfinite(BernoulliNllAndGrad(40, lb.data(), xb.data(), 1, gb.data()))) << bad;
  }
}

TEST(KernelsTest, BernoulliNllRowsSumsEachRow) {
  const int64_t rows = 7, cols = 37;
  std::vector<float> l(rows * cols), x(rows * cols), g(cols);
  for (int64_t i = 0; i < rows * cols; ++i) {
    l[i] = static_cast<float>((i * 37 % 101) - 50) * 0.3f;
    x[i] = (i * 13 % 7) < 3 ? 1.0f : 0.0f;
  }
  std::vector<double> nll(rows);
  BernoulliNllRows(rows, cols, l.data(), x.data(), nll.data());
  for (int64_t r = 0; r < rows; ++r) {
    const double one = BernoulliNllAndGrad(cols, &l[r * cols], &x[r * cols], 1, g.data());
    EXPECT_NEAR(nll[r], one, 1e-5 * one) << "row " << r;
  }
}

TEST(KernelsTest, ReluDropoutBackwardPassesGradientWhereTheUnitFired) {
  const std::vector<float> a = {0, 2, 0, 3, 1e-30f}, noise = {0, 2, 2, 2, 2};
  std::vector<float> d = {1, 2, 3, 4, 5};
  ReluDropoutBackward(5, a.data(), noise.data(), d.data());
  EXPECT_EQ(d, (std::vector<float>{0, 4, 0, 8, 10}));
  d = {1, 2, 3, 4, 5};
  ReluDropoutBackward(5, a.data(), nullptr, d.data());
  EXPECT_EQ(d, (std::vector<float>{0, 2, 0, 4, 5}));
}

// MADE's hand-written training step is autograd's: the same loss and the same (masked)
// gradients for every configuration it serves (layers, several masks, direct connections,
// dropout with the same draws), and no fast path for the data kinds it does not serve.
TEST(MadeTest, HandWrittenGradientsMatchAutograd) {
  struct Case {
    int layers, masks;
    bool direct, random_order;
    double dropout;
    int64_t dim = 12, units = 20;  // >= 128 units: several blocks per weight
  };
  for (const Case c :
       {Case{1, 1, false, false, 0}, Case{2, 1, false, true, 0}, Case{1, 3, true, false, 0},
        Case{2, 2, true, true, 0.3}, Case{1, 1, true, false, 0, 200, 300},
        Case{2, 2, false, true, 0.2, 130, 192}}) {
    SCOPED_TRACE(absl::StrCat("layers ", c.layers, " masks ", c.masks, " direct ", c.direct,
                              " dropout ", c.dropout, " dim ", c.dim, " units ", c.units));
    const DataShape shape{v1::DATA_KIND_BINARY, c.dim, 2};
    v1::ModelSpec spec = Made(c.layers, c.units, c.random_order);
    spec.mutable_made()->set_num_masks(c.masks);
    spec.mutable_made()->set_direct_connections(c.direct);
    spec.mutable_regularization()->set_dropout(c.dropout);
    auto model = Model::Create(spec, shape, /*seed=*/4);
    ASSERT_TRUE(model.ok()) << model.status();
    auto& net = *&NetOf(**model);
    net.train();
    net.BeforeStep(1);  // mask 1 of several
    torch::manual_seed(21);
    const torch::Tensor x = (torch::rand({37, c.dim}) < 0.4).to(torch::kFloat);
    torch::manual_seed(5);
    const torch::Tensor loss = net.Loss(x);
    for (auto& p : net.parameters()) p.mutable_grad().reset();
    loss.backward();
    net.MaskGradients();
    std::vector<torch::Tensor> expected;
    for (auto& p : net.parameters()) expected.push_back(p.grad().clone());
    for (auto& p : net.parameters()) p.mutable_grad().reset();
    torch::Tensor fast;
    for (bool blocks : {false, true}) {  // dense products, then masked blocks skipped
      SCOPED_TRACE(blocks ? "blocks" : "dense");
      net.SetBlockProducts(blocks);
      for (auto& p : net.parameters()) p.mutable_grad().reset();
      torch::manual_seed(5);
      fast = net.LossAndGradients(x);
      ASSERT_TRUE(fast.defined());
      EXPECT_NEAR(fast.item<double>(), loss.item<double>(), 1e-5 * loss.item<double>());
      const auto params = net.parameters();
      ASSERT_EQ(params.size(), expected.size());
      for (size_t i = 0; i < params.size(); ++i) {
        ASSERT_TRUE(params[i].grad().defined()) << "parameter " << i;
        EXPECT_GT(expected[i].abs().max().item<double>(), 0) << "parameter " << i;
        EXPECT_TRUE(torch::allclose(params[i].grad(), expected[i], 1e-4, 1e-6))
            << "parameter " << i << ": max difference "
            << (params[i].grad() - expected[i]).abs().max().item<double>();
      }
    }
    // The blocks skip masked connections only: between the allowed connections' FLOPs and the
    // dense product's (forward, weight gradient, and input gradient past the first layer).
    double allowed = 0, dense = 0;
    const auto named = net.named_parameters();
    int64_t layer = 0;
    for (const auto& p : named) {
      if (p.key().find("weight") == std::string::npos) continue;
      const bool reads_data = layer == 0 || p.key().find("direct") != std::string::npos;
      const int products = reads_data ? 2 : 3;
      if (p.key().find("direct") == std::string::npos) ++layer;
      allowed += 2.0 * products * (p.value() != 0).sum().item<double>();
      dense += 2.0 * products * p.value().numel();
    }
    EXPECT_EQ(net.TrainingFlopsPerRecord(false), dense);
    if (c.masks == 1) {  // folded: the weights are 0 exactly where masked
      EXPECT_GE(net.TrainingFlopsPerRecord(true), allowed);
      EXPECT_LT(net.TrainingFlopsPerRecord(true), dense);
    }
    if (c.dropout > 0) {  // the draws matter: without them the loss differs
      torch::manual_seed(6);
      EXPECT_GT(std::fabs(net.LossAndGradients(x).item<double>() - fast.item<double>()), 1e-3);
    }
  }
  auto categorical = Model::Create(Made(1, 8, false), {v1::DATA_KIND_CATEGORICAL, 4, 3}, 1);
  ASSERT_TRUE(categorical.ok());
  auto& cat_net = *&NetOf(**categorical);
  cat_net.train();
  EXPECT_FALSE(cat_net.LossAndGradients(torch::zeros({5, 4})).defined());
  for (const auto& p : cat_net.parameters()) EXPECT_FALSE(p.grad().defined());
}

// Scoring a large batch of binary records (the staircase products) agrees with scoring it in
// small batches (dense products), for several masks, direct connections and a random order.
TEST(MadeTest, StaircaseScoringMatchesDenseScoring) {
  for (int masks : {1, 3}) {
    v1::ModelSpec spec = Made(2, 192, /*random_order=*/masks > 1);
    spec.mutable_made()->set_num_masks(masks);
    spec.mutable_made()->set_direct_connections(true);
    auto model = Model::Create(spec, {v1::DATA_KIND_BINARY, 130, 2}, /*seed=*/8);
    ASSERT_TRUE(model.ok()) << model.status();
    const RecordMatrix data = RandomBinary(300, 130, 5, 0.3);
    const std::vector<double> whole = (*model)->LogProb(data).value();  // one batch of 300
    ASSERT_EQ(whole.size(), 300u);
    for (int64_t begin = 0; begin < 300; begin += 100) {  // batches of 100
      RecordMatrix part = RecordMatrix::Empty(v1::DATA_KIND_BINARY, 130, 2).value();
      for (int64_t r = begin; r < begin + 100; ++r) part.AppendRow(data, r);
      const std::vector<double> small = (*model)->LogProb(part).value();
      for (int64_t r = 0; r < 100; ++r) {
        EXPECT_NEAR(whole[begin + r], small[r], 1e-5 * std::fabs(small[r]))
            << "masks " << masks << ", record " << begin + r;
      }
    }
  }
}

// A one-mask MADE keeps its mask in the weights: the masked weights are exactly 0 after
// construction, stay exactly 0 through training with weight decay, and a file whose masked
// weights are not 0 (as written before masks were folded) is folded on load and scores as before.
TEST(MadeTest, FoldedMaskStaysInTheWeights) {
  auto data = RandomBinary(300, 10, 4, 0.5);
  auto weights_of = [](const Model& m) {
    std::vector<torch::Tensor> w;
    for (const auto& p : NetOf(m).named_parameters()) {
      if (p.key().find("weight") != std::string::npos) w.push_back(p.value().detach().clone());
    }
    return w;
  };
  const DataShape shape{v1::DATA_KIND_BINARY, 10, 2};
  auto fresh = Model::Create(Made(2, 16, false), shape, /*seed=*/9);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  const std::vector<torch::Tensor> initial = weights_of(**fresh);
  ASSERT_EQ(initial.size(), 3u);
  TrainOptions opts;
  opts.epochs = 3;
  opts.seed = 9;  // the same initial weights
  opts.weight_decay = 0.01;
  auto r = Train(Made(2, 16, false), data, data, opts, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<torch::Tensor> trained = weights_of(*r->model);
  for (size_t l = 0; l < initial.size(); ++l) {
    const auto masked = initial[l] == 0;  // random initial weights are 0 only where masked
    EXPECT_GT(masked.sum().item<int64_t>(), 0) << "layer " << l;
    EXPECT_EQ(trained[l].masked_select(masked).abs().max().item<float>(), 0.0f) << "layer " << l;
    EXPECT_GT((trained[l] - initial[l]).abs().max().item<float>(), 1e-3f) << "layer " << l;
  }
  const std::vector<double> before = r->model->LogProb(data).value();
  {
    torch::NoGradGuard no_grad;
    for (const auto& p : NetOf(*r->model).named_parameters()) {
      if (p.key().find("weight") != std::string::npos) {
        p.value().add_((p.value() == 0).to(torch::kFloat) * 5.0);  // "unfolded" garbage
      }
    }
  }
  auto bytes = r->model->Serialize();
  ASSERT_TRUE(bytes.ok());
  auto loaded = Model::Deserialize(*bytes);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const std::vector<double> after = (*loaded)->LogProb(data).value();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i) EXPECT_NEAR(after[i], before[i], 1e-5);
}

TEST(SplitTest, HoldsOutTheFractionAndKeepsEveryRecordOnce) {
  auto data = RandomBinary(100, 5, 1);
  auto split = SplitRecords(data, 0.1, 7).value();
  EXPECT_EQ(split.second.rows, 10);
  EXPECT_EQ(split.first.rows, 90);
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, SplitRecords(data, 1.0, 7).status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, SplitRecords(data, 0.001, 7).status().code());
}

// Splitting bit-packed data selects the same records: the training part stays packed and equals
// the packed training part of the unpacked data; the validation part is the same bytes.
TEST(SplitTest, PackedDataSplitsIntoTheSameRecords) {
  auto data = RandomBinary(100, 11, 1);
  RecordMatrix packed = data;
  PackBits(&packed);
  auto plain = SplitRecords(data, 0.2, 7).value();
  auto from_packed = SplitRecords(packed, 0.2, 7).value();
  ASSERT_TRUE(from_packed.first.packed());
  EXPECT_EQ(from_packed.first.rows, 80);
  PackBits(&plain.first);
  EXPECT_EQ(from_packed.first.bits, plain.first.bits);
  EXPECT_FALSE(from_packed.second.packed());
  EXPECT_EQ(from_packed.second.rows, 20);
  EXPECT_EQ(from_packed.second.u8, plain.second.u8);
}

TEST(StatsTest, MeanStandardErrorAndBitsPerDim) {
  // NLLs 1, 2, 3, 4: mean 2.5, sample sd sqrt(5/3), se = sd / 2.
  auto s = SummarizeLogProbs({-1, -2, -3, -4}, 2);
  EXPECT_DOUBLE_EQ(s.mean_nll, 2.5);
  EXPECT_NEAR(s.standard_error, std::sqrt(5.0 / 3.0) / 2.0, 1e-12);
  EXPECT_NEAR(s.ci95_low, 2.5 - 1.96 * s.standard_error, 1e-12);
  EXPECT_NEAR(s.bits_per_dim, 2.5 / (2 * std::log(2.0)), 1e-12);
}

}  // namespace
}  // namespace logp
