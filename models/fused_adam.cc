#include "models/fused_adam.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <memory>
#include <string>

#include "models/kernels.h"

namespace logp {

torch::Tensor FusedAdam::step(LossClosure closure) {
  for (const auto& group : param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamOptions&>(group.options());
    if (o.amsgrad()) return torch::optim::Adam::step(std::move(closure));
    for (const auto& p : group.params()) {
      if (p.grad().defined() &&
          (p.scalar_type() != torch::kFloat || !p.is_contiguous() || p.grad().is_sparse() ||
           !p.grad().is_contiguous() || p.grad().scalar_type() != torch::kFloat)) {
        return torch::optim::Adam::step(std::move(closure));
      }
    }
  }
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamOptions&>(group.options());
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      // Adam's state key and initial state, so that save/load and Adam::step agree with us.
      const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
      auto it = state_.find(key);
      if (it == state_.end()) {
        auto fresh = std::make_unique<torch::optim::AdamParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        it = state_.emplace(key, std::move(fresh)).first;
      }
      auto& st = static_cast<torch::optim::AdamParamState&>(*it->second);
      st.step(st.step() + 1);
      const double bias1 = 1 - std::pow(beta1, st.step());
      const double bias2 = 1 - std::pow(beta2, st.step());
      AdamCoefficients c;
      c.beta1 = static_cast<float>(beta1);
      c.beta2 = static_cast<float>(beta2);
      c.weight_decay = static_cast<float>(o.weight_decay());
      c.eps = static_cast<float>(o.eps());
      c.step_size = static_cast<float>(o.lr() / bias1);
      c.inv_sqrt_bias2 = static_cast<float>(1 / std::sqrt(bias2));
      const float* g = p.grad().data_ptr<float>();
      float* w = p.data_ptr<float>();
      float* m = st.exp_avg().data_ptr<float>();
      float* v = st.exp_avg_sq().data_ptr<float>();
      at::parallel_for(0, p.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
        AdamUpdate(end - begin, c, g + begin, w + begin, m + begin, v + begin);
      });
    }
  }
  return loss;
}

}  // namespace logp
