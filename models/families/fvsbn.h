#ifndef LOGP_MODELS_FAMILIES_FVSBN_H_
#define LOGP_MODELS_FAMILIES_FVSBN_H_

#include <cstdint>
#include <vector>

#include "models/density_net.h"

namespace logp {

// Fully visible sigmoid belief network (logistic autoregressive model) over binary data:
// p(x_d = 1 | x_<d) = sigmoid(b_d + sum_{j before d} W_dj x_j), W masked strictly lower
// triangular in `order`. Exact log p; sequential sampling.
class FvsbnImpl : public DensityNet {
 public:
  // `order[i]` is the variable at position i.
  explicit FvsbnImpl(std::vector<int64_t> order);
  // Logits [B, D] of p(x_d = 1 | x_<d), in variable index.
  torch::Tensor Logits(const torch::Tensor& x);
  torch::Tensor LogProb(const torch::Tensor& x) override;
  // The incremental sampler (models/families/ar_sampling.h).
  torch::Tensor Sample(int64_t n, at::Generator& gen) override;
  // The per-dimension tensor-op sampler of before: the baseline of bench/sampling_bench.
  torch::Tensor ReferenceSample(int64_t n, at::Generator& gen);
  const std::vector<int64_t>& order() const { return order_; }
  // log Bernoulli(x_d | sigmoid(logit_d)) per dimension, in the model's order.
  torch::Tensor PerDimensionLogProb(const torch::Tensor& x) override;
  std::vector<int64_t> FactorOrder() const override { return order_; }

 private:
  std::vector<int64_t> order_;
  torch::Tensor weight_, bias_, mask_;
};

}  // namespace logp

#endif  // LOGP_MODELS_FAMILIES_FVSBN_H_
