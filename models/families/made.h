#ifndef LOGP_MODELS_FAMILIES_MADE_H_
#define LOGP_MODELS_FAMILIES_MADE_H_

#include <vector>

#include "models/density_net.h"

namespace logp {

// MADE (Germain et al. 2015) for binary data: a masked MLP whose output d sees only inputs that
// come before d in `order`, so log p(x) = sum_d log Bernoulli(x_d | sigmoid(out_d)) is exact.
class MadeImpl : public DensityNet {
 public:
  // `order[i]` is the variable at position i. Hidden units' degrees are drawn from `mask_seed`.
  MadeImpl(int64_t dim, int64_t hidden_layers, int64_t hidden_units, std::vector<int64_t> order,
           uint64_t mask_seed);
  // Logits [B, D] of p(x_d = 1 | x_<d).
  torch::Tensor Logits(const torch::Tensor& x);
  torch::Tensor LogProb(const torch::Tensor& x) override;
  torch::Tensor Sample(int64_t n, at::Generator& gen) override;
  const std::vector<int64_t>& order() const { return order_; }

 private:
  int64_t dim_;
  std::vector<int64_t> order_;
  std::vector<torch::nn::Linear> layers_;
  std::vector<torch::Tensor> masks_;
};

}  // namespace logp

#endif  // LOGP_MODELS_FAMILIES_MADE_H_
