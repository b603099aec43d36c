// PixelCNN (van den Oord et al., 2016) over binary images, computed as matrix products on
// channels-last activations [B * H * W, C] (no convolution op):
//
//   input   a 7 x 7 mask-A convolution 1 -> C without bias: only its 24 causal taps (the three
//           rows above the pixel and the three pixels to its left) are gathered and multiplied;
//   blocks  R residual bottlenecks s += BN(W3 relu(BN(maskB3x3 relu(BN(W1 relu(s)))))), C -> C/2
//           -> C/2 -> C; the 3 x 3 mask-B convolution gathers its 5 causal taps (the row above
//           and the pixel to the left, and the pixel itself);
//   head    relu, 1 x 1 C -> U, relu, 1 x 1 U -> 1: the logit of p(x_i = 1 | x_<i). Computed in
//           chunks of rows by a hand-written autograd function that recomputes the U-wide layer
//           in its backward pass instead of holding it ([B * H * W, U] floats otherwise).
//
// The masked rows and columns of the kernels are never computed, so the model is causal by
// construction (tested by autograd: no logit depends on its own pixel or a later one). In eval
// mode (batch norm on its running averages) log p(x) = sum_i log Bernoulli(x_i | logit_i) is an
// exact, normalised likelihood (tested by enumeration). Sampling is sequential in raster order
// with every layer's activations cached: pixel i's step computes each layer at pixel i only.
#ifndef LOGP_MODELS_FAMILIES_PIXELCNN_H_
#define LOGP_MODELS_FAMILIES_PIXELCNN_H_

#include <cstdint>
#include <vector>

#include "models/density_net.h"

namespace logp {

struct PixelCnnShape {
  int64_t height = 0, width = 0;
  int64_t channels = 48, blocks = 10, head_units = 1248;
  bool batch_norm = true;
};

class PixelCnnImpl : public DensityNet {
 public:
  explicit PixelCnnImpl(const PixelCnnShape& shape);
  // Logits [B, H * W] of p(x_i = 1 | x_<i), x [B, H * W] in raster order.
  torch::Tensor Logits(const torch::Tensor& x);
  torch::Tensor LogProb(const torch::Tensor& x) override;
  torch::Tensor PerDimensionLogProb(const torch::Tensor& x) override;
  std::vector<int64_t> FactorOrder() const override;
  // The cached sequential sampler (uniforms [n, D] from one torch::rand on `gen`).
  torch::Tensor Sample(int64_t n, at::Generator& gen) override;
  // Samples with the given uniforms u [n, D]: x_i = 1 when u_i < sigmoid(logit_i).
  torch::Tensor SampleWithUniforms(const torch::Tensor& u);
  // The same draws by a full forward pass per pixel: the baseline of the sampler's tests and
  // benchmark.
  torch::Tensor ReferenceSampleWithUniforms(const torch::Tensor& u);

  // Full (masked, uncropped) convolution kernels of the same weights, for tests against
  // torch::conv2d: the input kernel [C, 1, 7, 7] and block b's mask-B kernel [C/2, C/2, 3, 3].
  torch::Tensor FullInputKernel() const;
  torch::Tensor FullMaskedKernel(int64_t block) const;
  const PixelCnnShape& shape() const { return shape_; }

 private:
  struct Block {
    torch::Tensor reduce_w, reduce_b, masked_w, masked_b, expand_w, expand_b;
    torch::nn::BatchNorm1d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  };
  torch::Tensor Norm(torch::nn::BatchNorm1d bn, const torch::Tensor& t);

  PixelCnnShape shape_;
  torch::Tensor input_w_;  // [24, C]: tap-major rows
  std::vector<Block> blocks_;
  torch::Tensor head_w1_, head_b1_, head_w2_, head_b2_;  // [C, U], [U], [U], [1]
};

// The logits of PixelCnnImpl's head, relu(r W1 + b1) w2 + b2 for r [N, C], by the chunked
// autograd function (differentiable in all five inputs). Exposed for its gradient test.
torch::Tensor PixelCnnHead(const torch::Tensor& r, const torch::Tensor& w1, const torch::Tensor& b1,
                           const torch::Tensor& w2, const torch::Tensor& b2);

}  // namespace logp

#endif  // LOGP_MODELS_FAMILIES_PIXELCNN_H_
