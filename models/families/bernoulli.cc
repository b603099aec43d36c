#include "models/families/bernoulli.h"

#include "models/families/families.h"

namespace logp {

BernoulliNetImpl::BernoulliNetImpl(int64_t dim, double pseudo_count) : pseudo_count_(pseudo_count) {
  logits_ = register_parameter("logits", torch::zeros({dim}));
}

torch::Tensor BernoulliNetImpl::LogProb(const torch::Tensor& x) {
  return BernoulliLogLikelihood(logits_, x);
}

torch::Tensor BernoulliNetImpl::Sample(int64_t n, at::Generator& gen) {
  auto u = torch::rand({n, logits_.size(0)}, gen);
  return (u < torch::sigmoid(logits_.detach())).to(torch::kFloat);
}

void BernoulliNetImpl::FitClosedForm(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  const double n = static_cast<double>(x.size(0));
  auto p = (x.sum(0, false, torch::kDouble) + pseudo_count_) / (n + 2 * pseudo_count_);
  p = p.clamp(1e-6, 1 - 1e-6);
  logits_.copy_(torch::log(p) - torch::log1p(-p));
}

torch::Tensor BernoulliNetImpl::PerDimensionLogProb(const torch::Tensor& x) {
  auto l = logits_.detach().to(torch::kDouble).unsqueeze(0);
  return x.to(torch::kDouble) * l - torch::nn::functional::softplus(l);
}

torch::Tensor BernoulliNetImpl::Probabilities() const { return torch::sigmoid(logits_.detach()); }

FamilyInfo BernoulliFamily() {
  FamilyInfo f;
  f.family = v1::MODEL_FAMILY_BERNOULLI;
  f.name = "bernoulli";
  f.kinds = {v1::DATA_KIND_BINARY};
  f.set_defaults = [](v1::ModelSpec*) {};
  f.validate = [](const v1::ModelSpec& spec, const DataShape&) {
    return CheckRange("model.bernoulli.pseudo_count", spec.bernoulli().pseudo_count(), 0, 1e9);
  };
  f.make = [](const v1::ModelSpec& spec, const DataShape& shape) {
    return std::make_shared<BernoulliNetImpl>(shape.dim, spec.bernoulli().pseudo_count());
  };
  f.footprint = [](const v1::ModelSpec&, const DataShape& shape) {
    NetFootprint n;
    n.gradient_fit = false;
    n.parameters = shape.dim;
    n.step_bytes_per_record = 8 * shape.dim;   // the sum in double
    n.eval_bytes_per_record = 12 * shape.dim;  // x * logits, softplus
    return n;
  };
  return f;
}

}  // namespace logp
