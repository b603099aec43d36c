// NADE's forward pass and gradient written by hand (no LibTorch headers), for training and
// scoring binary data. Everything is in the model's order: position i holds the variable that
// comes i-th, so that the hidden pre-activation of position i is
//   a_i = c + sum_{j<i} x_j w_j,  h_i = sigmoid(a_i),  logit_i = b_i + v_i . h_i,
// with w and v stored [D, H] row-major (row i: the input weights of the variable at position i,
// and its output weights). One pass over positions, records in blocks of 8 so that the weight
// rows are read once per block; the H-long state (a, h and the running sum of the gradients
// with respect to a) is vectorised. The gradient of w needs sums over later positions:
//   dW_j = x_j sum_{i>j} da_i = x_j (T - P_j),  P_j = sum_{i<=j} da_i,  T = P_{D-1} (= dc),
// so the same forward pass accumulates -x_j P_j and adds x_j T at the end (no backward sweep).
// An AVX-512 implementation is picked at run time when the CPU has it; otherwise portable
// loops. Not thread-safe on shared outputs: callers give each thread its own gradients.
#ifndef LOGP_MODELS_FAMILIES_NADE_KERNELS_H_
#define LOGP_MODELS_FAMILIES_NADE_KERNELS_H_

#include <cstdint>

namespace logp {

struct NadeWeights {
  int64_t dim = 0, hidden = 0;
  const float* w = nullptr;  // [dim, hidden]
  const float* c = nullptr;  // [hidden]
  const float* v = nullptr;  // [dim, hidden]
  const float* b = nullptr;  // [dim]
};

// Logits [batch, dim] (position order) of records x [batch, dim] (0/1 values, position order).
void NadeLogits(const NadeWeights& m, int64_t batch, const float* x, float* logits);

// The logits as NadeLogits does, and the gradient of grad_scale * sum of the records' Bernoulli
// NLLs with respect to w, c, v and b, added to dw [dim, hidden], dc [hidden], dv [dim, hidden]
// and db [dim] (which the caller zeroes).
void NadeLogitsAndGradients(const NadeWeights& m, int64_t batch, const float* x, float grad_scale,
                            float* logits, float* dw, float* dc, float* dv, float* db);

// Whether the AVX-512 implementation is in use (the CPU has it and it is not disabled).
bool NadeKernelsUseAvx512();
// Tests: force the portable loops (false) or restore the run-time choice (true).
void TEST_NadeKernelsAllowAvx512(bool allow);

}  // namespace logp

#endif  // LOGP_MODELS_FAMILIES_NADE_KERNELS_H_
