#include "models/families/fvsbn.h"

#include <cmath>

#include "models/families/ar_sampling.h"
#include "models/families/families.h"

namespace logp {
namespace F = torch::nn::functional;

FvsbnImpl::FvsbnImpl(std::vector<int64_t> order) : order_(std::move(order)) {
  const int64_t dim = static_cast<int64_t>(order_.size());
  std::vector<int64_t> position(dim);
  for (int64_t i = 0; i < dim; ++i) position[order_[i]] = i;
  auto mask = torch::zeros({dim, dim});
  auto acc = mask.accessor<float, 2>();
  for (int64_t d = 0; d < dim; ++d) {
    for (int64_t j = 0; j < dim; ++j) acc[d][j] = position[j] < position[d] ? 1.f : 0.f;
  }
  // Derived from the spec, but kept as a buffer so a saved model is self-describing.
  mask_ = register_buffer("mask", mask);
  const double bound = 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(dim, 1)));
  weight_ = register_parameter("weight", (torch::rand({dim, dim}) * 2 - 1) * bound);
  bias_ = register_parameter("bias", torch::zeros({dim}));
}

torch::Tensor FvsbnImpl::Logits(const torch::Tensor& x) {
  return F::linear(x, weight_ * mask_, bias_);
}

torch::Tensor FvsbnImpl::LogProb(const torch::Tensor& x) {
  return BernoulliLogLikelihood(Logits(x), x);
}

torch::Tensor FvsbnImpl::PerDimensionLogProb(const torch::Tensor& x) {
  auto l = Logits(x).to(torch::kDouble);
  return x.to(torch::kDouble) * l - F::softplus(l);
}

torch::Tensor FvsbnImpl::Sample(int64_t n, at::Generator& gen) {
  return SampleIncrementally(FvsbnSamplingWeightsOf(*this), n, gen);
}

torch::Tensor FvsbnImpl::ReferenceSample(int64_t n, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  const int64_t dim = static_cast<int64_t>(order_.size());
  auto u = torch::rand({n, dim}, gen);
  auto x = torch::zeros({n, dim});
  auto w = weight_ * mask_;
  for (int64_t i = 0; i < dim; ++i) {
    if (i % 16 == 0) PollStop();
    const int64_t d = order_[i];
    auto logit = torch::mv(x, w[d]) + bias_[d];
    x.select(1, d).copy_((u.select(1, d) < torch::sigmoid(logit)).to(torch::kFloat));
  }
  return x;
}

FamilyInfo FvsbnFamily() {
  FamilyInfo f;
  f.family = v1::MODEL_FAMILY_FVSBN;
  f.name = "fvsbn";
  f.kinds = {v1::DATA_KIND_BINARY};
  f.set_defaults = [](v1::ModelSpec* spec) {
    auto* m = spec->mutable_fvsbn();
    if (m->order() == v1::VARIABLE_ORDER_UNSPECIFIED) m->set_order(v1::VARIABLE_ORDER_NATURAL);
  };
  f.validate = [](const v1::ModelSpec& spec, const DataShape& shape) -> absl::Status {
    if (!v1::VariableOrder_IsValid(spec.fvsbn().order())) {
      return absl::InvalidArgumentError("model.fvsbn.order is not a known VariableOrder");
    }
    // D^2 weights.
    return CheckRange("dim for model.fvsbn", static_cast<double>(shape.dim), 1, 8192);
  };
  f.make = [](const v1::ModelSpec& spec, const DataShape& shape) {
    const auto& m = spec.fvsbn();
    return std::make_shared<FvsbnImpl>(VariableOrder(m.order(), m.order_seed(), shape.dim));
  };
  f.footprint = [](const v1::ModelSpec&, const DataShape& shape) {
    NetFootprint n;
    n.parameters = shape.dim * shape.dim + shape.dim;
    n.extra_parameter_copies = 2;  // the masked weight product and its gradient
    n.step_bytes_per_record = 4 * 6 * shape.dim;
    n.eval_bytes_per_record = 4 * 3 * shape.dim;
    return n;
  };
  return f;
}

}  // namespace logp
