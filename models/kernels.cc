#include "models/kernels.h"

#include <cmath>
#include <cstring>

namespace logp {

// Clones are dispatched through GNU ifunc. The kernels are compute-bound once vectorised, and
// they are vectorised only because this file is compiled with -fno-math-errno (sqrtf may
// otherwise set errno, which keeps GCC to one scalar libm call per element: Adam took 2.3 ns
// instead of 0.34 ns per weight here) and with no libm calls in the loops.
#define LOGP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

LOGP_CLONES void AdamUpdate(int64_t n, const AdamCoefficients& c, const float* grad, float* w,
                            float* m, float* v) {
  const float b1 = c.beta1, b2 = c.beta2, c1 = 1 - c.beta1, c2 = 1 - c.beta2;
  const float wd = c.weight_decay, eps = c.eps, step_size = c.step_size;
  const float inv_sqrt_bias2 = c.inv_sqrt_bias2;
  if (wd != 0) {
    for (int64_t i = 0; i < n; ++i) {
      const float gi = grad[i] + wd * w[i];
      const float mi = b1 * m[i] + c1 * gi;
      const float vi = b2 * v[i] + c2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      w[i] -= step_size * mi / (std::sqrt(vi) * inv_sqrt_bias2 + eps);
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float gi = grad[i];
    const float mi = b1 * m[i] + c1 * gi;
    const float vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] -= step_size * mi / (std::sqrt(vi) * inv_sqrt_bias2 + eps);
  }
}

namespace {

// exp(t) for t in [-87, 0]: t = k ln2 + r with |r| <= ln2 / 2 (ln2 split in two so that k ln2
// is exact), exp(r) by Cephes's degree-6 polynomial, 2^k put in the exponent bits. About 1 ulp.
inline float ExpNonPositive(float t) {
  t = t < -87.0f ? -87.0f : t;
  // Round to nearest by the 1.5 * 2^23 trick (exact without fast-math; vectorises everywhere).
  const float k = (t * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (t - k * 0.693359375f) - k * -2.12194440e-4f;
  const float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * z + r + 1.0f;
  // Shifted unsigned: for a NaN t, k converts to INT_MIN (x86) and a signed shift of the
  // negative sum is undefined; the unsigned one gives the same bits (scale 1, the result NaN).
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return er * scale;
}

// log(1 + e) for e in [0, 1]: 2 atanh(s) with s = e / (2 + e) in [0, 1/3] (no rounding of 1 + e,
// so tiny e keep their digits), by the odd series to s^15 (truncation below 1e-9).
inline float Log1pUnit(float e) {
  const float s = e / (2.0f + e);
  const float s2 = s * s;
  float q = 1.0f / 15;
  q = q * s2 + 1.0f / 13;
  q = q * s2 + 1.0f / 11;
  q = q * s2 + 1.0f / 9;
  q = q * s2 + 1.0f / 7;
  q = q * s2 + 1.0f / 5;
  q = q * s2 + 1.0f / 3;
  q = q * s2 + 1.0f;
  return 2.0f * s * q;
}

// One element of BernoulliNllAndGrad. With e = exp(-|l|) and r = 1 / (1 + e), the two
// probabilities are r (of the outcome the logit's sign favours) and e r (of the other), each
// to float precision; sigmoid(l) - x is + or - one of them, never a difference of rounded
// numbers. The NLL is max(l, 0) - x l (exact for x in {0, 1}) + log(1 + e).
inline float Nll(float l, float x, float e) { return ((l > 0 ? l : 0.0f) - x * l) + Log1pUnit(e); }

inline float Term(float l, float x, float grad_scale, float* grad) {
  const float e = ExpNonPositive(-std::fabs(l));
  const float r = 1.0f / (1.0f + e);
  const bool zero = x < 0.5f;
  const float p_other = ((l >= 0) == zero) ? r : e * r;  // 1 - p(x | l)
  *grad = (zero ? p_other : -p_other) * grad_scale;
  return Nll(l, x, e);
}

inline float NllTerm(float l, float x) { return Nll(l, x, ExpNonPositive(-std::fabs(l))); }

}  // namespace

LOGP_CLONES double BernoulliNllAndGrad(int64_t n, const float* logits, const float* x,
                                       float grad_scale, float* grad) {
  // Lane-wise partial sums (a reduction GCC vectorises without reassociating), folded into a
  // double every block so that float sums stay short.
  constexpr int kLanes = 16;
  constexpr int64_t kBlock = 1024;
  double total = 0;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t end = b + kBlock < n ? b + kBlock : n;
    float acc[kLanes] = {};
    int64_t i = b;
    for (; i + kLanes <= end; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        acc[j] += Term(logits[i + j], x[i + j], grad_scale, &grad[i + j]);
      }
    }
    for (; i < end; ++i) {
      acc[0] += Term(logits[i], x[i], grad_scale, &grad[i]);
    }
    float s = 0;
    for (int j = 0; j < kLanes; ++j) s += acc[j];
    total += s;
  }
  return total;
}

LOGP_CLONES void BernoulliNllRows(int64_t rows, int64_t cols, const float* logits, const float* x,
                                  double* nll) {
  constexpr int kLanes = 16;
  for (int64_t r = 0; r < rows; ++r) {
    const float* l = logits + r * cols;
    const float* xr = x + r * cols;
    float acc[kLanes] = {};
    int64_t c = 0;
    for (; c + kLanes <= cols; c += kLanes) {
      for (int j = 0; j < kLanes; ++j) acc[j] += NllTerm(l[c + j], xr[c + j]);
    }
    for (; c < cols; ++c) acc[0] += NllTerm(l[c], xr[c]);
    double s = 0;
    for (int j = 0; j < kLanes; ++j) s += acc[j];
    nll[r] = s;
  }
}

LOGP_CLONES void ReluDropoutBackward(int64_t n, const float* a, const float* noise, float* d) {
  if (noise == nullptr) {
    for (int64_t i = 0; i < n; ++i) d[i] = a[i] > 0 ? d[i] : 0.0f;
    return;
  }
  for (int64_t i = 0; i < n; ++i) d[i] = a[i] > 0 ? d[i] * noise[i] : 0.0f;
}

namespace {

// The 8 values of each byte value, most significant bit first.
template <typename T>
struct ByteTable {
  T values[256][8];
  ByteTable() {
    for (int b = 0; b < 256; ++b) {
      for (int i = 0; i < 8; ++i) values[b][i] = static_cast<T>((b >> (7 - i)) & 1);
    }
  }
};

template <typename T>
void Unpack(int64_t rows, int64_t cols, int64_t row_bytes, const uint8_t* packed, T* out) {
  static const ByteTable<T> table;
  const int64_t full = cols / 8;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* src = packed + r * row_bytes;
    T* dst = out + r * cols;
    for (int64_t i = 0; i < full; ++i)
      std::memcpy(dst + 8 * i, table.values[src[i]], 8 * sizeof(T));
    for (int64_t c = 8 * full; c < cols; ++c) dst[c] = table.values[src[c >> 3]][c & 7];
  }
}

}  // namespace

void UnpackBits(int64_t rows, int64_t cols, int64_t row_bytes, const uint8_t* packed, float* out) {
  Unpack(rows, cols, row_bytes, packed, out);
}

void UnpackBits(int64_t rows, int64_t cols, int64_t row_bytes, const uint8_t* packed,
                uint8_t* out) {
  Unpack(rows, cols, row_bytes, packed, out);
}

}  // namespace logp
