#include "models/families/ar_sampling.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "models/families/fvsbn.h"
#include "models/families/made.h"
#include "models/families/nade.h"

namespace logp {
namespace {

std::vector<float> ToVector(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

torch::Tensor LongTensor(const std::vector<int64_t>& v) {
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kLong));
}

// Units sorted by degree (stable), and count[k] = units of degree <= k for k in [0, dim].
struct SortedUnits {
  torch::Tensor perm;
  std::vector<int64_t> count;
};

SortedUnits SortByDegree(const std::vector<int64_t>& degrees, int64_t dim) {
  std::vector<int64_t> idx(degrees.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int64_t a, int64_t b) { return degrees[a] < degrees[b]; });
  SortedUnits s;
  s.perm = LongTensor(idx);
  s.count.assign(dim + 1, 0);
  for (int64_t d : degrees) ++s.count[std::clamp<int64_t>(d, 0, dim)];
  for (int64_t k = 1; k <= dim; ++k) s.count[k] += s.count[k - 1];
  return s;
}

torch::Tensor Param(torch::nn::Module& m, const std::string& name) {
  return m.named_parameters()[name];
}

// Applies the kernel to chunk-aligned row ranges in parallel, polling between groups.
template <typename Kernel>
void RunChunks(int64_t n, int64_t dim, Kernel kernel) {
  const int64_t chunks = (n + kSampleChunkRows - 1) / kSampleChunkRows;
  const int64_t group = 2 * std::max(1, at::get_num_threads());
  for (int64_t g0 = 0; g0 < chunks; g0 += group) {
    PollStop();
    at::parallel_for(g0, std::min(chunks, g0 + group), 1, [&](int64_t c0, int64_t c1) {
      const int64_t r0 = c0 * kSampleChunkRows, r1 = std::min(n, c1 * kSampleChunkRows);
      kernel(r0, r1 - r0);
    });
  }
}

}  // namespace

MadeSamplingWeights MadeSamplingWeightsOf(MadeImpl& made) {
  torch::NoGradGuard no_grad;
  const MadeDegrees& deg = made.degrees(0);
  const std::vector<torch::Tensor> masks = made.MasksFor(0);
  MadeSamplingWeights w;
  w.order = made.order(0);
  w.dim = static_cast<int64_t>(w.order.size());
  const torch::Tensor order = LongTensor(w.order);
  const size_t layers = deg.hidden.size();
  std::vector<SortedUnits> sorted;
  for (const auto& d : deg.hidden) sorted.push_back(SortByDegree(d, w.dim));
  // Effective weights (masked; folded ones already are, and stay so).
  auto weight = [&](size_t l) {
    const std::string name = l < layers ? "hidden" + std::to_string(l) : "output";
    return Param(made, name + ".weight") * masks[l];
  };
  for (size_t l = 0; l < layers; ++l) {
    MadeSamplingWeights::Layer layer;
    layer.units = static_cast<int64_t>(deg.hidden[l].size());
    torch::Tensor wl = weight(l).index_select(0, sorted[l].perm);
    // Layer 1: [position][unit]; deeper: [unit][previous unit].
    wl = l == 0 ? wl.index_select(1, order).t() : wl.index_select(1, sorted[l - 1].perm);
    layer.weight = ToVector(wl);
    layer.bias = ToVector(
        Param(made, "hidden" + std::to_string(l) + ".bias").index_select(0, sorted[l].perm));
    layer.count = sorted[l].count;
    w.hidden.push_back(std::move(layer));
  }
  torch::Tensor out = weight(layers).index_select(0, order);
  if (layers > 0) w.out_weight = ToVector(out.index_select(1, sorted.back().perm));
  w.out_bias = ToVector(Param(made, "output.bias").index_select(0, order));
  if (masks.size() > layers + 1) {
    w.direct = ToVector((Param(made, "direct.weight") * masks[layers + 1])
                            .index_select(0, order)
                            .index_select(1, order));
  }
  return w;
}

MadeSamplingWeights FvsbnSamplingWeightsOf(FvsbnImpl& fvsbn) {
  torch::NoGradGuard no_grad;
  MadeSamplingWeights w;
  w.order = fvsbn.order();
  w.dim = static_cast<int64_t>(w.order.size());
  const torch::Tensor order = LongTensor(w.order);
  const torch::Tensor masked = Param(fvsbn, "weight") * fvsbn.named_buffers()["mask"];
  w.direct = ToVector(masked.index_select(0, order).index_select(1, order));
  w.out_bias = ToVector(Param(fvsbn, "bias").index_select(0, order));
  return w;
}

NadeSamplingWeights NadeSamplingWeightsOf(NadeImpl& nade) {
  torch::NoGradGuard no_grad;
  NadeSamplingWeights w;
  w.order = nade.order();
  w.dim = static_cast<int64_t>(w.order.size());
  const torch::Tensor order = LongTensor(w.order);
  const torch::Tensor c = Param(nade, "c");
  w.hidden = c.size(0);
  w.w = ToVector(Param(nade, "W").index_select(1, order).t());
  w.c = ToVector(c);
  w.v = ToVector(Param(nade, "V").index_select(0, order));
  w.b = ToVector(Param(nade, "b").index_select(0, order));
  return w;
}

torch::Tensor SampleIncrementally(const MadeSamplingWeights& w, int64_t n, at::Generator& gen) {
  const torch::Tensor u = torch::rand({n, w.dim}, gen);
  torch::Tensor x = torch::empty({n, w.dim});
  const float* up = u.data_ptr<float>();
  float* xp = x.data_ptr<float>();
  RunChunks(n, w.dim, [&](int64_t r0, int64_t rows) {
    SampleMadeBinary(w, rows, up + r0 * w.dim, xp + r0 * w.dim);
  });
  return x;
}

torch::Tensor SampleIncrementally(const NadeSamplingWeights& w, int64_t n, at::Generator& gen) {
  const torch::Tensor u = torch::rand({n, w.dim}, gen);
  torch::Tensor x = torch::empty({n, w.dim});
  const float* up = u.data_ptr<float>();
  float* xp = x.data_ptr<float>();
  RunChunks(n, w.dim, [&](int64_t r0, int64_t rows) {
    SampleNade(w, rows, up + r0 * w.dim, xp + r0 * w.dim);
  });
  return x;
}

torch::Tensor IncrementalLogits(const MadeSamplingWeights& w, const torch::Tensor& x) {
  const torch::Tensor xc = x.to(torch::kFloat).contiguous();
  torch::Tensor logits = torch::empty({xc.size(0), w.dim});
  MadeIncrementalLogits(w, xc.size(0), xc.data_ptr<float>(), logits.data_ptr<float>());
  return logits;
}

torch::Tensor IncrementalLogits(const NadeSamplingWeights& w, const torch::Tensor& x) {
  const torch::Tensor xc = x.to(torch::kFloat).contiguous();
  torch::Tensor logits = torch::empty({xc.size(0), w.dim});
  NadeIncrementalLogits(w, xc.size(0), xc.data_ptr<float>(), logits.data_ptr<float>());
  return logits;
}

}  // namespace logp
