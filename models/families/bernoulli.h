#ifndef LOGP_MODELS_FAMILIES_BERNOULLI_H_
#define LOGP_MODELS_FAMILIES_BERNOULLI_H_

#include "models/density_net.h"

namespace logp {

// Independent Bernoulli: log p(x) = sum_d x_d log p_d + (1 - x_d) log(1 - p_d), with
// p_d = sigmoid(logits_d).
class BernoulliNetImpl : public DensityNet {
 public:
  BernoulliNetImpl(int64_t dim, double pseudo_count);
  torch::Tensor LogProb(const torch::Tensor& x) override;
  torch::Tensor Sample(int64_t n, at::Generator& gen) override;
  Fit fit() const override { return Fit::kClosedForm; }
  // p_d = (ones_d + a) / (N + 2a), clamped to [1e-6, 1 - 1e-6].
  void FitClosedForm(const torch::Tensor& x) override;
  torch::Tensor Probabilities() const;
  // log Bernoulli(x_d | p_d) per dimension (independent: FactorOrder() is empty).
  torch::Tensor PerDimensionLogProb(const torch::Tensor& x) override;

 private:
  double pseudo_count_;
  torch::Tensor logits_;
};

}  // namespace logp

#endif  // LOGP_MODELS_FAMILIES_BERNOULLI_H_
