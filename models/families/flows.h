// Normalising flows for continuous data: MAF (Papamakarios et al. 2017) and RealNVP (Dinh et al.
// 2017). A flow maps x to u = f(x) with a tractable Jacobian and scores
//   log p(x) = log N(u; 0, I) + log|det df/dx|,
// exact by the change of variables. Sampling draws u ~ N(0, I) and inverts f.
//
// Every module here is dtype-generic: the nets are built in float, and tests may convert them to
// double (module->to(torch::kDouble)) for Jacobians and quadrature.
#ifndef LOGP_MODELS_FAMILIES_FLOWS_H_
#define LOGP_MODELS_FAMILIES_FLOWS_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/density_net.h"

namespace logp {

// Result of a bijection's forward pass: the output and log|det J| per record ([B]).
struct FlowOutput {
  torch::Tensor y;
  torch::Tensor log_det;
};

// One invertible step x -> y of a flow.
class BijectionImpl : public torch::nn::Module {
 public:
  virtual FlowOutput Forward(const torch::Tensor& x) = 0;
  // The inverse of the eval-mode map.
  virtual torch::Tensor Inverse(const torch::Tensor& y) = 0;
};

// Batch normalisation as a bijection: y = (x - m) / sqrt(v + eps) * exp(log_gamma) + beta. In
// train mode (m, v) are the batch mean and (biased) variance and the running averages are updated
// (momentum 0.1); in eval mode (and for a training batch of one record) they are the running
// averages, so y is a fixed affine map of x.
class FlowBatchNormImpl : public BijectionImpl {
 public:
  // The eps added to the variance.
  static constexpr double kEps = 1e-5;
  explicit FlowBatchNormImpl(int64_t dim);
  FlowOutput Forward(const torch::Tensor& x) override;
  // The inverse of the eval-mode map (running statistics).
  torch::Tensor Inverse(const torch::Tensor& y) override;

 private:
  torch::Tensor log_gamma_, beta_, running_mean_, running_var_;
};
TORCH_MODULE(FlowBatchNorm);

// One MAF layer: a Gaussian MADE. mu_d and alpha_d are masked-MLP functions of x_<d (earlier in
// `order`), u_d = (x_d - mu_d) exp(-alpha_d), log|det| = -sum_d alpha_d.
class MadeGaussianImpl : public BijectionImpl {
 public:
  // `order[i]` is the variable at position i. Hidden degrees are assigned deterministically
  // (unit k has degree 1 + k mod max(D - 1, 1)), so the masks follow from the spec.
  MadeGaussianImpl(int64_t dim, int64_t hidden_layers, int64_t hidden_units,
                   std::vector<int64_t> order, double dropout);
  // (mu, alpha), each [B, D]; output d depends only on inputs earlier than d in the order.
  std::pair<torch::Tensor, torch::Tensor> Conditionals(const torch::Tensor& x);
  FlowOutput Forward(const torch::Tensor& x) override;
  // x from u, one variable at a time in the order (D passes).
  torch::Tensor Inverse(const torch::Tensor& u) override;
  const std::vector<int64_t>& order() const { return order_; }
  // The hidden layers of the masked MLP (submodules hidden<l> with masks mask<l>, then output
  // with mask_out).
  int64_t num_hidden_layers() const { return static_cast<int64_t>(layers_.size()) - 1; }

 private:
  int64_t dim_;
  double dropout_;
  std::vector<int64_t> order_;
  std::vector<torch::nn::Linear> layers_;
  std::vector<torch::Tensor> masks_;
};
TORCH_MODULE(MadeGaussian);

// One RealNVP affine coupling: with the binary mask b (1 = passed through and conditioned on),
//   y = b x + (1 - b) (x exp(s(b x)) + t(b x)),  s = scale * tanh(net_s(b x)),
// log|det| = sum_d (1 - b_d) s_d.
class AffineCouplingImpl : public BijectionImpl {
 public:
  AffineCouplingImpl(torch::Tensor mask, int64_t hidden_layers, int64_t hidden_units,
                     double dropout);
  FlowOutput Forward(const torch::Tensor& x) override;
  torch::Tensor Inverse(const torch::Tensor& y) override;
  // The hidden layers of each of the scale and shift MLPs (submodules scale_net<l>, then
  // scale_net_out; shift_net likewise).
  int64_t num_hidden_layers() const { return static_cast<int64_t>(scale_net_.size()) - 1; }

 private:
  std::pair<torch::Tensor, torch::Tensor> ScaleShift(const torch::Tensor& x_cond);
  torch::Tensor Mlp(std::vector<torch::nn::Linear>& layers, torch::Tensor h);
  double dropout_;
  torch::Tensor mask_, scale_;
  std::vector<torch::nn::Linear> scale_net_, shift_net_;
};
TORCH_MODULE(AffineCoupling);

// A stack of bijections x -> u with a standard-normal base. Subclasses add their steps in order.
class FlowNet : public DensityNet {
 public:
  // u = f(x) and log|det df/dx| per record: the steps in order, log-dets summed.
  FlowOutput Forward(const torch::Tensor& x);
  // x = f^{-1}(u) (eval-mode map): the steps' inverses in reverse order.
  torch::Tensor Inverse(const torch::Tensor& u);
  torch::Tensor LogProb(const torch::Tensor& x) override;
  torch::Tensor Sample(int64_t n, at::Generator& gen) override;
  // The steps x -> u in order, and each one's submodule name.
  int64_t num_steps() const { return static_cast<int64_t>(steps_.size()); }
  BijectionImpl& step(int64_t i) const { return *steps_[i]; }
  const std::string& step_name(int64_t i) const { return step_names_[i]; }

 protected:
  explicit FlowNet(int64_t dim) : dim_(dim) {}
  // Registers `step` as submodule `name` and appends it to the flow.
  template <typename Holder>
  Holder AddStep(const std::string& name, Holder step) {
    register_module(name, step);
    steps_.push_back(step.ptr());
    step_names_.push_back(name);
    return step;
  }
  int64_t dim_;

 private:
  std::vector<std::shared_ptr<BijectionImpl>> steps_;
  std::vector<std::string> step_names_;
};

// MAF: `flow_layers` MADE-Gaussian layers, the order reversed between consecutive layers, with
// optional batch normalisation between layers.
class MafImpl : public FlowNet {
 public:
  MafImpl(int64_t dim, int64_t flow_layers, int64_t hidden_layers, int64_t hidden_units,
          bool batch_norm, double dropout);
  int64_t num_layers() const { return static_cast<int64_t>(mades_.size()); }
  MadeGaussian& layer(int64_t l) { return mades_[l]; }

 private:
  std::vector<MadeGaussian> mades_;
};

// RealNVP: `coupling_layers` affine couplings; even layers condition on the first floor(D / 2)
// dimensions and transform the rest, odd layers the reverse; optional batch norm between layers.
class RealNvpImpl : public FlowNet {
 public:
  RealNvpImpl(int64_t dim, int64_t coupling_layers, int64_t hidden_layers, int64_t hidden_units,
              bool batch_norm, double dropout);
};

}  // namespace logp

#endif  // LOGP_MODELS_FAMILIES_FLOWS_H_
