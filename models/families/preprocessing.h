#ifndef LOGP_MODELS_FAMILIES_PREPROCESSING_H_
#define LOGP_MODELS_FAMILIES_PREPROCESSING_H_

#include <memory>

#include "models/density_net.h"

namespace logp {

// Preprocessing of data on [0, levels) (e.g. 8-bit images) as a decorator around the family's
// net, so that every likelihood is reported in the data space the user uploaded:
//   x' = x + u, u ~ U[0, 1) in train mode (dequantize), x + 1/2 in eval mode, or x' = x;
//   y  = logit(s), s = alpha + (1 - 2 alpha) x' / levels (logit), or y = x';
//   log p(x) = log p_inner(y) + sum_d log |dy_d / dx'_d|,
// with log |dy/dx'| = log(1 - 2 alpha) - log(levels) - log(s) - log(1 - s) per dimension.
// The model's support is x' in [0, levels]: a record with any value outside scores -infinity
// (the inner density is never evaluated there, so nothing turns into NaN).
class PreprocessedNetImpl : public DensityNet {
 public:
  PreprocessedNetImpl(std::shared_ptr<DensityNet> inner, const v1::Preprocessing& options);
  torch::Tensor LogProb(const torch::Tensor& x) override;
  torch::Tensor Loss(const torch::Tensor& x) override;
  ScoreBatch Score(const torch::Tensor& x, const ScoreOptions& options) override;
  // Inner samples mapped back to data space: x' in [0, levels), then floor(x') (the quantised
  // value, whose score is that of its bin centre) when dequantising.
  torch::Tensor Sample(int64_t n, at::Generator& gen) override;
  Fit fit() const override { return inner_->fit(); }
  // The inner fits see transformed data, with fresh dequantisation noise.
  void FitClosedForm(const torch::Tensor& x) override;
  void EmStep(const torch::Tensor& x) override;
  void BeforeStep(int64_t step) override { inner_->BeforeStep(step); }
  // The inner net's terms at y plus each dimension's log |dy_d/dx'_d|; -infinity for a value
  // outside [0, levels] (the record's log p is then -infinity too). Undefined if the inner's is.
  torch::Tensor PerDimensionLogProb(const torch::Tensor& x) override;
  std::vector<int64_t> FactorOrder() const override { return inner_->FactorOrder(); }

  // y, the per-record log |dy/dx'| (double) and whether each record lies in the support, for
  // x' = Dequantized(x). `noise`: add U[0, 1) (else 1/2) when dequantising.
  struct Transformed {
    torch::Tensor y;             // [B, D] float
    torch::Tensor log_det;       // [B] double
    torch::Tensor inside;        // [B] bool
    torch::Tensor log_det_dims;  // [B, D] double: log_det per dimension
    torch::Tensor inside_dims;   // [B, D] bool: inside per dimension
  };
  Transformed Transform(const torch::Tensor& x, bool noise) const;
  DensityNet& inner() { return *inner_; }

 private:
  std::shared_ptr<DensityNet> inner_;
  bool dequantize_, logit_;
  double levels_, alpha_;
};

}  // namespace logp

#endif  // LOGP_MODELS_FAMILIES_PREPROCESSING_H_
