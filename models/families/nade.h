#ifndef LOGP_MODELS_FAMILIES_NADE_H_
#define LOGP_MODELS_FAMILIES_NADE_H_

#include <cstdint>
#include <vector>

#include "models/density_net.h"

namespace logp {

// NADE (Larochelle & Murray 2011) over binary data, with tied input weights:
//   h_d = sigmoid(c + W[:, <d] x_<d),  p(x_d = 1 | x_<d) = sigmoid(b_d + V_d . h_d),
// "<d" meaning the variables before d in `order`. All D conditionals come from one pass with a
// cumulative sum over the ordered inputs (B x D x H floats; the batch is processed in chunks
// of at most kMaxChunkElements). Dropout on h in train mode. Sequential sampling.
class NadeImpl : public DensityNet {
 public:
  static constexpr int64_t kMaxChunkElements = int64_t{1} << 24;

  NadeImpl(std::vector<int64_t> order, int64_t hidden_units, double dropout);
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
  // Whether data batches (inputs that need no gradient, float, no dropout in force) use the
  // record-by-record recurrence with its hand-written gradient (default) instead of the
  // cumulative-sum form that autograd differentiates. Both compute the same function.
  void set_use_recurrence(bool use) { use_recurrence_ = use; }
  // Training without dropout skips autograd: the hand-written pass of nade_kernels.h computes
  // the loss and every parameter's gradient at once. Undefined (the trainer then runs Loss and
  // backward) with dropout in force or for non-float parameters.
  torch::Tensor LossAndGradients(const torch::Tensor& x) override;
  // Whether LossAndGradients and scoring without gradients use nade_kernels.h (default) or the
  // previous paths (autograd through the recurrence; for benchmarks and tests).
  void set_use_kernels(bool use) { use_kernels_ = use; }

 private:
  // Logits [B, D] in position order for a chunk.
  torch::Tensor OrderedLogits(const torch::Tensor& x);
  // The cumulative-sum form: B x D x H intermediates, differentiable in every input.
  torch::Tensor OrderedLogitsByCumsum(const torch::Tensor& x);
  // Whether nade_kernels.h applies: float parameters, no dropout in force, kernels enabled.
  bool KernelsApply() const;

  std::vector<int64_t> order_;
  int64_t hidden_units_;
  double dropout_;
  bool use_recurrence_ = true;
  bool use_kernels_ = true;
  torch::Tensor order_index_, inverse_index_;  // order and its inverse, as kLong
  torch::Tensor w_, c_, v_, b_;                // W [H, D], c [H], V [D, H], b [D]
};

}  // namespace logp

#endif  // LOGP_MODELS_FAMILIES_NADE_H_
