// Element-wise kernels of the trainer's hot loop, in a file of their own so that they can be
// compiled for speed (see models/CMakeLists.txt) without touching the rest of the code. Plain
// C++: no LibTorch headers. Each kernel is written as loops GCC vectorises, with one clone per
// instruction set picked at load time.
#ifndef LOGP_MODELS_KERNELS_H_
#define LOGP_MODELS_KERNELS_H_

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

// Bernoulli negative log-likelihood with logits l and outcomes x in {0, 1}, and its gradient:
// returns sum_i softplus(l_i) - x_i l_i (= -log p(x_i | sigmoid(l_i))), accumulated in double,
// and sets grad[i] = (sigmoid(l_i) - x_i) * grad_scale. Stable for every finite logit (no
// log of a rounded probability); each term within 1e-6 relative error (or 2e-38 absolute, for
// |l| > 87 where the smaller probability is below float's normal range). A non-finite logit
// makes the sum non-finite.
double BernoulliNllAndGrad(int64_t n, const float* logits, const float* x, float grad_scale,
                           float* grad);

// Per row of a [rows, cols] batch: nll[r] = sum_c of BernoulliNllAndGrad's term (no gradient).
void BernoulliNllRows(int64_t rows, int64_t cols, const float* logits, const float* x, double* nll);

// Back-propagation through relu followed by optional inverted dropout, in place: given the
// layer's output a = relu(z) * noise (noise may be null: no dropout), d[i] becomes
// d[i] * noise[i] where a[i] > 0 and 0 elsewhere.
void ReluDropoutBackward(int64_t n, const float* a, const float* noise, float* d);

// Rows of bit-packed binary data (RecordMatrix::bits: `row_bytes` per row, column c in bit
// 7 - c % 8 of byte c / 8) as 0/1 values, [rows, cols] row-major.
void UnpackBits(int64_t rows, int64_t cols, int64_t row_bytes, const uint8_t* packed, float* out);
void UnpackBits(int64_t rows, int64_t cols, int64_t row_bytes, const uint8_t* packed, uint8_t* out);

}  // namespace logp

#endif  // LOGP_MODELS_KERNELS_H_
