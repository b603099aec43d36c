#ifndef LOGP_MODELS_FAMILIES_INDEPENDENT_H_
#define LOGP_MODELS_FAMILIES_INDEPENDENT_H_

#include "models/density_net.h"

namespace logp {

// Independent categorical per dimension: log p(x) = sum_d log p_d(x_d). The parameter holds the
// log-probabilities [D, K]; LogProb renormalises them with log_softmax, which leaves normalised
// log-probabilities unchanged and keeps the model normalised whatever the parameter holds.
class CategoricalNetImpl : public DensityNet {
 public:
  CategoricalNetImpl(int64_t dim, int64_t num_categories, double pseudo_count);
  torch::Tensor LogProb(const torch::Tensor& x) override;
  torch::Tensor Sample(int64_t n, at::Generator& gen) override;
  Fit fit() const override { return Fit::kClosedForm; }
  // p_dk = (count_dk + a) / (N + K a), floored at 1e-6 and renormalised.
  void FitClosedForm(const torch::Tensor& x) override;
  // [D, K] probabilities.
  torch::Tensor Probabilities() const;
  // log p_d(x_d) per dimension (independent: FactorOrder() is empty).
  torch::Tensor PerDimensionLogProb(const torch::Tensor& x) override;

 private:
  int64_t num_categories_;
  double pseudo_count_;
  torch::Tensor log_probs_;
};

}  // namespace logp

#endif  // LOGP_MODELS_FAMILIES_INDEPENDENT_H_
