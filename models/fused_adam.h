// FusedAdam: torch::optim::Adam with its per-parameter update done in one pass over the weights,
// gradients and both moments (Adam's reference step makes about seven passes and allocates two
// temporaries per parameter). Same options, same state and the same save/load format as Adam,
// so checkpoints move freely between the two; results agree to float rounding.
#ifndef LOGP_MODELS_FUSED_ADAM_H_
#define LOGP_MODELS_FUSED_ADAM_H_

#include <torch/torch.h>

#include <vector>

namespace logp {

class FusedAdam : public torch::optim::Adam {
 public:
  FusedAdam(std::vector<torch::Tensor> params, torch::optim::AdamOptions options)
      : torch::optim::Adam(std::move(params), std::move(options)) {}
  // Falls back to Adam::step for amsgrad, sparse or non-float parameters.
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace logp

#endif  // LOGP_MODELS_FUSED_ADAM_H_
