#include "models/families/nade_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

namespace logp {
namespace {

// Records per block: the weight rows of a position are read once per block, and the block's
// state (a, P and h: 3 x 8 x H floats, 48 KB at H = 500) stays in L1/L2.
constexpr int kBlock = 8;

std::atomic<bool> allow_avx512{true};

inline float Sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }

// d loss / d logit for outcome x: sigmoid(l) - x, as -sigmoid(-l) when x = 1 (no cancellation).
inline float LogitGrad(float l, float x) { return x > 0.5f ? -Sigmoid(-l) : Sigmoid(l); }

// ---------------------------------------------------------------------------------------------
// Portable loops: the same algorithm, one record at a time within a block.

template <bool kGrad>
void PortableKernel(const NadeWeights& m, int64_t batch, const float* x, float scale, float* logits,
                    float* dw, float* dc, float* dv, float* db) {
  const int64_t dim = m.dim, hid = m.hidden;
  std::vector<float> a(kBlock * hid), p(kBlock * hid), s(kBlock * hid);
  for (int64_t b0 = 0; b0 < batch; b0 += kBlock) {
    const int n = static_cast<int>(std::min<int64_t>(kBlock, batch - b0));
    for (int r = 0; r < n; ++r) {
      std::copy(m.c, m.c + hid, a.begin() + r * hid);
      std::fill(p.begin() + r * hid, p.begin() + (r + 1) * hid, 0.f);
    }
    for (int64_t j = 0; j < dim; ++j) {
      const float *wj = m.w + j * hid, *vj = m.v + j * hid;
      for (int r = 0; r < n; ++r) {
        float* ar = a.data() + r * hid;
        float* sr = s.data() + r * hid;
        float acc = 0;
        for (int64_t k = 0; k < hid; ++k) {
          sr[k] = Sigmoid(ar[k]);
          acc += vj[k] * sr[k];
        }
        const float l = acc + m.b[j];
        logits[(b0 + r) * dim + j] = l;
        const float xr = x[(b0 + r) * dim + j];
        if (kGrad) {
          const float g = LogitGrad(l, xr) * scale;
          db[j] += g;
          float* pr = p.data() + r * hid;
          float *dvj = dv + j * hid, *dwj = dw + j * hid;
          for (int64_t k = 0; k < hid; ++k) {
            dvj[k] += g * sr[k];
            pr[k] += g * vj[k] * sr[k] * (1.f - sr[k]);
            if (xr != 0.f) dwj[k] -= pr[k];
          }
        }
        if (xr != 0.f) {
          for (int64_t k = 0; k < hid; ++k) ar[k] += wj[k];
        }
      }
    }
    if (!kGrad) continue;
    for (int r = 0; r < n; ++r) {
      const float* pr = p.data() + r * hid;
      for (int64_t j = 0; j < dim; ++j) {
        if (x[(b0 + r) * dim + j] == 0.f) continue;
        float* dwj = dw + j * hid;
        for (int64_t k = 0; k < hid; ++k) dwj[k] += pr[k];
      }
      for (int64_t k = 0; k < hid; ++k) dc[k] += pr[k];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// AVX-512: 16 hidden units per vector, the last vector masked; the block's 8 records unrolled.

#define LOGP_AVX512 __attribute__((target("avx512f")))

// sigmoid(a) = 1 / (1 + exp(-a)); exp by Cephes's range reduction and degree-6 polynomial (about
// 1 ulp) with -a clamped to [-87, 80] (below 2e-35 the exact value is immaterial and 1 + e stays
// far from overflow), the reciprocal by rcp14 and one Newton step (about 2 ulp).
LOGP_AVX512 inline __m512 Sigmoid16(__m512 a) {
  __m512 t = _mm512_sub_ps(_mm512_setzero_ps(), a);
  t = _mm512_min_ps(_mm512_max_ps(t, _mm512_set1_ps(-87.f)), _mm512_set1_ps(80.f));
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(t, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), t);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 q = _mm512_set1_ps(1.9875691500e-4f);
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.3981999507e-3f));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(8.3334519073e-3f));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(4.1665795894e-2f));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.6666665459e-1f));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 one = _mm512_set1_ps(1.f);
  __m512 e = _mm512_fmadd_ps(q, _mm512_mul_ps(r, r), _mm512_add_ps(r, one));
  e = _mm512_scalef_ps(e, k);
  const __m512 d = _mm512_add_ps(one, e);
  const __m512 y = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(y, _mm512_fnmadd_ps(d, y, one), y);
}

template <bool kGrad>
LOGP_AVX512 void Avx512Kernel(const NadeWeights& m, int64_t batch, const float* x, float scale,
                              float* logits, float* dw, float* dc, float* dv, float* db) {
  const int64_t dim = m.dim, hid = m.hidden;
  const int64_t nvec = (hid + 15) / 16, hp = nvec * 16;
  const __mmask16 tail = static_cast<__mmask16>(hid % 16 == 0 ? 0xFFFF : (1u << (hid % 16)) - 1);
  auto mask_at = [&](int64_t kv) -> __mmask16 { return kv == nvec - 1 ? tail : 0xFFFF; };
  // State rows padded to whole vectors; the padding lanes stay finite (a = 0, h = 1/2, P = 0)
  // and meet zero weights, so they never reach an output.
  std::vector<float> buf(3 * kBlock * hp + 64);
  float* base = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~63);
  float *a = base, *p = base + kBlock * hp, *s = base + 2 * kBlock * hp;
  for (int64_t b0 = 0; b0 < batch; b0 += kBlock) {
    const int n = static_cast<int>(std::min<int64_t>(kBlock, batch - b0));
    // Rows past the batch's end are zero records with zero weight in the loss.
    for (int r = 0; r < kBlock; ++r) {
      float* ar = a + r * hp;
      std::copy(m.c, m.c + hid, ar);
      std::fill(ar + hid, ar + hp, 0.f);
      std::fill(p + r * hp, p + (r + 1) * hp, 0.f);
    }
    for (int64_t j = 0; j < dim; ++j) {
      const float *wj = m.w + j * hid, *vj = m.v + j * hid;
      float xr[kBlock];
      for (int r = 0; r < kBlock; ++r) xr[r] = r < n ? x[(b0 + r) * dim + j] : 0.f;
      __m512 acc[kBlock];
      for (int r = 0; r < kBlock; ++r) acc[r] = _mm512_setzero_ps();
      for (int64_t kv = 0; kv < nvec; ++kv) {
        const __mmask16 mk = mask_at(kv);
        const __m512 vk = _mm512_maskz_loadu_ps(mk, vj + kv * 16);
#pragma GCC unroll 8
        for (int r = 0; r < kBlock; ++r) {
          const __m512 h = Sigmoid16(_mm512_load_ps(a + r * hp + kv * 16));
          if (kGrad) _mm512_store_ps(s + r * hp + kv * 16, h);
          acc[r] = _mm512_fmadd_ps(vk, h, acc[r]);
        }
      }
      float l[kBlock], g[kBlock];
      for (int r = 0; r < kBlock; ++r) {
        l[r] = _mm512_reduce_add_ps(acc[r]) + m.b[j];
        if (r < n) logits[(b0 + r) * dim + j] = l[r];
      }
      if (kGrad) {
        float gsum = 0;
        for (int r = 0; r < kBlock; ++r) {
          g[r] = r < n ? LogitGrad(l[r], xr[r]) * scale : 0.f;
          gsum += g[r];
        }
        db[j] += gsum;
        float *dvj = dv + j * hid, *dwj = dw + j * hid;
        for (int64_t kv = 0; kv < nvec; ++kv) {
          const __mmask16 mk = mask_at(kv);
          const int64_t o = kv * 16;
          const __m512 vk = _mm512_maskz_loadu_ps(mk, vj + o);
          const __m512 wk = _mm512_maskz_loadu_ps(mk, wj + o);
          __m512 dvk = _mm512_maskz_loadu_ps(mk, dvj + o);
          __m512 dwk = _mm512_maskz_loadu_ps(mk, dwj + o);
#pragma GCC unroll 8
          for (int r = 0; r < kBlock; ++r) {
            const __m512 h = _mm512_load_ps(s + r * hp + o);
            const __m512 gr = _mm512_set1_ps(g[r]);
            dvk = _mm512_fmadd_ps(gr, h, dvk);
            // da = g v h (1 - h); P += da.
            const __m512 hh = _mm512_fnmadd_ps(h, h, h);
            const __m512 pr =
                _mm512_fmadd_ps(_mm512_mul_ps(gr, vk), hh, _mm512_load_ps(p + r * hp + o));
            _mm512_store_ps(p + r * hp + o, pr);
            if (xr[r] != 0.f) {
              dwk = _mm512_sub_ps(dwk, pr);
              _mm512_store_ps(a + r * hp + o, _mm512_add_ps(_mm512_load_ps(a + r * hp + o), wk));
            }
          }
          _mm512_mask_storeu_ps(dvj + o, mk, dvk);
          _mm512_mask_storeu_ps(dwj + o, mk, dwk);
        }
      } else {
        for (int r = 0; r < n; ++r) {
          if (xr[r] == 0.f) continue;
          float* ar = a + r * hp;
          for (int64_t kv = 0; kv < nvec; ++kv) {
            const int64_t o = kv * 16;
            const __m512 wk = _mm512_maskz_loadu_ps(mask_at(kv), wj + o);
            _mm512_store_ps(ar + o, _mm512_add_ps(_mm512_load_ps(ar + o), wk));
          }
        }
      }
    }
    if (!kGrad) continue;
    // dW_j += x_j T and dc += T, T being P after the last position.
    for (int64_t j = 0; j < dim; ++j) {
      float* dwj = dw + j * hid;
      for (int64_t kv = 0; kv < nvec; ++kv) {
        const __mmask16 mk = mask_at(kv);
        const int64_t o = kv * 16;
        __m512 dwk = _mm512_maskz_loadu_ps(mk, dwj + o);
        bool any = false;
        for (int r = 0; r < n; ++r) {
          if (x[(b0 + r) * dim + j] == 0.f) continue;
          dwk = _mm512_add_ps(dwk, _mm512_load_ps(p + r * hp + o));
          any = true;
        }
        if (any) _mm512_mask_storeu_ps(dwj + o, mk, dwk);
      }
    }
    for (int64_t kv = 0; kv < nvec; ++kv) {
      const __mmask16 mk = mask_at(kv);
      const int64_t o = kv * 16;
      __m512 dck = _mm512_maskz_loadu_ps(mk, dc + o);
      for (int r = 0; r < n; ++r) dck = _mm512_add_ps(dck, _mm512_load_ps(p + r * hp + o));
      _mm512_mask_storeu_ps(dc + o, mk, dck);
    }
  }
}

bool CpuHasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

}  // namespace

bool NadeKernelsUseAvx512() { return allow_avx512.load() && CpuHasAvx512(); }

void TEST_NadeKernelsAllowAvx512(bool allow) { allow_avx512.store(allow); }

void NadeLogits(const NadeWeights& m, int64_t batch, const float* x, float* logits) {
  if (NadeKernelsUseAvx512()) {
    Avx512Kernel<false>(m, batch, x, 0, logits, nullptr, nullptr, nullptr, nullptr);
  } else {
    PortableKernel<false>(m, batch, x, 0, logits, nullptr, nullptr, nullptr, nullptr);
  }
}

void NadeLogitsAndGradients(const NadeWeights& m, int64_t batch, const float* x, float grad_scale,
                            float* logits, float* dw, float* dc, float* dv, float* db) {
  if (NadeKernelsUseAvx512()) {
    Avx512Kernel<true>(m, batch, x, grad_scale, logits, dw, dc, dv, db);
  } else {
    PortableKernel<true>(m, batch, x, grad_scale, logits, dw, dc, dv, db);
  }
}

}  // namespace logp
