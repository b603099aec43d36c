// The element-wise Adam update of FusedAdam, in a file of its own so that it can be compiled for
// speed (see models/CMakeLists.txt) without touching the rest of the trainer. Plain C++: no
// LibTorch headers.
#ifndef LOGP_MODELS_ADAM_KERNEL_H_
#define LOGP_MODELS_ADAM_KERNEL_H_

#include <cstdint>

namespace logp {

struct AdamCoefficients {
  float beta1 = 0.9f, beta2 = 0.999f;
  float weight_decay = 0;
  float eps = 1e-8f;
  float step_size = 0;       // lr / (1 - beta1^t)
  float inv_sqrt_bias2 = 1;  // 1 / sqrt(1 - beta2^t)
};

// For i in [0, n): g = grad[i] (+ weight_decay * w[i]); m = b1 m + (1 - b1) g;
// v = b2 v + (1 - b2) g^2; w -= step_size * m / (sqrt(v) * inv_sqrt_bias2 + eps).
// Each operation is rounded as written (no fused multiply-add), whatever the CPU, so that the
// result does not depend on the machine a checkpoint is resumed on.
void AdamUpdate(int64_t n, const AdamCoefficients& c, const float* grad, float* w, float* m,
                float* v);

}  // namespace logp

#endif  // LOGP_MODELS_ADAM_KERNEL_H_
