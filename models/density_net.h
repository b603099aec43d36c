// DensityNet: the LibTorch interface every model family implements. Internal to models/ and its
// tests; the rest of logp sees only models/model.h.
#ifndef LOGP_MODELS_DENSITY_NET_H_
#define LOGP_MODELS_DENSITY_NET_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "logp/v1/job_service.pb.h"
#include "models/model.h"

namespace logp {

class DensityNet : public torch::nn::Module {
 public:
  // log p(x) in nats for a float [B, D] batch of values; returns [B]. Differentiable.
  virtual torch::Tensor LogProb(const torch::Tensor& x) = 0;
  // [n, D] float samples drawn with `gen`.
  virtual torch::Tensor Sample(int64_t n, at::Generator& gen) = 0;
  // True if the family has a closed-form maximum-likelihood fit (then Train uses FitClosedForm).
  virtual bool HasClosedForm() const { return false; }
  // Sets the parameters to the maximum-likelihood fit of `x` ([N, D] float).
  virtual void FitClosedForm(const torch::Tensor& x) {}
};

// Independent Bernoulli: log p(x) = sum_d x_d log p_d + (1 - x_d) log(1 - p_d), with
// p_d = sigmoid(logits_d).
class BernoulliNetImpl : public DensityNet {
 public:
  BernoulliNetImpl(int64_t dim, double pseudo_count);
  torch::Tensor LogProb(const torch::Tensor& x) override;
  torch::Tensor Sample(int64_t n, at::Generator& gen) override;
  bool HasClosedForm() const override { return true; }
  // p_d = (ones_d + a) / (N + 2a), clamped to [1e-6, 1 - 1e-6].
  void FitClosedForm(const torch::Tensor& x) override;
  torch::Tensor Probabilities() const;

 private:
  double pseudo_count_;
  torch::Tensor logits_;
};

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

// Builds the net of a validated spec (defaults applied) for `shape`.
absl::StatusOr<std::shared_ptr<DensityNet>> MakeDensityNet(const v1::ModelSpec& spec,
                                                           const DataShape& shape);

// The variable order of a MADE spec: natural, or a permutation drawn from order_seed.
std::vector<int64_t> MadeOrder(const v1::MadeParams& params, int64_t dim);

// Float [rows, cols] copy of the rows `index` of `m` (all rows if `index` is undefined).
torch::Tensor RecordsToTensor(const RecordMatrix& m);

}  // namespace logp

#endif  // LOGP_MODELS_DENSITY_NET_H_
