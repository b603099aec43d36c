// Model families: Bernoulli and MADE, and the spec checks and factory that choose between them.
#include <random>

#include "absl/strings/str_cat.h"
#include "models/density_net.h"

namespace logp {
namespace F = torch::nn::functional;

// ---------------------------------------------------------------- specs

v1::ModelSpec ModelSpecWithDefaults(const v1::ModelSpec& spec) {
  v1::ModelSpec s = spec;
  if (s.family() == v1::MODEL_FAMILY_MADE) {
    auto* m = s.mutable_made();
    if (m->hidden_layers() == 0) m->set_hidden_layers(1);
    if (m->hidden_units() == 0) m->set_hidden_units(500);
    if (m->order() == v1::VARIABLE_ORDER_UNSPECIFIED) m->set_order(v1::VARIABLE_ORDER_NATURAL);
  }
  return s;
}

absl::Status ValidateModelSpec(const v1::ModelSpec& raw, const DataShape& shape) {
  const v1::ModelSpec spec = ModelSpecWithDefaults(raw);
  auto needs_binary = [&](const char* family) -> absl::Status {
    if (shape.kind != v1::DATA_KIND_BINARY) {
      return absl::FailedPreconditionError(absl::StrCat("model family ", family,
                                                        " does not support ", KindName(shape.kind),
                                                        " data (it models binary data)"));
    }
    return absl::OkStatus();
  };
  switch (spec.family()) {
    case v1::MODEL_FAMILY_BERNOULLI: {
      const double a = spec.bernoulli().pseudo_count();
      if (!(a >= 0) || !std::isfinite(a)) {
        return absl::InvalidArgumentError("model.bernoulli.pseudo_count must be finite and >= 0");
      }
      return needs_binary("bernoulli");
    }
    case v1::MODEL_FAMILY_MADE: {
      const auto& m = spec.made();
      if (m.hidden_layers() < 1 || m.hidden_layers() > 8) {
        return absl::InvalidArgumentError(
            absl::StrCat("model.made.hidden_layers must be in [1, 8], got ", m.hidden_layers()));
      }
      if (m.hidden_units() < 1 || m.hidden_units() > 8192) {
        return absl::InvalidArgumentError(
            absl::StrCat("model.made.hidden_units must be in [1, 8192], got ", m.hidden_units()));
      }
      if (!v1::VariableOrder_IsValid(m.order())) {
        return absl::InvalidArgumentError("model.made.order is not a known VariableOrder");
      }
      return needs_binary("made");
    }
    case v1::MODEL_FAMILY_UNSPECIFIED:
      return absl::InvalidArgumentError("model.family is required");
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("model.family ", static_cast<int>(spec.family()), " is not known"));
  }
}

std::vector<int64_t> MadeOrder(const v1::MadeParams& params, int64_t dim) {
  std::vector<int64_t> order(dim);
  for (int64_t i = 0; i < dim; ++i) order[i] = i;
  if (params.order() == v1::VARIABLE_ORDER_RANDOM) {
    std::mt19937_64 rng(params.order_seed());
    for (int64_t i = dim - 1; i > 0; --i) {  // Fisher-Yates, portable across platforms
      std::swap(order[i], order[rng() % static_cast<uint64_t>(i + 1)]);
    }
  }
  return order;
}

absl::StatusOr<std::shared_ptr<DensityNet>> MakeDensityNet(const v1::ModelSpec& raw,
                                                           const DataShape& shape) {
  const v1::ModelSpec spec = ModelSpecWithDefaults(raw);
  auto st = ValidateModelSpec(spec, shape);
  if (!st.ok()) return st;
  switch (spec.family()) {
    case v1::MODEL_FAMILY_BERNOULLI:
      return std::shared_ptr<DensityNet>(
          std::make_shared<BernoulliNetImpl>(shape.dim, spec.bernoulli().pseudo_count()));
    case v1::MODEL_FAMILY_MADE: {
      const auto& m = spec.made();
      return std::shared_ptr<DensityNet>(std::make_shared<MadeImpl>(
          shape.dim, m.hidden_layers(), m.hidden_units(), MadeOrder(m, shape.dim), m.order_seed()));
    }
    default:
      return absl::InternalError("unreachable: validated family has no factory");
  }
}

torch::Tensor RecordsToTensor(const RecordMatrix& m) {
  if (m.rows == 0) return torch::zeros({0, m.cols});
  if (!m.f32.empty()) {
    return torch::from_blob(const_cast<float*>(m.f32.data()), {m.rows, m.cols}).clone();
  }
  if (!m.u16.empty()) {
    std::vector<float> v(m.u16.begin(), m.u16.end());
    return torch::from_blob(v.data(), {m.rows, m.cols}).clone();
  }
  return torch::from_blob(const_cast<uint8_t*>(m.u8.data()), {m.rows, m.cols}, torch::kUInt8)
      .to(torch::kFloat);
}

// ---------------------------------------------------------------- Bernoulli

BernoulliNetImpl::BernoulliNetImpl(int64_t dim, double pseudo_count) : pseudo_count_(pseudo_count) {
  logits_ = register_parameter("logits", torch::zeros({dim}));
}

torch::Tensor BernoulliNetImpl::LogProb(const torch::Tensor& x) {
  // x log sigmoid(l) + (1 - x) log sigmoid(-l) = x l - softplus(l), stable for any l.
  return (x * logits_ - F::softplus(logits_)).sum(1);
}

torch::Tensor BernoulliNetImpl::Sample(int64_t n, at::Generator& gen) {
  auto u = torch::rand({n, logits_.size(0)}, gen);
  return (u < torch::sigmoid(logits_.detach())).to(torch::kFloat);
}

void BernoulliNetImpl::FitClosedForm(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  const double n = static_cast<double>(x.size(0));
  auto p = (x.sum(0).to(torch::kDouble) + pseudo_count_) / (n + 2 * pseudo_count_);
  p = p.clamp(1e-6, 1 - 1e-6);
  logits_.copy_(torch::log(p) - torch::log1p(-p));
}

torch::Tensor BernoulliNetImpl::Probabilities() const { return torch::sigmoid(logits_.detach()); }

// ---------------------------------------------------------------- MADE

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
    for (auto& d : deg)
      d = lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(max_degree - lo + 1));
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

}  // namespace logp
