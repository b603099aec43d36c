#include "models/families/preprocessing.h"

#include <cmath>
#include <limits>

namespace logp {

PreprocessedNetImpl::PreprocessedNetImpl(std::shared_ptr<DensityNet> inner,
                                         const v1::Preprocessing& options)
    : inner_(register_module("inner", std::move(inner))),
      dequantize_(options.dequantize()),
      logit_(options.logit()),
      levels_(options.levels()),
      alpha_(options.logit_alpha()) {}

PreprocessedNetImpl::Transformed PreprocessedNetImpl::Transform(const torch::Tensor& x,
                                                                bool noise) const {
  Transformed t;
  auto xp = x.to(torch::kDouble);
  if (dequantize_)
    xp = noise ? xp + torch::rand(xp.sizes(), NoiseGenerator(), xp.options()) : xp + 0.5;
  t.inside_dims = (xp >= 0) & (xp <= levels_);
  t.inside = t.inside_dims.all(1);
  // Outside the support the record scores -inf; clamping keeps the arithmetic finite.
  auto xc = xp.clamp(0, levels_);
  if (!logit_) {
    t.y = xc;
    t.log_det_dims = torch::zeros_like(xc);
    t.log_det = torch::zeros({x.size(0)}, torch::kDouble);
    return t;
  }
  // s and 1 - s computed directly, so that neither loses digits near 0 or levels.
  const double scale = (1 - 2 * alpha_) / levels_;
  auto log_s = torch::log(alpha_ + scale * xc);
  auto log_1ms = torch::log(alpha_ + scale * (levels_ - xc));
  t.y = log_s - log_1ms;
  t.log_det_dims = std::log(scale) - log_s - log_1ms;
  t.log_det = t.log_det_dims.sum(1);
  return t;
}

torch::Tensor PreprocessedNetImpl::LogProb(const torch::Tensor& x) {
  auto t = Transform(x, is_training());
  auto lp = inner_->LogProb(t.y.to(torch::kFloat)).to(torch::kDouble) + t.log_det;
  return torch::where(t.inside, lp, torch::full_like(lp, -std::numeric_limits<double>::infinity()));
}

torch::Tensor PreprocessedNetImpl::Loss(const torch::Tensor& x) {
  auto t = Transform(x, is_training());
  auto log_det = torch::where(
      t.inside, t.log_det, torch::full_like(t.log_det, -std::numeric_limits<double>::infinity()));
  return inner_->Loss(t.y.to(torch::kFloat)).to(torch::kDouble) - log_det.mean();
}

ScoreBatch PreprocessedNetImpl::Score(const torch::Tensor& x, const ScoreOptions& options) {
  auto t = Transform(x, is_training());
  ScoreBatch s = inner_->Score(t.y.to(torch::kFloat), options);
  auto lp = s.log_prob.to(torch::kDouble) + t.log_det;
  s.log_prob =
      torch::where(t.inside, lp, torch::full_like(lp, -std::numeric_limits<double>::infinity()));
  return s;
}

torch::Tensor PreprocessedNetImpl::PerDimensionLogProb(const torch::Tensor& x) {
  auto t = Transform(x, /*noise=*/false);
  auto inner = inner_->PerDimensionLogProb(t.y.to(torch::kFloat));
  if (!inner.defined()) return inner;
  auto terms = inner.to(torch::kDouble) + t.log_det_dims;
  return torch::where(t.inside_dims, terms,
                      torch::full_like(terms, -std::numeric_limits<double>::infinity()));
}

torch::Tensor PreprocessedNetImpl::Sample(int64_t n, at::Generator& gen) {
  auto y = inner_->Sample(n, gen).to(torch::kDouble);
  auto xp = logit_ ? (torch::sigmoid(y) - alpha_) * levels_ / (1 - 2 * alpha_) : y;
  // The inner density puts a little mass outside [0, levels): fold it onto the edges.
  if (dequantize_) return torch::floor(xp).clamp(0, levels_ - 1).to(torch::kFloat);
  const double top = std::nextafter(static_cast<float>(levels_), 0.0f);
  return xp.clamp(0, top).to(torch::kFloat);
}

void PreprocessedNetImpl::FitClosedForm(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  inner_->FitClosedForm(Transform(x, /*noise=*/true).y.to(torch::kFloat));
}

void PreprocessedNetImpl::EmStep(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  inner_->EmStep(Transform(x, /*noise=*/true).y.to(torch::kFloat));
}

}  // namespace logp
