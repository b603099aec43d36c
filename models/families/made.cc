#include "models/families/made.h"

#include <algorithm>
#include <random>

#include "models/families/families.h"

namespace logp {
namespace F = torch::nn::functional;

MadeImpl::MadeImpl(int64_t dim, int64_t hidden_layers, int64_t hidden_units,
                   std::vector<int64_t> order, uint64_t mask_seed)
    : dim_(dim), order_(std::move(order)) {
  // Degrees: input variable order_[i] has degree i + 1; a hidden unit of degree k may see inputs
  // of degree <= k; output d (degree m_d) may see hidden units of degree < m_d.
  std::vector<int64_t> in_degree(dim);
  for (int64_t i = 0; i < dim; ++i) in_degree[order_[i]] = i + 1;
  std::mt19937_64 rng(mask_seed ^ 0x9E3779B97F4A7C15ull);
  std::vector<int64_t> prev = in_degree;
  int64_t prev_min = 1;
  const int64_t max_degree = std::max<int64_t>(dim - 1, 1);
  for (int64_t l = 0; l < hidden_layers; ++l) {
    std::vector<int64_t> deg(hidden_units);
    const int64_t lo = std::min(prev_min, max_degree);
    for (auto& d : deg) {
      d = lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(max_degree - lo + 1));
    }
    auto mask = torch::zeros({hidden_units, static_cast<int64_t>(prev.size())});
    auto acc = mask.accessor<float, 2>();
    for (int64_t k = 0; k < hidden_units; ++k) {
      for (size_t j = 0; j < prev.size(); ++j) acc[k][j] = deg[k] >= prev[j] ? 1.f : 0.f;
    }
    layers_.push_back(
        register_module("hidden" + std::to_string(l),
                        torch::nn::Linear(static_cast<int64_t>(prev.size()), hidden_units)));
    masks_.push_back(register_buffer("mask" + std::to_string(l), mask));
    prev = deg;
    prev_min = *std::min_element(deg.begin(), deg.end());
  }
  auto mask = torch::zeros({dim, static_cast<int64_t>(prev.size())});
  auto acc = mask.accessor<float, 2>();
  for (int64_t d = 0; d < dim; ++d) {
    for (size_t j = 0; j < prev.size(); ++j) acc[d][j] = in_degree[d] > prev[j] ? 1.f : 0.f;
  }
  layers_.push_back(
      register_module("output", torch::nn::Linear(static_cast<int64_t>(prev.size()), dim)));
  masks_.push_back(register_buffer("mask_out", mask));
}

torch::Tensor MadeImpl::Logits(const torch::Tensor& x) {
  torch::Tensor h = x;
  for (size_t l = 0; l < layers_.size(); ++l) {
    h = F::linear(h, layers_[l]->weight * masks_[l], layers_[l]->bias);
    if (l + 1 < layers_.size()) h = torch::relu(h);
  }
  return h;
}

torch::Tensor MadeImpl::LogProb(const torch::Tensor& x) {
  auto logits = Logits(x);
  return (x * logits - F::softplus(logits)).sum(1);
}

torch::Tensor MadeImpl::Sample(int64_t n, at::Generator& gen) {
  auto u = torch::rand({n, dim_}, gen);
  auto x = torch::zeros({n, dim_});
  for (int64_t i = 0; i < dim_; ++i) {
    const int64_t d = order_[i];
    auto p = torch::sigmoid(Logits(x).select(1, d));
    x.select(1, d).copy_((u.select(1, d) < p).to(torch::kFloat));
  }
  return x;
}

FamilyInfo MadeFamily() {
  FamilyInfo f;
  f.family = v1::MODEL_FAMILY_MADE;
  f.name = "made";
  f.kinds = {v1::DATA_KIND_BINARY};
  f.set_defaults = [](v1::ModelSpec* spec) {
    auto* m = spec->mutable_made();
    if (m->hidden_layers() == 0) m->set_hidden_layers(1);
    if (m->hidden_units() == 0) m->set_hidden_units(500);
    if (m->order() == v1::VARIABLE_ORDER_UNSPECIFIED) m->set_order(v1::VARIABLE_ORDER_NATURAL);
  };
  f.validate = [](const v1::ModelSpec& spec, const DataShape&) -> absl::Status {
    const auto& m = spec.made();
    auto st = CheckRange("model.made.hidden_layers", m.hidden_layers(), 1, 8);
    if (st.ok()) st = CheckRange("model.made.hidden_units", m.hidden_units(), 1, 8192);
    if (st.ok() && !v1::VariableOrder_IsValid(m.order())) {
      st = absl::InvalidArgumentError("model.made.order is not a known VariableOrder");
    }
    return st;
  };
  f.make = [](const v1::ModelSpec& spec, const DataShape& shape) {
    const auto& m = spec.made();
    return std::make_shared<MadeImpl>(shape.dim, m.hidden_layers(), m.hidden_units(),
                                      VariableOrder(m.order(), m.order_seed(), shape.dim),
                                      m.order_seed());
  };
  return f;
}

}  // namespace logp
