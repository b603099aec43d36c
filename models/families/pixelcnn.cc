#include "models/families/pixelcnn.h"

#include <cmath>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "models/families/families.h"

namespace logp {
namespace {

// Records per scoring chunk in Logits: an activation of 64 * 784 * 48 floats is 9.6 MB.
constexpr int64_t kEvalChunk = 64;
// Records per chunk of the cached sampler (SampleWithUniforms).
constexpr int64_t kSampleChunk = 200;

// f over `rows` records of x at a time, the results concatenated (records are independent).
template <typename F>
torch::Tensor InRecordChunks(const torch::Tensor& x, int64_t rows, F f) {
  std::vector<torch::Tensor> parts;
  for (int64_t r = 0; r < x.size(0); r += rows) {
    parts.push_back(f(x.slice(0, r, std::min(x.size(0), r + rows))));
  }
  return torch::cat(parts);
}

struct Tap {
  int64_t dy, dx;
};

// The causal taps of a 7 x 7 mask-A kernel (rows above, then the pixels to the left) and of a
// 3 x 3 mask-B kernel (the row above, the pixel to the left, the pixel itself), in row-major
// kernel order: gathered patches hold one tap after the other.
std::vector<Tap> InputTaps() {
  std::vector<Tap> taps;
  for (int64_t dy = -3; dy <= 0; ++dy) {
    for (int64_t dx = -3; dx <= (dy < 0 ? 3 : -1); ++dx) taps.push_back({dy, dx});
  }
  return taps;
}
const Tap kMaskedTaps[] = {{-1, -1}, {-1, 0}, {-1, 1}, {0, -1}, {0, 0}};
constexpr int64_t kInputTaps = 24, kBlockTaps = 5;
// Rows of the head per chunk: few enough that the U-wide layer of a chunk (4096 x 1248 floats,
// 20 MiB) is not held for the whole batch, enough for OpenBLAS's K = C products to run near
// their best (measured here: 4 GFLOP/s at 256 rows, 34 at 1,024, 53 at 4,096).
constexpr int64_t kHeadChunkRows = 1024;
constexpr double kBatchNormEps = 1e-5;

torch::Tensor Uniform(std::vector<int64_t> sizes, double bound) {
  return (torch::rand(sizes) * 2 - 1) * bound;
}

// [B, H, W] images -> [B * H * W, 24] patches of the mask-A taps (zero outside the image).
torch::Tensor InputPatches(const torch::Tensor& img) {
  const int64_t h = img.size(1), w = img.size(2);
  auto p = torch::constant_pad_nd(img, {3, 3, 3, 0});
  std::vector<torch::Tensor> taps;
  for (const Tap& t : InputTaps()) {
    taps.push_back(p.slice(1, 3 + t.dy, 3 + t.dy + h).slice(2, 3 + t.dx, 3 + t.dx + w));
  }
  return torch::stack(taps, -1).reshape({-1, kInputTaps});
}

// [B, H, W, C] -> [B * H * W, 5 C] patches of the mask-B taps.
torch::Tensor MaskedPatches(const torch::Tensor& t) {
  const int64_t h = t.size(1), w = t.size(2), c = t.size(3);
  auto p = torch::constant_pad_nd(t, {0, 0, 1, 1, 1, 0});
  std::vector<torch::Tensor> taps;
  for (const Tap& k : kMaskedTaps) {
    taps.push_back(p.slice(1, 1 + k.dy, 1 + k.dy + h).slice(2, 1 + k.dx, 1 + k.dx + w));
  }
  return torch::cat(taps, -1).reshape({-1, kBlockTaps * c});
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// relu(r W1 + b1) w2 + b2 in chunks of rows; backward recomputes each chunk's hidden layer.
struct HeadFunction : public torch::autograd::Function<HeadFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& r,
                               const torch::Tensor& w1, const torch::Tensor& b1,
                               const torch::Tensor& w2, const torch::Tensor& b2) {
    auto rc = r.contiguous();
    ctx->save_for_backward({rc, w1, b1, w2});
    const int64_t n = rc.size(0);
    auto out = torch::empty({n}, rc.options());
    for (int64_t s = 0; s < n; s += kHeadChunkRows) {
      const int64_t m = std::min(kHeadChunkRows, n - s);
      auto h = torch::addmm(b1, rc.narrow(0, s, m), w1).relu_();
      auto o = out.narrow(0, s, m);
      torch::mv_out(o, h, w2);
    }
    return out.add_(b2);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &r = saved[0], &w1 = saved[1], &b1 = saved[2], &w2 = saved[3];
    auto g = grads[0].contiguous();
    const int64_t n = r.size(0);
    auto dr = torch::empty_like(r);
    auto dw1 = torch::zeros_like(w1), db1 = torch::zeros_like(b1), dw2 = torch::zeros_like(w2);
    // With M = [pre > 0] (0/1) and dh = diag(g) M diag(w2): dW1 = ((g r)^T M) diag(w2),
    // dr = diag(g) M (W1 diag(w2))^T, db1 = (g^T M) diag(w2): products of M, no [rows, U]
    // temporaries besides the recomputed layer itself.
    auto w1s_t = (w1 * w2).t();
    for (int64_t s = 0; s < n; s += kHeadChunkRows) {
      const int64_t m = std::min(kHeadChunkRows, n - s);
      auto rs = r.narrow(0, s, m);
      auto gs = g.narrow(0, s, m);
      auto h = torch::addmm(b1, rs, w1).relu_();
      dw2.addmv_(h.t(), gs);
      auto mask = h.gt_(0);
      dw1.addmm_((rs * gs.unsqueeze(1)).t(), mask);
      db1.addmv_(mask.t(), gs);
      auto drs = dr.narrow(0, s, m);
      torch::mm_out(drs, mask, w1s_t);
      drs.mul_(gs.unsqueeze(1));
    }
    dw1.mul_(w2);
    db1.mul_(w2);
    return {dr, dw1, db1, dw2, g.sum().reshape({1})};
  }
};

}  // namespace

torch::Tensor PixelCnnHead(const torch::Tensor& r, const torch::Tensor& w1, const torch::Tensor& b1,
                           const torch::Tensor& w2, const torch::Tensor& b2) {
  return HeadFunction::apply(r, w1, b1, w2, b2);
}

PixelCnnImpl::PixelCnnImpl(const PixelCnnShape& shape) : shape_(shape) {
  const int64_t c = shape.channels, h = c / 2, u = shape.head_units;
  // PyTorch's default initialisation of the uncropped convolutions: U(+-1/sqrt(fan_in)).
  input_w_ = register_parameter("input_weight", Uniform({kInputTaps, c}, 1.0 / 7));
  for (int64_t b = 0; b < shape.blocks; ++b) {
    Block k;
    const std::string p = absl::StrCat("block", b, "_");
    const double b1 = 1 / std::sqrt(double(c)), b2 = 1 / std::sqrt(9.0 * h),
                 b3 = 1 / std::sqrt(double(h));
    k.reduce_w = register_parameter(p + "reduce_weight", Uniform({c, h}, b1));
    k.reduce_b = register_parameter(p + "reduce_bias", Uniform({h}, b1));
    k.masked_w = register_parameter(p + "masked_weight", Uniform({kBlockTaps * h, h}, b2));
    k.masked_b = register_parameter(p + "masked_bias", Uniform({h}, b2));
    k.expand_w = register_parameter(p + "expand_weight", Uniform({h, c}, b3));
    k.expand_b = register_parameter(p + "expand_bias", Uniform({c}, b3));
    if (shape.batch_norm) {
      k.bn1 = register_module(p + "bn1", torch::nn::BatchNorm1d(h));
      k.bn2 = register_module(p + "bn2", torch::nn::BatchNorm1d(h));
      k.bn3 = register_module(p + "bn3", torch::nn::BatchNorm1d(c));
    }
    blocks_.push_back(std::move(k));
  }
  const double hb1 = 1 / std::sqrt(double(c)), hb2 = 1 / std::sqrt(double(u));
  head_w1_ = register_parameter("head_weight1", Uniform({c, u}, hb1));
  head_b1_ = register_parameter("head_bias1", Uniform({u}, hb1));
  head_w2_ = register_parameter("head_weight2", Uniform({u}, hb2));
  head_b2_ = register_parameter("head_bias2", Uniform({1}, hb2));
}

torch::Tensor PixelCnnImpl::Norm(torch::nn::BatchNorm1d bn, const torch::Tensor& t) {
  if (!bn) return t;
  // [N, C] rows are channels-last pixels: as a [1, C, N, 1] channels-last tensor (the same
  // memory) batch norm takes ATen's vectorised channels-last path, several times faster than
  // its [N, C] path, which walks each channel with stride C.
  const int64_t n = t.size(0), c = t.size(1);
  auto nchw = t.view({1, n, 1, c}).permute({0, 3, 1, 2});
  auto y =
      torch::batch_norm(nchw, bn->weight, bn->bias, bn->running_mean, bn->running_var,
                        is_training(), bn->options.momentum().value(), bn->options.eps(), false);
  return y.permute({0, 2, 3, 1}).reshape({n, c});
}

torch::Tensor PixelCnnImpl::Logits(const torch::Tensor& x) {
  const int64_t b = x.size(0), hh = shape_.height, ww = shape_.width;
  // Scoring (eval mode, no graph) goes kEvalChunk records at a time: per record, every row is
  // independent of the others, and chunks keep each activation under malloc's mmap threshold
  // (models/malloc_tuning.h). At 512 records an activation is 512 * 784 * C floats (77 MB at
  // C = 48), mapped and faulted in afresh each time: pixelcnn_bench sample scored 1,000 records
  // in 11.5 s at 512 per call, in 5.9 s in chunks.
  if (b > kEvalChunk && !is_training() && !torch::GradMode::is_enabled()) {
    return InRecordChunks(x, kEvalChunk, [this](const torch::Tensor& c) { return Logits(c); });
  }
  auto img = x.to(torch::kFloat).reshape({b, hh, ww});
  auto s = InputPatches(img).mm(input_w_);  // [N, C]
  for (const Block& k : blocks_) {
    auto t = Norm(k.bn1, torch::addmm(k.reduce_b, torch::relu(s), k.reduce_w)).relu();
    t = torch::addmm(k.masked_b, MaskedPatches(t.view({b, hh, ww, -1})), k.masked_w);
    t = Norm(k.bn2, t).relu();
    s = s + Norm(k.bn3, torch::addmm(k.expand_b, t, k.expand_w));
  }
  return PixelCnnHead(torch::relu(s), head_w1_, head_b1_, head_w2_, head_b2_).view({b, hh * ww});
}

torch::Tensor PixelCnnImpl::LogProb(const torch::Tensor& x) {
  return BernoulliLogLikelihood(Logits(x), x);
}

torch::Tensor PixelCnnImpl::PerDimensionLogProb(const torch::Tensor& x) {
  auto l = Logits(x).to(torch::kDouble);
  return x.to(torch::kDouble) * l - torch::nn::functional::softplus(l);
}

std::vector<int64_t> PixelCnnImpl::FactorOrder() const {
  std::vector<int64_t> order(shape_.height * shape_.width);
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  return order;
}

torch::Tensor PixelCnnImpl::FullInputKernel() const {
  auto k = torch::zeros({shape_.channels, 1, 7, 7});
  const auto taps = InputTaps();
  for (int64_t t = 0; t < kInputTaps; ++t) {
    k.select(2, taps[t].dy + 3).select(2, taps[t].dx + 3).select(1, 0).copy_(input_w_[t]);
  }
  return k;
}

torch::Tensor PixelCnnImpl::FullMaskedKernel(int64_t block) const {
  const int64_t h = shape_.channels / 2;
  auto k = torch::zeros({h, h, 3, 3});
  const auto& w = blocks_[block].masked_w;
  for (int64_t t = 0; t < kBlockTaps; ++t) {
    k.select(2, kMaskedTaps[t].dy + 1)
        .select(2, kMaskedTaps[t].dx + 1)
        .copy_(w.narrow(0, t * h, h).t());
  }
  return k;
}

torch::Tensor PixelCnnImpl::Sample(int64_t n, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  return SampleWithUniforms(torch::rand({n, shape_.height * shape_.width}, gen));
}

torch::Tensor PixelCnnImpl::ReferenceSampleWithUniforms(const torch::Tensor& u) {
  torch::NoGradGuard no_grad;
  auto x = torch::zeros_like(u);
  for (int64_t i = 0; i < u.size(1); ++i) {
    PollStop();
    auto p = torch::sigmoid(Logits(x).select(1, i));
    x.select(1, i).copy_(u.select(1, i).lt(p).to(torch::kFloat));
  }
  return x;
}

torch::Tensor PixelCnnImpl::SampleWithUniforms(const torch::Tensor& u) {
  torch::NoGradGuard no_grad;
  // Records are independent: kSampleChunk at a time keep the blocks' cached rows ([n, 2, W + 2,
  // C / 2] floats each, 58 MB over 10 blocks at n = 1,000) in the CPU's caches between steps.
  if (u.size(0) > kSampleChunk) {
    return InRecordChunks(u, kSampleChunk,
                          [this](const torch::Tensor& c) { return SampleWithUniforms(c); });
  }
  const int64_t n = u.size(0), hh = shape_.height, ww = shape_.width, c = shape_.channels;
  const int64_t h = c / 2;
  // Batch norm in eval mode is an affine map per channel: y = t * scale + shift.
  auto affine = [](const torch::nn::BatchNorm1d& bn) -> std::pair<torch::Tensor, torch::Tensor> {
    if (!bn) return {};
    auto scale = bn->weight / torch::sqrt(bn->running_var + bn->options.eps());
    return {scale, bn->bias - bn->running_mean * scale};
  };
  auto apply = [](const torch::Tensor& t, const std::pair<torch::Tensor, torch::Tensor>& a) {
    return a.first.defined() ? torch::addcmul(a.second, t, a.first) : t;
  };
  struct Cached {
    std::pair<torch::Tensor, torch::Tensor> n1, n2, n3;
    // The block's mask-B input for the current and the previous image row, zero-padded by one
    // column on each side: [n, 2, W + 2, C/2], row y in slot y % 2.
    torch::Tensor rows;
  };
  std::vector<Cached> cache;
  for (const Block& k : blocks_) {
    cache.push_back({affine(k.bn1), affine(k.bn2), affine(k.bn3), torch::zeros({n, 2, ww + 2, h})});
  }
  // The samples so far, padded as the mask-A kernel reads them.
  auto xpad = torch::zeros({n, hh + 3, ww + 6});
  auto out = torch::empty({n, hh * ww});
  for (int64_t y = 0; y < hh; ++y) {
    PollStop();
    for (int64_t x = 0; x < ww; ++x) {
      // The 24 mask-A taps of pixel (y, x): padded rows y..y+2, columns x..x+6, and row y+3,
      // columns x..x+2 (InputTaps' order).
      auto patch = torch::cat({xpad.slice(1, y, y + 3).slice(2, x, x + 7).reshape({n, 21}),
                               xpad.select(1, y + 3).slice(1, x, x + 3)},
                              1);
      auto s = patch.mm(input_w_);  // [n, C]
      for (size_t b = 0; b < blocks_.size(); ++b) {
        const Block& k = blocks_[b];
        Cached& m = cache[b];
        auto t = apply(torch::addmm(k.reduce_b, torch::relu(s), k.reduce_w), m.n1).relu_();
        auto cur = m.rows.select(1, y % 2), above = m.rows.select(1, (y + 1) % 2);
        cur.select(1, x + 1).copy_(t);
        auto taps = torch::cat({above.slice(1, x, x + 3).reshape({n, 3 * h}),
                                cur.slice(1, x, x + 2).reshape({n, 2 * h})},
                               1);
        t = apply(torch::addmm(k.masked_b, taps, k.masked_w), m.n2).relu_();
        s = s + apply(torch::addmm(k.expand_b, t, k.expand_w), m.n3);
      }
      auto logit = torch::addmv(head_b2_, torch::addmm(head_b1_, torch::relu(s), head_w1_).relu_(),
                                head_w2_);
      auto v = u.select(1, y * ww + x).lt(torch::sigmoid(logit)).to(torch::kFloat);
      out.select(1, y * ww + x).copy_(v);
      xpad.select(1, y + 3).select(1, x + 3).copy_(v);
    }
  }
  return out;
}

namespace {

absl::StatusOr<std::pair<int64_t, int64_t>> ImageShape(const v1::PixelCnnParams& m, int64_t dim) {
  int64_t h = m.height(), w = m.width();
  if (h == 0 && w == 0) {
    h = w = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(dim))));
    if (h * w != dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.pixelcnn.height and width are required: dim ", dim, " is not a square"));
    }
  }
  if (h <= 0 || w <= 0 || h * w != dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.pixelcnn.height * width must equal the data's dim ", dim, ", got ", h, " x ", w));
  }
  return std::make_pair(h, w);
}

PixelCnnShape ShapeOf(const v1::ModelSpec& spec, const DataShape& data) {
  const auto& m = spec.pixelcnn();
  PixelCnnShape s;
  std::tie(s.height, s.width) = ImageShape(m, data.dim).value();
  s.channels = m.channels();
  s.blocks = m.residual_blocks();
  s.head_units = m.hidden_units();
  s.batch_norm = m.batch_norm();
  return s;
}

}  // namespace

FamilyInfo PixelCnnFamily() {
  FamilyInfo f;
  f.family = v1::MODEL_FAMILY_PIXELCNN;
  f.name = "pixelcnn";
  f.kinds = {v1::DATA_KIND_BINARY};
  f.set_defaults = [](v1::ModelSpec* spec) {
    auto* m = spec->mutable_pixelcnn();
    if (m->channels() == 0) m->set_channels(48);
    if (m->residual_blocks() == 0) m->set_residual_blocks(10);
    if (m->hidden_units() == 0) m->set_hidden_units(1248);
    if (!m->has_batch_norm()) m->set_batch_norm(true);
  };
  f.validate = [](const v1::ModelSpec& spec, const DataShape& shape) -> absl::Status {
    const auto& m = spec.pixelcnn();
    auto st = CheckRange("model.pixelcnn.channels", m.channels(), 2, 512);
    if (st.ok() && m.channels() % 2 != 0) {
      st = absl::InvalidArgumentError(
          absl::StrCat("model.pixelcnn.channels must be even, got ", m.channels()));
    }
    if (st.ok()) st = CheckRange("model.pixelcnn.residual_blocks", m.residual_blocks(), 1, 64);
    if (st.ok()) st = CheckRange("model.pixelcnn.hidden_units", m.hidden_units(), 1, 8192);
    if (st.ok()) st = CheckRange("model.pixelcnn.height", m.height(), 0, 4096);
    if (st.ok()) st = CheckRange("model.pixelcnn.width", m.width(), 0, 4096);
    if (st.ok()) st = ImageShape(m, shape.dim).status();
    if (st.ok() && spec.regularization().dropout() > 0) {
      st = absl::InvalidArgumentError(
          "model.regularization.dropout is not supported by the pixelcnn family");
    }
    return st;
  };
  f.make = [](const v1::ModelSpec& spec, const DataShape& shape) {
    return std::make_shared<PixelCnnImpl>(ShapeOf(spec, shape));
  };
  f.footprint = [](const v1::ModelSpec& spec, const DataShape& shape) {
    const PixelCnnShape s = ShapeOf(spec, shape);
    const int64_t c = s.channels, h = c / 2, u = s.head_units, pixels = s.height * s.width;
    const int64_t norm = s.batch_norm ? 2 * (h + h + c) : 0;
    const int64_t block = c * h + h + kBlockTaps * h * h + h + h * c + c + norm;
    NetFootprint n;
    n.parameters = kInputTaps * c + s.blocks * block + c * u + u + u + 1;
    // Per pixel and block, the activations autograd keeps (about 6 C + 11 C/2 floats, more
    // with batch norm's saved statistics) and, at the peak of the backward pass, their
    // gradients; the input patches; the head's input, logits and one chunk of its hidden layer.
    const int64_t block_floats = 2 * (6 * c + (s.batch_norm ? 11 : 8) * h);
    n.step_bytes_per_record = 4 * pixels * (s.blocks * block_floats + kInputTaps + 4 * c + 8);
    n.eval_bytes_per_record = 4 * pixels * (kInputTaps + 8 * c + 4);
    return n;
  };
  return f;
}

}  // namespace logp
