#include "models/families/nade.h"

#include <algorithm>
#include <cmath>

#include "models/families/families.h"

namespace logp {
namespace F = torch::nn::functional;

NadeImpl::NadeImpl(std::vector<int64_t> order, int64_t hidden_units, double dropout)
    : order_(std::move(order)), hidden_units_(hidden_units), dropout_(dropout) {
  const int64_t dim = static_cast<int64_t>(order_.size());
  std::vector<int64_t> position(dim);
  for (int64_t i = 0; i < dim; ++i) position[order_[i]] = i;
  order_index_ = torch::tensor(order_, torch::TensorOptions().dtype(torch::kLong));
  inverse_index_ = torch::tensor(position, torch::TensorOptions().dtype(torch::kLong));
  const double in_bound = 1.0 / std::sqrt(static_cast<double>(dim));
  const double out_bound = 1.0 / std::sqrt(static_cast<double>(hidden_units));
  w_ = register_parameter("W", (torch::rand({hidden_units, dim}) * 2 - 1) * in_bound);
  c_ = register_parameter("c", torch::zeros({hidden_units}));
  v_ = register_parameter("V", (torch::rand({dim, hidden_units}) * 2 - 1) * out_bound);
  b_ = register_parameter("b", torch::zeros({dim}));
}

torch::Tensor NadeImpl::OrderedLogits(const torch::Tensor& x) {
  auto xo = x.index_select(1, order_index_);         // [B, D]
  auto wo = w_.index_select(1, order_index_).t();    // [D, H]
  auto contrib = xo.unsqueeze(2) * wo.unsqueeze(0);  // [B, D, H]
  // Exclusive cumulative sum: position i sees the inputs at positions < i.
  auto a = torch::cumsum(contrib, 1) - contrib + c_;
  auto h = torch::sigmoid(a);
  if (dropout_ > 0) h = F::dropout(h, F::DropoutFuncOptions().p(dropout_).training(is_training()));
  auto vo = v_.index_select(0, order_index_);  // [D, H]
  return (h * vo.unsqueeze(0)).sum(2) + b_.index_select(0, order_index_);
}

torch::Tensor NadeImpl::Logits(const torch::Tensor& x) {
  const int64_t batch = x.size(0);
  const int64_t per_row = std::max<int64_t>(1, x.size(1) * hidden_units_);
  const int64_t chunk = std::max<int64_t>(1, kMaxChunkElements / per_row);
  std::vector<torch::Tensor> parts;
  for (int64_t s = 0; s < batch; s += chunk) {
    parts.push_back(OrderedLogits(x.slice(0, s, std::min(batch, s + chunk))));
  }
  auto ordered = parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
  return ordered.index_select(1, inverse_index_);
}

torch::Tensor NadeImpl::LogProb(const torch::Tensor& x) {
  return BernoulliLogLikelihood(Logits(x), x);
}

torch::Tensor NadeImpl::Sample(int64_t n, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  const int64_t dim = static_cast<int64_t>(order_.size());
  auto u = torch::rand({n, dim}, gen);
  auto x = torch::zeros({n, dim});
  auto a = c_.unsqueeze(0).expand({n, hidden_units_}).clone();
  for (int64_t i = 0; i < dim; ++i) {
    const int64_t d = order_[i];
    auto logit = torch::mv(torch::sigmoid(a), v_[d]) + b_[d];
    auto xd = (u.select(1, d) < torch::sigmoid(logit)).to(torch::kFloat);
    x.select(1, d).copy_(xd);
    a += xd.unsqueeze(1) * w_.select(1, d).unsqueeze(0);
  }
  return x;
}

FamilyInfo NadeFamily() {
  FamilyInfo f;
  f.family = v1::MODEL_FAMILY_NADE;
  f.name = "nade";
  f.kinds = {v1::DATA_KIND_BINARY};
  f.set_defaults = [](v1::ModelSpec* spec) {
    auto* m = spec->mutable_nade();
    if (m->hidden_units() == 0) m->set_hidden_units(500);
    if (m->order() == v1::VARIABLE_ORDER_UNSPECIFIED) m->set_order(v1::VARIABLE_ORDER_NATURAL);
  };
  f.validate = [](const v1::ModelSpec& spec, const DataShape&) -> absl::Status {
    const auto& m = spec.nade();
    auto st = CheckRange("model.nade.hidden_units", m.hidden_units(), 1, 8192);
    if (st.ok() && !v1::VariableOrder_IsValid(m.order())) {
      st = absl::InvalidArgumentError("model.nade.order is not a known VariableOrder");
    }
    return st;
  };
  f.make = [](const v1::ModelSpec& spec, const DataShape& shape) {
    const auto& m = spec.nade();
    return std::make_shared<NadeImpl>(VariableOrder(m.order(), m.order_seed(), shape.dim),
                                      m.hidden_units(), spec.regularization().dropout());
  };
  return f;
}

}  // namespace logp
