#include "models/families/independent.h"

#include "models/families/families.h"

namespace logp {

CategoricalNetImpl::CategoricalNetImpl(int64_t dim, int64_t num_categories, double pseudo_count)
    : num_categories_(num_categories), pseudo_count_(pseudo_count) {
  log_probs_ = register_parameter(
      "log_probs",
      torch::full({dim, num_categories}, -std::log(static_cast<double>(num_categories))));
}

torch::Tensor CategoricalNetImpl::LogProb(const torch::Tensor& x) {
  auto lp = torch::log_softmax(log_probs_, 1);  // [D, K]
  auto idx = x.to(torch::kLong).unsqueeze(2);   // [B, D, 1]
  return lp.unsqueeze(0)
      .expand({x.size(0), lp.size(0), lp.size(1)})
      .gather(2, idx)
      .squeeze(2)
      .sum(1);
}

torch::Tensor CategoricalNetImpl::Sample(int64_t n, at::Generator& gen) {
  if (n == 0) return torch::zeros({0, log_probs_.size(0)});
  auto draws = torch::multinomial(Probabilities().to(torch::kDouble), n, true, gen);  // [D, n]
  return draws.t().to(torch::kFloat).contiguous();
}

void CategoricalNetImpl::FitClosedForm(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  const int64_t d = log_probs_.size(0), k = num_categories_;
  const double n = static_cast<double>(x.size(0));
  auto counts = torch::zeros({d, k}, torch::kDouble);
  counts.scatter_add_(1, x.to(torch::kLong).t(), torch::ones({d, x.size(0)}, torch::kDouble));
  auto p = (counts + pseudo_count_) / (n + static_cast<double>(k) * pseudo_count_);
  p = p.clamp_min(1e-6);
  p = p / p.sum(1, true);
  log_probs_.copy_(torch::log(p));
}

torch::Tensor CategoricalNetImpl::PerDimensionLogProb(const torch::Tensor& x) {
  auto lp = torch::log_softmax(log_probs_.detach().to(torch::kDouble), 1);  // [D, K]
  auto idx = x.to(torch::kLong).unsqueeze(2);                               // [B, D, 1]
  return lp.unsqueeze(0).expand({x.size(0), lp.size(0), lp.size(1)}).gather(2, idx).squeeze(2);
}

torch::Tensor CategoricalNetImpl::Probabilities() const {
  return torch::softmax(log_probs_.detach(), 1);
}

FamilyInfo CategoricalFamily() {
  FamilyInfo f;
  f.family = v1::MODEL_FAMILY_CATEGORICAL;
  f.name = "categorical";
  f.kinds = {v1::DATA_KIND_CATEGORICAL};
  f.set_defaults = [](v1::ModelSpec*) {};
  f.validate = [](const v1::ModelSpec& spec, const DataShape&) {
    return CheckRange("model.categorical.pseudo_count", spec.categorical().pseudo_count(), 0, 1e9);
  };
  f.make = [](const v1::ModelSpec& spec, const DataShape& shape) {
    return std::make_shared<CategoricalNetImpl>(shape.dim, shape.num_categories,
                                                spec.categorical().pseudo_count());
  };
  f.footprint = [](const v1::ModelSpec&, const DataShape& shape) {
    NetFootprint n;
    n.gradient_fit = false;
    n.parameters = shape.dim * shape.num_categories;
    n.step_bytes_per_record = 16 * shape.dim;  // indices (long) and the counts' ones (double)
    n.eval_bytes_per_record = 12 * shape.dim;  // indices and the gathered log-probabilities
    return n;
  };
  return f;
}

}  // namespace logp
