#ifndef LOGP_MODELS_FAMILIES_MADE_H_
#define LOGP_MODELS_FAMILIES_MADE_H_

#include <cstdint>
#include <vector>

#include "models/density_net.h"

namespace logp {

// Connectivity of one MADE mask: the degree of every unit of every layer. Input and output units
// carry the 1-based position of their variable in the order; hidden units a degree in
// [min(previous layer's min degree, D - 1), D - 1] (D - 1 floored at 1).
struct MadeDegrees {
  std::vector<int64_t> input;                // one per input unit
  std::vector<std::vector<int64_t>> hidden;  // one vector per hidden layer
  std::vector<int64_t> output;               // one per output unit
};

// Degrees for `in_degree` / `out_degree` (per unit) and `hidden_sizes`, hidden degrees drawn
// from `seed` (portable: std::mt19937_64).
MadeDegrees DrawMadeDegrees(const std::vector<int64_t>& in_degree,
                            const std::vector<int64_t>& hidden_sizes,
                            const std::vector<int64_t>& out_degree, uint64_t seed);

// The float {0,1} masks of the MADE layers, [out_units, in_units] each: hidden unit of degree k
// sees units of degree <= k; an output unit of degree m sees hidden units of degree < m. The
// result has hidden_sizes.size() + 1 masks (the last one for the output layer). With no hidden
// layers the single mask is the direct one (output degree > input degree).
std::vector<torch::Tensor> MadeMasks(const MadeDegrees& degrees);

// The strictly-earlier mask [out_units, in_units] of a direct input-to-output layer.
torch::Tensor MadeDirectMask(const std::vector<int64_t>& in_degree,
                             const std::vector<int64_t>& out_degree);

// Per-unit degrees of a variable order: the D input units (or D * units_per_var units, variable
// major) of variable order[i] get degree i + 1.
std::vector<int64_t> OrderDegrees(const std::vector<int64_t>& order, int64_t units_per_var);

struct MadeConfig {
  int64_t dim = 0;
  v1::DataKind kind = v1::DATA_KIND_BINARY;
  int64_t num_categories = 2;  // K, categorical only
  int64_t hidden_layers = 1;
  int64_t hidden_units = 500;
  std::vector<int64_t> order;  // the first mask's order; natural if empty
  uint64_t seed = 0;           // seed of the other masks' orders and of every connectivity
  int64_t num_masks = 1;
  bool direct_connections = false;
  v1::ConditionalType conditional = v1::CONDITIONAL_TYPE_GAUSSIAN;  // continuous only
  int64_t mixture_components = 5;                                   // MIXTURE only
  double dropout = 0;
};

// MADE (Germain et al. 2015): a masked MLP whose outputs for variable d see only the inputs of
// variables before d in the mask's order, so log p(x) = sum_d log p(x_d | x_<d) is exact.
//   binary:      1 logit per variable, Bernoulli conditionals;
//   categorical: inputs one-hot (D * K units), K logits per variable, softmax conditionals;
//   continuous:  GAUSSIAN (mean, log-std) or MIXTURE (C logits, C means, C log-stds) per
//                variable. Log-stds are clamped to [-7, 7] (std in [9e-4, 1097]) so that a
//                collapsing conditional cannot make the likelihood diverge.
// With M masks: training step s uses mask s % M (order/connectivity-agnostic training);
// LogProb is the ensemble log((1/M) sum_m p_m(x)) (log-mean-exp, never an average of logits);
// Sample draws from mask 0's model (one member of the ensemble; exact ensemble sampling would
// pick a mask per record — mask 0 is the member whose order the user chose).
// Masks are derived from the config (seeded degrees), not stored: Deserialize rebuilds them.
// Only the current mask's tensors are cached; other masks are built on use (a cheap comparison
// of degree vectors), so M = 64 masks cost no more memory than one.
// With one mask (M = 1) the mask is folded into the weights: masked weights are exactly 0 and
// stay 0 (their gradients are zeroed after each backward pass), so forward passes use the
// weights as they are, with no mask product per step.
// Training on binary data skips autograd (LossAndGradients): the network is small enough that
// its backward pass is written out, and the element-wise work around the matrix products is
// what separates a training step from the machine's matrix-multiply peak.
// Output units [begin, end) of a masked weight, in degree-sorted order, and the prefix
// [0, prefix) of the sorted input units they read.
struct StairGroup {
  int64_t begin, end, prefix;
};

class MadeImpl : public DensityNet {
 public:
  explicit MadeImpl(MadeConfig config);

  // Parameters per variable: P = 1 (binary), K (categorical), 2 (Gaussian), 3C (mixture).
  int64_t params_per_var() const { return params_per_var_; }
  // Input units for values x [B, D] (one-hot for categorical).
  torch::Tensor Encode(const torch::Tensor& x) const;
  // Conditional parameters [B, D, P] from encoded inputs with mask `mask`.
  torch::Tensor Forward(const torch::Tensor& encoded, int64_t mask);
  // Binary: logits [B, D] of p(x_d = 1 | x_<d) under mask 0.
  torch::Tensor Logits(const torch::Tensor& x);
  // log p_m(x) of one mask's model, [B].
  torch::Tensor LogProbWithMask(const torch::Tensor& x, int64_t mask);
  // The ensemble log-likelihood (log-mean-exp over masks).
  torch::Tensor LogProb(const torch::Tensor& x) override;
  // One mask: log p(x_d | x_<d) per dimension in mask 0's order. An ensemble of M > 1 masks
  // (a mixture of models in different orders) has no chain-rule decomposition in one order:
  // undefined.
  torch::Tensor PerDimensionLogProb(const torch::Tensor& x) override;
  std::vector<int64_t> FactorOrder() const override;
  // Training loss: mean NLL under the current mask (set by BeforeStep).
  torch::Tensor Loss(const torch::Tensor& x) override;
  // Binary data: forward and backward by hand, with the same dropout draws as Loss. Units are
  // sorted by degree, where every masked weight is a staircase: each group of output units
  // reads only a prefix of the inputs, so the matrix products skip most masked blocks (about
  // 55% of the dense FLOPs for one hidden layer). Element-wise work is fused into two kernels
  // (models/kernels.h).
  torch::Tensor LossAndGradients(const torch::Tensor& x) override;
  // Matrix-product FLOPs per record of one LossAndGradients step under mask 0 (0 for data it
  // does not serve).
  double TrainingFlopsPerRecord(bool block_products) const override;
  void SetBlockProducts(bool on) override;
  // Binary data: the incremental sampler (models/families/ar_sampling.h), any depth; other kinds:
  // ReferenceSample.
  torch::Tensor Sample(int64_t n, at::Generator& gen) override;
  // One forward pass of the whole network per dimension (the sampler of before): every kind.
  // The baseline of bench/sampling_bench.
  torch::Tensor ReferenceSample(int64_t n, at::Generator& gen);
  // Not thread-safe (training only): switches the cached mask.
  void BeforeStep(int64_t step) override;
  // With one mask, the mask lives in the weights (see DensityNet::FoldMasks).
  void FoldMasks() override;
  void MaskGradients() override;

  int64_t num_masks() const { return config_.num_masks; }
  const std::vector<int64_t>& order(int64_t mask = 0) const { return orders_[mask]; }
  const MadeDegrees& degrees(int64_t mask = 0) const { return degrees_[mask]; }
  // Mask `mask`'s layer masks [out_units, in_units] (hidden..., output, then direct if enabled).
  std::vector<torch::Tensor> MasksFor(int64_t mask) const;

 private:
  // Conditional log-likelihood of each variable [B, D] from parameters [B, D, P].
  torch::Tensor LogLikelihoods(const torch::Tensor& params, const torch::Tensor& x) const;
  // One draw of every variable [n] from parameters [n, P] of variable d.
  torch::Tensor DrawVariable(const torch::Tensor& params, at::Generator& gen) const;

  MadeConfig config_;
  int64_t params_per_var_ = 1;
  int64_t in_units_ = 0;

  // The degree-sorted view of one mask, for LossAndGradients. Units: 0 = inputs, 1..L = hidden
  // layers, L + 1 = outputs. Weight w (hidden..., output, direct) maps units In(w) to Out(w).
  struct UnitOrder {
    bool identity = true;          // already sorted by degree
    torch::Tensor perm;            // sorted position -> unit (long); undefined when identity
    torch::Tensor inv;             // unit -> sorted position
    std::vector<int64_t> degrees;  // ascending
  };
  struct TrainPlan {
    int64_t mask = -1;
    std::vector<UnitOrder> units;
    std::vector<std::vector<StairGroup>> groups;  // per weight
    double flops_per_record = 0;
  };
  // The plan of a mask; dense (block_products false): natural unit order and one group per
  // weight reading all inputs.
  TrainPlan MakePlan(int64_t mask, bool block_products) const;
  // The forward pass in a plan's sorted coordinates: effective weights, activations (act[0] the
  // sorted inputs), dropout noise (training), logits and the values they predict (x_out).
  struct StairPass {
    std::vector<torch::Tensor> eff, act, noise;
    torch::Tensor logits, x_out;
  };
  StairPass StairForwardPass(const TrainPlan& plan, const std::vector<torch::Tensor>& masks,
                             const torch::Tensor& x, bool dropout);
  static torch::Tensor SortedColumns(const torch::Tensor& t, const UnitOrder& u);
  // Binary scoring batches at least this large use the staircase products.
  static constexpr int64_t kStairScoreRows = 256;
  bool block_products_ = true;
  size_t InUnits(size_t weight) const;
  size_t OutUnits(size_t weight) const;
  TrainPlan plan_;

  std::vector<std::vector<int64_t>> orders_;  // per mask
  std::vector<MadeDegrees> degrees_;          // per mask
  std::vector<torch::Tensor> current_masks_;  // MasksFor(current_mask_)
  std::vector<torch::nn::Linear> layers_;
  torch::nn::Linear direct_{nullptr};
  int64_t current_mask_ = 0;
  bool folded() const { return config_.num_masks == 1; }
};

}  // namespace logp

#endif  // LOGP_MODELS_FAMILIES_MADE_H_
