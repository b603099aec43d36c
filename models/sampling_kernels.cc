#include "models/sampling_kernels.h"

#include <algorithm>
#include <cstring>

namespace logp {

// Dispatched at load time (GNU ifunc), as in models/kernels.cc. Sums may round differently on
// different instruction sets (FMA contraction, vector widths): samples are reproducible by seed
// on one machine.
#define LOGP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

namespace {

constexpr int64_t R = kSampleChunkRows;
static_assert(R % 4 == 0, "NadeChunk sums four records at a time");

// exp(t) for t in [-87, 87] (clamped there), about 1 ulp: the range reduction and polynomial
// of models/kernels.cc's ExpNonPositive.
inline float ExpClamped(float t) {
  t = t < -87.0f ? -87.0f : (t > 87.0f ? 87.0f : t);
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
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return er * scale;
}

// sigmoid(a) = 1 / (1 + exp(-a)); |a| > 87 saturates (to 1, or to below 1.7e-38).
inline float Sigmoid(float a) { return 1.0f / (1.0f + ExpClamped(-a)); }

// The next values of a chunk at position i: drawn from the uniforms (sampling), or read from
// given records (the logits check), whose logits are then recorded.
struct ChunkIo {
  int64_t rows;  // valid rows of the chunk (<= R); the rest are padding
  int64_t dim;
  const float* u;     // sampling: uniforms [rows][dim]
  const float* x_in;  // logits check: records [rows][dim]
  float* x_out;       // sampling: [rows][dim]
  float* logits;      // logits check: [rows][dim]
};

// xv[r] for variable `var` from the logits l[r].
inline void Choose(const ChunkIo& io, int64_t var, const float* l, float* xv) {
  if (io.u != nullptr) {
    float uv[R], s[R];
    for (int64_t r = 0; r < R; ++r) uv[r] = r < io.rows ? io.u[r * io.dim + var] : 2.0f;
    for (int64_t r = 0; r < R; ++r) s[r] = Sigmoid(l[r]);
    for (int64_t r = 0; r < R; ++r) xv[r] = uv[r] < s[r] ? 1.0f : 0.0f;
    for (int64_t r = 0; r < io.rows; ++r) io.x_out[r * io.dim + var] = xv[r];
  } else {
    for (int64_t r = 0; r < R; ++r) xv[r] = r < io.rows ? io.x_in[r * io.dim + var] : 0.0f;
    for (int64_t r = 0; r < io.rows; ++r) io.logits[r * io.dim + var] = l[r];
  }
}

// acc[r] += w * max(src[r], 0) or w * src[r], for the R records of one unit.
inline void AxpyRelu(float w, const float* src, float* acc) {
  for (int64_t r = 0; r < R; ++r) acc[r] += w * std::max(src[r], 0.0f);
}
inline void Axpy(float w, const float* src, float* acc) {
  for (int64_t r = 0; r < R; ++r) acc[r] += w * src[r];
}

// One chunk of a MADE. State is unit-major ([unit][R]) so that every loop runs over the R
// records of a unit: vectorised without reassociating any sum.
LOGP_CLONES void MadeChunk(const MadeSamplingWeights& w, const ChunkIo& io) {
  const int64_t dim = w.dim;
  const size_t layers = w.hidden.size();
  // act[0] holds layer 1's pre-activation (read through relu); act[l] layer l + 1's output.
  std::vector<std::vector<float>> act(layers);
  for (size_t l = 0; l < layers; ++l) act[l].assign(w.hidden[l].units * R, 0.0f);
  if (layers > 0) {
    const auto& h1 = w.hidden[0];
    for (int64_t v = 0; v < h1.units; ++v) std::fill_n(&act[0][v * R], R, h1.bias[v]);
  }
  std::vector<float> xpos(w.direct.empty() ? 0 : dim * R, 0.0f);
  alignas(64) float l[R], xv[R];
  for (int64_t i = 0; i < dim; ++i) {
    // Units of degree i of layers >= 2 have all their inputs: compute them once.
    for (size_t li = 1; li < layers && i >= 1; ++li) {
      const auto& layer = w.hidden[li];
      const int64_t in_units = w.hidden[li - 1].units;
      const int64_t prefix = w.hidden[li - 1].count[i];
      for (int64_t u = layer.count[i - 1]; u < layer.count[i]; ++u) {
        float acc[R];
        std::fill_n(acc, R, layer.bias[u]);
        const float* wr = &layer.weight[u * in_units];
        const float* src = act[li - 1].data();
        if (li == 1) {
          for (int64_t v = 0; v < prefix; ++v) AxpyRelu(wr[v], src + v * R, acc);
        } else {
          for (int64_t v = 0; v < prefix; ++v) Axpy(wr[v], src + v * R, acc);
        }
        float* dst = &act[li][u * R];
        for (int64_t r = 0; r < R; ++r) dst[r] = std::max(acc[r], 0.0f);
      }
    }
    std::fill_n(l, R, w.out_bias[i]);
    if (layers > 0) {
      const int64_t units = w.hidden.back().units;
      const int64_t prefix = w.hidden.back().count[i];
      const float* wr = &w.out_weight[i * units];
      const float* src = act.back().data();
      if (layers == 1) {
        for (int64_t v = 0; v < prefix; ++v) AxpyRelu(wr[v], src + v * R, l);
      } else {
        for (int64_t v = 0; v < prefix; ++v) Axpy(wr[v], src + v * R, l);
      }
    }
    if (!w.direct.empty()) {
      const float* wr = &w.direct[i * dim];
      for (int64_t j = 0; j < i; ++j) Axpy(wr[j], &xpos[j * R], l);
    }
    Choose(io, w.order[i], l, xv);
    if (!xpos.empty()) std::copy_n(xv, R, &xpos[i * R]);
    if (layers > 0 && std::any_of(xv, xv + R, [](float f) { return f != 0.0f; })) {
      // x_i reaches the layer-1 units of degree >= i + 1.
      const auto& h1 = w.hidden[0];
      const float* col = &h1.weight[i * h1.units];
      float* a = act[0].data();
      for (int64_t v = h1.count[i]; v < h1.units; ++v) {
        const float c = col[v];
        float* av = a + v * R;
        for (int64_t r = 0; r < R; ++r) av[r] += c * xv[r];
      }
    }
  }
}

// One chunk of a NADE: record-major state ([R][hidden]); sigmoid(a) is recomputed only for
// the records whose a changed.
LOGP_CLONES void NadeChunk(const NadeSamplingWeights& w, const ChunkIo& io) {
  const int64_t dim = w.dim, hidden = w.hidden;
  std::vector<float> a(R * hidden), h(R * hidden);
  for (int64_t r = 0; r < R; ++r) {
    std::copy_n(w.c.data(), hidden, &a[r * hidden]);
    for (int64_t k = 0; k < hidden; ++k) h[r * hidden + k] = Sigmoid(w.c[k]);
  }
  alignas(64) float l[R], xv[R];
  for (int64_t i = 0; i < dim; ++i) {
    const float* vr = &w.v[i * hidden];
    // Four records at a time: four independent sums share each load of V_i.
    for (int64_t r = 0; r < R; r += 4) {
      const float *h0 = &h[r * hidden], *h1 = h0 + hidden, *h2 = h1 + hidden, *h3 = h2 + hidden;
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
      for (int64_t k = 0; k < hidden; ++k) {
        s0 += vr[k] * h0[k];
        s1 += vr[k] * h1[k];
        s2 += vr[k] * h2[k];
        s3 += vr[k] * h3[k];
      }
      l[r] = w.b[i] + s0;
      l[r + 1] = w.b[i] + s1;
      l[r + 2] = w.b[i] + s2;
      l[r + 3] = w.b[i] + s3;
    }
    Choose(io, w.order[i], l, xv);
    const float* wr = &w.w[i * hidden];
    for (int64_t r = 0; r < io.rows; ++r) {
      if (xv[r] == 0.0f) continue;
      float* ar = &a[r * hidden];
      float* hr = &h[r * hidden];
      for (int64_t k = 0; k < hidden; ++k) {
        ar[k] += wr[k];
        hr[k] = Sigmoid(ar[k]);
      }
    }
  }
}

template <typename Weights, typename Chunk>
void ForEachChunk(const Weights& w, int64_t rows, const float* u, const float* x_in, float* x_out,
                  float* logits, Chunk chunk) {
  for (int64_t r0 = 0; r0 < rows; r0 += R) {
    const int64_t off = r0 * w.dim;
    ChunkIo io{std::min(R, rows - r0),        w.dim,
               u ? u + off : nullptr,         x_in ? x_in + off : nullptr,
               x_out ? x_out + off : nullptr, logits ? logits + off : nullptr};
    chunk(w, io);
  }
}

}  // namespace

void SampleMadeBinary(const MadeSamplingWeights& w, int64_t rows, const float* u, float* x) {
  ForEachChunk(w, rows, u, nullptr, x, nullptr, MadeChunk);
}

void MadeIncrementalLogits(const MadeSamplingWeights& w, int64_t rows, const float* x,
                           float* logits) {
  ForEachChunk(w, rows, nullptr, x, nullptr, logits, MadeChunk);
}

void SampleNade(const NadeSamplingWeights& w, int64_t rows, const float* u, float* x) {
  ForEachChunk(w, rows, u, nullptr, x, nullptr, NadeChunk);
}

void NadeIncrementalLogits(const NadeSamplingWeights& w, int64_t rows, const float* x,
                           float* logits) {
  ForEachChunk(w, rows, nullptr, x, nullptr, logits, NadeChunk);
}

}  // namespace logp
