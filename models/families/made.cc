#include "models/families/made.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "models/families/ar_sampling.h"
#include "models/families/families.h"
#include "models/kernels.h"

namespace logp {
namespace F = torch::nn::functional;
namespace {

// Log-std bounds of continuous conditionals (see made.h).
constexpr double kMinLogStd = -7.0;
constexpr double kMaxLogStd = 7.0;

// Seed of mask m >= 1 (orders and connectivity), a splitmix64 step away from the user's seed.
uint64_t MaskSeed(uint64_t seed, int64_t m) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(m);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

torch::Tensor DegreeTensor(const std::vector<int64_t>& d) {
  return torch::tensor(d, torch::TensorOptions().dtype(torch::kLong));
}

}  // namespace

MadeDegrees DrawMadeDegrees(const std::vector<int64_t>& in_degree,
                            const std::vector<int64_t>& hidden_sizes,
                            const std::vector<int64_t>& out_degree, uint64_t seed) {
  MadeDegrees out;
  out.input = in_degree;
  out.output = out_degree;
  std::mt19937_64 rng(seed ^ 0x9E3779B97F4A7C15ull);
  const int64_t max_in =
      in_degree.empty() ? 1 : *std::max_element(in_degree.begin(), in_degree.end());
  const int64_t max_degree = std::max<int64_t>(max_in - 1, 1);
  int64_t prev_min = 1;
  for (int64_t units : hidden_sizes) {
    std::vector<int64_t> deg(units);
    const int64_t lo = std::min(prev_min, max_degree);
    for (auto& d : deg) {
      d = lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(max_degree - lo + 1));
    }
    prev_min = *std::min_element(deg.begin(), deg.end());
    out.hidden.push_back(std::move(deg));
  }
  return out;
}

std::vector<torch::Tensor> MadeMasks(const MadeDegrees& degrees) {
  std::vector<torch::Tensor> masks;
  torch::Tensor prev = DegreeTensor(degrees.input);
  for (const auto& layer : degrees.hidden) {
    torch::Tensor next = DegreeTensor(layer);
    masks.push_back(next.unsqueeze(1).ge(prev.unsqueeze(0)).to(torch::kFloat));
    prev = next;
  }
  masks.push_back(
      DegreeTensor(degrees.output).unsqueeze(1).gt(prev.unsqueeze(0)).to(torch::kFloat));
  return masks;
}

torch::Tensor MadeDirectMask(const std::vector<int64_t>& in_degree,
                             const std::vector<int64_t>& out_degree) {
  return DegreeTensor(out_degree)
      .unsqueeze(1)
      .gt(DegreeTensor(in_degree).unsqueeze(0))
      .to(torch::kFloat);
}

std::vector<int64_t> OrderDegrees(const std::vector<int64_t>& order, int64_t units_per_var) {
  const int64_t dim = static_cast<int64_t>(order.size());
  std::vector<int64_t> deg(dim * units_per_var);
  for (int64_t i = 0; i < dim; ++i) {
    for (int64_t u = 0; u < units_per_var; ++u) deg[order[i] * units_per_var + u] = i + 1;
  }
  return deg;
}

MadeImpl::MadeImpl(MadeConfig config) : config_(std::move(config)) {
  const int64_t dim = config_.dim;
  int64_t units_per_input = 1;
  switch (config_.kind) {
    case v1::DATA_KIND_CATEGORICAL:
      units_per_input = config_.num_categories;
      params_per_var_ = config_.num_categories;
      break;
    case v1::DATA_KIND_CONTINUOUS:
      params_per_var_ =
          config_.conditional == v1::CONDITIONAL_TYPE_MIXTURE ? 3 * config_.mixture_components : 2;
      break;
    default:
      params_per_var_ = 1;
  }
  in_units_ = dim * units_per_input;
  if (config_.order.empty()) config_.order = VariableOrder(v1::VARIABLE_ORDER_NATURAL, 0, dim);
  const std::vector<int64_t> hidden_sizes(config_.hidden_layers, config_.hidden_units);
  for (int64_t m = 0; m < config_.num_masks; ++m) {
    // Mask 0 keeps the chosen order and the user's seed (the single-mask MADE of before).
    const uint64_t seed = m == 0 ? config_.seed : MaskSeed(config_.seed, m);
    orders_.push_back(m == 0 ? config_.order : VariableOrder(v1::VARIABLE_ORDER_RANDOM, seed, dim));
    degrees_.push_back(DrawMadeDegrees(OrderDegrees(orders_[m], units_per_input), hidden_sizes,
                                       OrderDegrees(orders_[m], params_per_var_), seed));
  }
  int64_t prev = in_units_;
  for (int64_t l = 0; l < config_.hidden_layers; ++l) {
    layers_.push_back(register_module("hidden" + std::to_string(l),
                                      torch::nn::Linear(prev, config_.hidden_units)));
    prev = config_.hidden_units;
  }
  layers_.push_back(register_module("output", torch::nn::Linear(prev, dim * params_per_var_)));
  if (config_.direct_connections) {
    direct_ = register_module(
        "direct",
        torch::nn::Linear(torch::nn::LinearOptions(in_units_, dim * params_per_var_).bias(false)));
  }
  current_masks_ = MasksFor(0);
  FoldMasks();
}

void MadeImpl::FoldMasks() {
  if (!folded()) return;
  torch::NoGradGuard no_grad;
  const size_t n = layers_.size();
  for (size_t l = 0; l < n; ++l) layers_[l]->weight.mul_(current_masks_[l]);
  if (config_.direct_connections) direct_->weight.mul_(current_masks_[n]);
}

void MadeImpl::MaskGradients() {
  if (!folded()) return;
  torch::NoGradGuard no_grad;
  auto mask_grad = [](torch::Tensor& w, const torch::Tensor& mask) {
    if (w.grad().defined()) w.mutable_grad().mul_(mask);
  };
  const size_t n = layers_.size();
  for (size_t l = 0; l < n; ++l) mask_grad(layers_[l]->weight, current_masks_[l]);
  if (config_.direct_connections) mask_grad(direct_->weight, current_masks_[n]);
}

std::vector<torch::Tensor> MadeImpl::MasksFor(int64_t mask) const {
  if (mask == current_mask_ && !current_masks_.empty()) return current_masks_;
  std::vector<torch::Tensor> masks = MadeMasks(degrees_[mask]);
  if (config_.direct_connections) {
    masks.push_back(MadeDirectMask(degrees_[mask].input, degrees_[mask].output));
  }
  return masks;
}

void MadeImpl::BeforeStep(int64_t step) {
  const int64_t m = step % config_.num_masks;
  if (m == current_mask_) return;
  current_masks_.clear();
  current_mask_ = m;
  current_masks_ = MasksFor(m);
}

torch::Tensor MadeImpl::Encode(const torch::Tensor& x) const {
  if (config_.kind == v1::DATA_KIND_CATEGORICAL) {
    return F::one_hot(x.to(torch::kLong), config_.num_categories)
        .to(torch::kFloat)
        .reshape({x.size(0), in_units_});
  }
  return x.to(torch::kFloat);
}

torch::Tensor MadeImpl::Forward(const torch::Tensor& encoded, int64_t mask) {
  const std::vector<torch::Tensor> masks = MasksFor(mask);
  // Folded (one mask): the masked weights are already 0.
  auto Masked = [this](const torch::Tensor& w, const torch::Tensor& m) {
    return folded() ? w : w * m;
  };
  torch::Tensor h = encoded;
  const size_t hidden = layers_.size() - 1;
  for (size_t l = 0; l < hidden; ++l) {
    h = torch::relu(F::linear(h, Masked(layers_[l]->weight, masks[l]), layers_[l]->bias));
    h = Dropout(h, config_.dropout, is_training());
  }
  torch::Tensor out =
      F::linear(h, Masked(layers_[hidden]->weight, masks[hidden]), layers_[hidden]->bias);
  if (config_.direct_connections) {
    out = out + F::linear(encoded, Masked(direct_->weight, masks[hidden + 1]));
  }
  return out.reshape({encoded.size(0), config_.dim, params_per_var_});
}

torch::Tensor MadeImpl::Logits(const torch::Tensor& x) {
  return Forward(Encode(x), 0).select(2, 0);
}

torch::Tensor MadeImpl::LogLikelihoods(const torch::Tensor& params, const torch::Tensor& x) const {
  static const double kHalfLog2Pi = 0.5 * std::log(2.0 * M_PI);
  switch (config_.kind) {
    case v1::DATA_KIND_CATEGORICAL:
      return torch::log_softmax(params, 2).gather(2, x.to(torch::kLong).unsqueeze(2)).squeeze(2);
    case v1::DATA_KIND_CONTINUOUS: {
      if (config_.conditional == v1::CONDITIONAL_TYPE_MIXTURE) {
        const int64_t c = config_.mixture_components;
        auto log_w = torch::log_softmax(params.slice(2, 0, c), 2);
        auto mean = params.slice(2, c, 2 * c);
        auto log_std = params.slice(2, 2 * c, 3 * c).clamp(kMinLogStd, kMaxLogStd);
        auto z = (x.unsqueeze(2) - mean) * torch::exp(-log_std);
        return torch::logsumexp(log_w - kHalfLog2Pi - log_std - 0.5 * z * z, 2);
      }
      auto mean = params.select(2, 0);
      auto log_std = params.select(2, 1).clamp(kMinLogStd, kMaxLogStd);
      auto z = (x - mean) * torch::exp(-log_std);
      return -kHalfLog2Pi - log_std - 0.5 * z * z;
    }
    default: {
      auto logits = params.select(2, 0);
      return x * logits - F::softplus(logits);
    }
  }
}

torch::Tensor MadeImpl::LogProbWithMask(const torch::Tensor& x, int64_t mask) {
  // Scoring many binary records without gradients: the staircase products of training (a fresh
  // plan per call, so concurrent scoring calls share nothing mutable). Small batches keep the
  // dense products, which skip the per-call reordering of the weights.
  if (config_.kind == v1::DATA_KIND_BINARY && !is_training() && !torch::GradMode::is_enabled() &&
      x.size(0) >= kStairScoreRows) {
    const TrainPlan plan = MakePlan(mask, /*block_products=*/true);
    const StairPass pass =
        StairForwardPass(plan, MasksFor(mask), x.to(torch::kFloat).contiguous(), false);
    torch::Tensor nll = torch::empty({x.size(0)}, torch::kDouble);
    BernoulliNllRows(x.size(0), pass.logits.size(1), pass.logits.data_ptr<float>(),
                     pass.x_out.data_ptr<float>(), nll.data_ptr<double>());
    return nll.neg_();
  }
  return LogLikelihoods(Forward(Encode(x), mask), x).sum(1);
}

torch::Tensor MadeImpl::LogProb(const torch::Tensor& x) {
  if (config_.num_masks == 1) return LogProbWithMask(x, 0);
  std::vector<torch::Tensor> per_mask;
  for (int64_t m = 0; m < config_.num_masks; ++m) per_mask.push_back(LogProbWithMask(x, m));
  return LogMeanExp(torch::stack(per_mask, 0), 0);
}

torch::Tensor MadeImpl::PerDimensionLogProb(const torch::Tensor& x) {
  if (config_.num_masks != 1) return torch::Tensor();
  auto params = Forward(Encode(x), 0);
  if (config_.kind == v1::DATA_KIND_BINARY) {
    // In double from the float logits, as the scoring path sums them.
    auto l = params.select(2, 0).to(torch::kDouble);
    return x.to(torch::kDouble) * l - F::softplus(l);
  }
  return LogLikelihoods(params, x).to(torch::kDouble);
}

std::vector<int64_t> MadeImpl::FactorOrder() const {
  if (config_.num_masks != 1) return {};
  return orders_[0];
}

torch::Tensor MadeImpl::Loss(const torch::Tensor& x) {
  return -LogProbWithMask(x, current_mask_).mean();
}

size_t MadeImpl::InUnits(size_t weight) const {
  const size_t hidden = layers_.size() - 1;
  return weight <= hidden ? weight : 0;  // the direct weight reads the inputs
}

size_t MadeImpl::OutUnits(size_t weight) const {
  const size_t hidden = layers_.size() - 1;
  return weight <= hidden ? weight + 1 : hidden + 1;
}

MadeImpl::TrainPlan MadeImpl::MakePlan(int64_t mask, bool block_products) const {
  const MadeDegrees& deg = degrees_[mask];
  const size_t hidden = layers_.size() - 1;
  TrainPlan plan;
  plan.mask = mask;
  std::vector<const std::vector<int64_t>*> unit_degrees = {&deg.input};
  for (const auto& h : deg.hidden) unit_degrees.push_back(&h);
  unit_degrees.push_back(&deg.output);
  for (const std::vector<int64_t>* d : unit_degrees) {
    std::vector<int64_t> idx(d->size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
    if (block_products) {
      std::stable_sort(idx.begin(), idx.end(),
                       [&](int64_t a, int64_t b) { return (*d)[a] < (*d)[b]; });
    }
    UnitOrder u;
    for (size_t i = 0; i < idx.size(); ++i) {
      u.degrees.push_back((*d)[idx[i]]);
      if (idx[i] != static_cast<int64_t>(i)) u.identity = false;
    }
    if (!u.identity) {
      u.perm = torch::tensor(idx, torch::kLong);
      u.inv = torch::argsort(u.perm);
    }
    plan.units.push_back(std::move(u));
  }
  const size_t weights = layers_.size() + (config_.direct_connections ? 1 : 0);
  for (size_t w = 0; w < weights; ++w) {
    const std::vector<int64_t>& in = plan.units[InUnits(w)].degrees;
    const std::vector<int64_t>& out = plan.units[OutUnits(w)].degrees;
    // Hidden units read inputs of degree <= theirs; outputs (and direct) strictly lower.
    const bool strict = w >= hidden;
    const int64_t n = static_cast<int64_t>(out.size());
    // A few groups: each skips its masked tail, and the products stay large enough to run near
    // the matrix-multiply peak (4-8 groups measured best for 500 and 784 units).
    // Dense: one group reading every input.
    const int64_t num_groups =
        block_products ? std::max<int64_t>(1, std::min<int64_t>(6, n / 64)) : 1;
    std::vector<StairGroup> groups;
    for (int64_t g = 0; g < num_groups; ++g) {
      StairGroup gr{n * g / num_groups, n * (g + 1) / num_groups, 0};
      if (gr.end == gr.begin) continue;
      const int64_t top = out[gr.end - 1];  // the group's largest degree
      if (!block_products) {
        gr.prefix = static_cast<int64_t>(in.size());
      } else {
        gr.prefix = strict ? std::lower_bound(in.begin(), in.end(), top) - in.begin()
                           : std::upper_bound(in.begin(), in.end(), top) - in.begin();
      }
      // Forward and weight gradient; the input gradient too unless the input is the data.
      const int products = InUnits(w) == 0 ? 2 : 3;
      plan.flops_per_record += 2.0 * products * (gr.end - gr.begin) * gr.prefix;
      groups.push_back(gr);
    }
    plan.groups.push_back(std::move(groups));
  }
  return plan;
}

void MadeImpl::SetBlockProducts(bool on) {
  if (on == block_products_) return;
  block_products_ = on;
  plan_ = TrainPlan();
}

double MadeImpl::TrainingFlopsPerRecord(bool block_products) const {
  if (config_.kind != v1::DATA_KIND_BINARY) return 0;
  return MakePlan(0, block_products).flops_per_record;
}

namespace {

using Groups = std::vector<StairGroup>;

// out[:, group] += a[:, :prefix] w[group, :prefix]^T for every group (sorted coordinates).
void StairForward(torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& w,
                  const Groups& groups) {
  for (const auto& g : groups) {
    if (g.prefix == 0) continue;
    out.narrow(1, g.begin, g.end - g.begin)
        .addmm_(a.narrow(1, 0, g.prefix),
                w.narrow(0, g.begin, g.end - g.begin).narrow(1, 0, g.prefix).t());
  }
}

// The weight gradient d^T a, block by block (0 outside the groups' prefixes).
torch::Tensor StairWeightGrad(const torch::Tensor& d, const torch::Tensor& a,
                              const Groups& groups) {
  torch::Tensor g = torch::zeros({d.size(1), a.size(1)});
  for (const auto& gr : groups) {
    if (gr.prefix == 0) continue;
    g.narrow(0, gr.begin, gr.end - gr.begin)
        .narrow(1, 0, gr.prefix)
        .addmm_(d.narrow(1, gr.begin, gr.end - gr.begin).t(), a.narrow(1, 0, gr.prefix), 0, 1);
  }
  return g;
}

// The input gradient d w, block by block.
torch::Tensor StairInputGrad(const torch::Tensor& d, const torch::Tensor& w, const Groups& groups) {
  torch::Tensor da = torch::zeros({d.size(0), w.size(1)});
  for (const auto& gr : groups) {
    if (gr.prefix == 0) continue;
    da.narrow(1, 0, gr.prefix)
        .addmm_(d.narrow(1, gr.begin, gr.end - gr.begin),
                w.narrow(0, gr.begin, gr.end - gr.begin).narrow(1, 0, gr.prefix));
  }
  return da;
}

}  // namespace

MadeImpl::StairPass MadeImpl::StairForwardPass(const TrainPlan& plan,
                                               const std::vector<torch::Tensor>& masks,
                                               const torch::Tensor& x, bool dropout) {
  const int64_t batch = x.size(0);
  const size_t hidden = layers_.size() - 1;
  // Effective weight w (masked) in sorted coordinates.
  auto sorted_weight = [&](size_t w) {
    const torch::Tensor& p = w <= hidden ? layers_[w]->weight : direct_->weight;
    torch::Tensor e = folded() ? p : p * masks[w];
    const UnitOrder& out = plan.units[OutUnits(w)];
    if (!out.identity) e = e.index_select(0, out.perm);
    return SortedColumns(e, plan.units[InUnits(w)]);
  };
  auto with_bias = [&](size_t w) {
    const UnitOrder& out = plan.units[OutUnits(w)];
    const torch::Tensor& b = layers_[w]->bias;
    const torch::Tensor bs = out.identity ? b : b.index_select(0, out.perm);
    return bs.unsqueeze(0).expand({batch, bs.size(0)}).contiguous();
  };
  StairPass pass;
  pass.eff.resize(layers_.size());
  pass.act.resize(hidden + 1);
  pass.noise.resize(hidden);
  pass.act[0] = SortedColumns(x, plan.units[0]);
  for (size_t l = 0; l < hidden; ++l) {
    pass.eff[l] = sorted_weight(l);
    torch::Tensor h = with_bias(l);
    StairForward(h, pass.act[l], pass.eff[l], plan.groups[l]);
    h.clamp_min_(0);
    if (dropout && config_.dropout > 0) {
      // What Dropout draws, in the units' own order: the same draws from the noise generator
      // as Loss, so both drop the same units.
      torch::Tensor n = DropoutNoise(batch, h.size(1), config_.dropout);
      pass.noise[l] = SortedColumns(n, plan.units[l + 1]);
      h.mul_(pass.noise[l]);
    }
    pass.act[l + 1] = h;
  }
  pass.eff[hidden] = sorted_weight(hidden);
  pass.logits = with_bias(hidden);
  StairForward(pass.logits, pass.act[hidden], pass.eff[hidden], plan.groups[hidden]);
  if (config_.direct_connections) {
    StairForward(pass.logits, pass.act[0], sorted_weight(hidden + 1), plan.groups[hidden + 1]);
  }
  // The logits are in the outputs' sorted order: so must be the values they predict.
  pass.x_out = SortedColumns(x, plan.units[hidden + 1]);
  return pass;
}

torch::Tensor MadeImpl::SortedColumns(const torch::Tensor& t, const UnitOrder& u) {
  return u.identity ? t : t.index_select(1, u.perm);
}

torch::Tensor MadeImpl::LossAndGradients(const torch::Tensor& x_in) {
  if (config_.kind != v1::DATA_KIND_BINARY || !is_training()) return torch::Tensor();
  torch::NoGradGuard no_grad;
  if (plan_.mask != current_mask_) plan_ = MakePlan(current_mask_, block_products_);
  const TrainPlan& plan = plan_;
  const torch::Tensor x = x_in.to(torch::kFloat).contiguous();
  const int64_t batch = x.size(0);
  const size_t hidden = layers_.size() - 1;
  const std::vector<torch::Tensor>& masks = current_masks_;
  StairPass pass = StairForwardPass(plan, masks, x, /*dropout=*/true);
  // Gradients back to the parameters' coordinates, masked (d(w * m)/dw = m, and folded weights
  // must keep zero gradients where masked).
  auto set_weight_grad = [&](size_t w, torch::Tensor g) {
    const UnitOrder& out = plan.units[OutUnits(w)];
    const UnitOrder& in = plan.units[InUnits(w)];
    if (!out.identity) g = g.index_select(0, out.inv);
    if (!in.identity) g = g.index_select(1, in.inv);
    torch::Tensor& p = w <= hidden ? layers_[w]->weight : direct_->weight;
    p.mutable_grad() = g.mul_(masks[w]);
  };
  auto set_bias_grad = [&](size_t w, const torch::Tensor& d) {
    const UnitOrder& out = plan.units[OutUnits(w)];
    torch::Tensor g = d.sum(0);
    layers_[w]->bias.mutable_grad() = out.identity ? g : g.index_select(0, out.inv);
  };
  // Loss = mean over records of sum_d NLL; its gradient w.r.t. the logits is
  // (sigmoid(l) - x) / B.
  torch::Tensor g = torch::empty_like(pass.logits);
  const double nll_sum = BernoulliNllAndGrad(pass.logits.numel(), pass.logits.data_ptr<float>(),
                                             pass.x_out.data_ptr<float>(),
                                             1.0f / static_cast<float>(batch), g.data_ptr<float>());
  set_weight_grad(hidden, StairWeightGrad(g, pass.act[hidden], plan.groups[hidden]));
  set_bias_grad(hidden, g);
  if (config_.direct_connections) {
    set_weight_grad(hidden + 1, StairWeightGrad(g, pass.act[0], plan.groups[hidden + 1]));
  }
  // Gradient w.r.t. act[hidden].
  torch::Tensor d = StairInputGrad(g, pass.eff[hidden], plan.groups[hidden]);
  for (size_t l = hidden; l-- > 0;) {
    // Through dropout and relu: d becomes the gradient w.r.t. the pre-activation.
    ReluDropoutBackward(d.numel(), pass.act[l + 1].data_ptr<float>(),
                        pass.noise[l].defined() ? pass.noise[l].data_ptr<float>() : nullptr,
                        d.data_ptr<float>());
    set_weight_grad(l, StairWeightGrad(d, pass.act[l], plan.groups[l]));
    set_bias_grad(l, d);
    if (l > 0) d = StairInputGrad(d, pass.eff[l], plan.groups[l]);
  }
  return torch::scalar_tensor(nll_sum / static_cast<double>(batch), torch::kDouble);
}

torch::Tensor MadeImpl::DrawVariable(const torch::Tensor& params, at::Generator& gen) const {
  const int64_t n = params.size(0);
  switch (config_.kind) {
    case v1::DATA_KIND_CATEGORICAL:
      return torch::multinomial(torch::softmax(params, 1), 1, true, gen)
          .squeeze(1)
          .to(torch::kFloat);
    case v1::DATA_KIND_CONTINUOUS: {
      torch::Tensor mean, log_std;
      if (config_.conditional == v1::CONDITIONAL_TYPE_MIXTURE) {
        const int64_t c = config_.mixture_components;
        auto k = torch::multinomial(torch::softmax(params.slice(1, 0, c), 1), 1, true, gen);
        mean = params.slice(1, c, 2 * c).gather(1, k).squeeze(1);
        log_std = params.slice(1, 2 * c, 3 * c).gather(1, k).squeeze(1);
      } else {
        mean = params.select(1, 0);
        log_std = params.select(1, 1);
      }
      return mean + torch::exp(log_std.clamp(kMinLogStd, kMaxLogStd)) * torch::randn({n}, gen);
    }
    default:
      return (torch::rand({n}, gen) < torch::sigmoid(params.select(1, 0))).to(torch::kFloat);
  }
}

torch::Tensor MadeImpl::Sample(int64_t n, at::Generator& gen) {
  if (config_.kind == v1::DATA_KIND_BINARY) {
    return SampleIncrementally(MadeSamplingWeightsOf(*this), n, gen);
  }
  return ReferenceSample(n, gen);
}

torch::Tensor MadeImpl::ReferenceSample(int64_t n, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  auto x = torch::zeros({n, config_.dim});
  for (int64_t i = 0; i < config_.dim; ++i) {
    PollStop();
    const int64_t d = orders_[0][i];
    auto params = Forward(Encode(x), 0).select(1, d);
    x.select(1, d).copy_(DrawVariable(params, gen));
  }
  return x;
}

FamilyInfo MadeFamily() {
  FamilyInfo f;
  f.family = v1::MODEL_FAMILY_MADE;
  f.name = "made";
  f.kinds = {v1::DATA_KIND_BINARY, v1::DATA_KIND_CATEGORICAL, v1::DATA_KIND_CONTINUOUS};
  f.set_defaults = [](v1::ModelSpec* spec) {
    auto* m = spec->mutable_made();
    if (m->hidden_layers() == 0) m->set_hidden_layers(1);
    if (m->hidden_units() == 0) m->set_hidden_units(500);
    if (m->order() == v1::VARIABLE_ORDER_UNSPECIFIED) m->set_order(v1::VARIABLE_ORDER_NATURAL);
    if (m->num_masks() == 0) m->set_num_masks(1);
    if (m->conditional() == v1::CONDITIONAL_TYPE_UNSPECIFIED) {
      m->set_conditional(v1::CONDITIONAL_TYPE_GAUSSIAN);
    }
    if (m->mixture_components() == 0) m->set_mixture_components(5);
  };
  f.validate = [](const v1::ModelSpec& spec, const DataShape& shape) -> absl::Status {
    const auto& m = spec.made();
    auto st = CheckRange("model.made.hidden_layers", m.hidden_layers(), 1, 8);
    if (st.ok()) st = CheckRange("model.made.hidden_units", m.hidden_units(), 1, 8192);
    if (st.ok() && !v1::VariableOrder_IsValid(m.order())) {
      st = absl::InvalidArgumentError("model.made.order is not a known VariableOrder");
    }
    if (st.ok()) st = CheckRange("model.made.num_masks", m.num_masks(), 1, 64);
    if (st.ok() && !v1::ConditionalType_IsValid(m.conditional())) {
      st = absl::InvalidArgumentError("model.made.conditional is not a known ConditionalType");
    }
    if (st.ok()) st = CheckRange("model.made.mixture_components", m.mixture_components(), 1, 64);
    if (st.ok() && shape.kind == v1::DATA_KIND_CATEGORICAL) {
      // One-hot inputs and K logits per variable: D * K units on each side.
      st = CheckRange("categorical data's dim * num_categories for model.made",
                      static_cast<double>(shape.dim) * shape.num_categories, 1, 1 << 20);
    }
    return st;
  };
  f.make = [](const v1::ModelSpec& spec, const DataShape& shape) {
    const auto& m = spec.made();
    MadeConfig c;
    c.dim = shape.dim;
    c.kind = shape.kind;
    c.num_categories = shape.num_categories;
    c.hidden_layers = m.hidden_layers();
    c.hidden_units = m.hidden_units();
    c.order = VariableOrder(m.order(), m.order_seed(), shape.dim);
    c.seed = m.order_seed();
    c.num_masks = m.num_masks();
    c.direct_connections = m.direct_connections();
    c.conditional = m.conditional();
    c.mixture_components = m.mixture_components();
    c.dropout = spec.regularization().dropout();
    return std::make_shared<MadeImpl>(std::move(c));
  };
  f.footprint = [](const v1::ModelSpec& spec, const DataShape& shape) {
    const auto& m = spec.made();
    const int64_t d = shape.dim;
    int64_t in = d, per_var = 1;
    if (shape.kind == v1::DATA_KIND_CATEGORICAL) {
      in = d * shape.num_categories;
      per_var = shape.num_categories;
    } else if (shape.kind == v1::DATA_KIND_CONTINUOUS) {
      per_var = m.conditional() == v1::CONDITIONAL_TYPE_MIXTURE ? 3 * m.mixture_components() : 2;
    }
    const int64_t out = d * per_var;
    NetFootprint n;
    n.parameters = MlpParameters(in, m.hidden_layers(), m.hidden_units(), out) +
                   (m.direct_connections() ? in * out : 0);
    // Binary data trains on degree-sorted copies of the weights (LossAndGradients); several
    // masks multiply weights by masks, with gradients of the products.
    n.extra_parameter_copies = m.num_masks() > 1 ? 2 : 1;
    const bool dropout = spec.regularization().dropout() > 0;
    // Beyond the MLP: one-hot inputs, and the conditionals' log-likelihood terms per output.
    const int64_t extra = 4 * (in + 3 * out);
    n.step_bytes_per_record =
        MlpStepBytes(in, m.hidden_layers(), m.hidden_units(), out, dropout) + extra;
    n.eval_bytes_per_record = MlpEvalBytes(in, m.hidden_layers(), m.hidden_units(), out) + extra;
    return n;
  };
  return f;
}

}  // namespace logp
