#include "models/families/gaussian.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "models/families/families.h"

namespace logp {
namespace {

const double kLog2Pi = std::log(2.0 * M_PI);

// INVALID_ARGUMENT "<field> must be in (0, hi], got v" unless 0 < v <= hi.
absl::Status CheckPositive(const std::string& field, double value, double hi) {
  if (!(value > 0 && value <= hi)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be in (0, ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

// [K, B] log pi_k + log N(x_b; mu_k, L_k L_k^T) for log_w [K], mu [K, D] and either the
// diagonal scales [K, D] (chol undefined) or the Cholesky factors [K, D, D] (scales = their
// diagonal). Works in the dtype of its arguments.
torch::Tensor LogJoint(const torch::Tensor& x, const torch::Tensor& log_w, const torch::Tensor& mu,
                       const torch::Tensor& scales, const torch::Tensor& chol) {
  const int64_t d = x.size(1);
  auto diff = x.unsqueeze(0) - mu.unsqueeze(1);  // [K, B, D]
  torch::Tensor quad;
  if (chol.defined()) {
    // z = L^{-1} (x - mu): one triangular solve per component.
    auto z = torch::linalg_solve_triangular(chol, diff.transpose(1, 2), /*upper=*/false);
    quad = z.pow(2).sum(1);  // [K, B]
  } else {
    quad = (diff / scales.unsqueeze(1)).pow(2).sum(2);
  }
  auto log_det = torch::log(scales).sum(1);  // [K]: log |L_k| = 1/2 log |Sigma_k|
  return log_w.unsqueeze(1) - 0.5 * quad - log_det.unsqueeze(1) - 0.5 * d * kLog2Pi;
}

// Cholesky factor of a symmetric positive-definite [D, D] matrix, adding jitter (from
// `jitter`, times 10 per failure) if rounding makes it indefinite.
torch::Tensor RobustCholesky(const torch::Tensor& s, double jitter) {
  auto eye = torch::eye(s.size(0), s.options());
  for (int i = 0; i < 12; ++i) {
    auto [l, info] = torch::linalg_cholesky_ex(s + (i == 0 ? 0.0 : jitter) * eye);
    if (info.item<int64_t>() == 0) return l;
    jitter *= 10;
  }
  // Give up on the covariance: an isotropic factor keeps the model a density.
  return torch::diag(torch::sqrt(torch::diagonal(s).clamp_min(jitter)));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Diagonal Gaussian.

GaussianNetImpl::GaussianNetImpl(int64_t dim, double min_variance) : min_variance_(min_variance) {
  mean_ = register_parameter("mean", torch::zeros({dim}));
  log_var_ = register_parameter("log_var", torch::zeros({dim}));
}

torch::Tensor GaussianNetImpl::LogProb(const torch::Tensor& x) {
  auto log_var = log_var_.clamp_min(std::log(min_variance_));
  auto z2 = (x - mean_).pow(2) * torch::exp(-log_var);
  return -0.5 * (z2 + log_var + kLog2Pi).sum(1);
}

torch::Tensor GaussianNetImpl::Sample(int64_t n, at::Generator& gen) {
  auto eps = torch::randn({n, mean_.size(0)}, gen);
  return mean_.detach() + torch::sqrt(Variance()) * eps;
}

torch::Tensor GaussianNetImpl::PerDimensionLogProb(const torch::Tensor& x) {
  auto log_var = log_var_.detach().to(torch::kDouble).clamp_min(std::log(min_variance_));
  auto z2 =
      (x.to(torch::kDouble) - mean_.detach().to(torch::kDouble)).pow(2) * torch::exp(-log_var);
  return -0.5 * (z2 + log_var + kLog2Pi);
}

void GaussianNetImpl::FitClosedForm(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  auto xd = x.to(torch::kDouble);
  auto m = xd.mean(0);
  auto v = (xd - m).pow(2).mean(0).clamp_min(min_variance_);
  mean_.copy_(m);
  log_var_.copy_(torch::log(v));
}

torch::Tensor GaussianNetImpl::Variance() const {
  return torch::exp(log_var_.detach()).clamp_min(min_variance_);
}

// ---------------------------------------------------------------------------------------------
// Gaussian mixture.

GaussianMixtureNetImpl::GaussianMixtureNetImpl(int64_t dim, int64_t components,
                                               bool full_covariance, bool em, double min_variance)
    : dim_(dim),
      components_(components),
      full_(full_covariance),
      em_(em),
      min_variance_(min_variance) {
  // Drawn from the process generator, which Model::Create seeds with the job seed.
  init_seed_ = static_cast<uint64_t>(
      torch::randint(0, int64_t{1} << 62, {1}, torch::TensorOptions().dtype(torch::kLong))
          .item<int64_t>());
  logits_ = register_parameter("logits", torch::zeros({components}));
  means_ = register_parameter("means", torch::randn({components, dim}));
  log_scale_ = register_parameter("log_scale", torch::zeros({components, dim}));
  if (full_) lower_ = register_parameter("lower", torch::zeros({components, dim, dim}));
  initialised_ = register_buffer("initialised", torch::zeros({}));
}

torch::Tensor GaussianMixtureNetImpl::Scales() const {
  return torch::exp(log_scale_.clamp_min(0.5 * std::log(min_variance_)));
}

torch::Tensor GaussianMixtureNetImpl::Cholesky() const {
  return torch::tril(lower_, -1) + torch::diag_embed(Scales());
}

torch::Tensor GaussianMixtureNetImpl::ComponentLogJoint(const torch::Tensor& x) {
  return LogJoint(x, torch::log_softmax(logits_, 0), means_, Scales(),
                  full_ ? Cholesky() : torch::Tensor());
}

torch::Tensor GaussianMixtureNetImpl::LogProb(const torch::Tensor& x) {
  return torch::logsumexp(ComponentLogJoint(x), 0);
}

torch::Tensor GaussianMixtureNetImpl::Loss(const torch::Tensor& x) {
  // Data-dependent initialisation on the first training batch (gradient training).
  if (is_training() && initialised_.item<double>() == 0) InitialiseFrom(x);
  return -LogProb(x).mean();
}

void GaussianMixtureNetImpl::InitialiseFrom(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  auto xd = x.detach().to(torch::kDouble);
  const int64_t n = xd.size(0);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(init_seed_);
  auto perm = torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong));
  // K distinct records when there are at least K; otherwise records repeat.
  auto idx = n >= components_ ? perm.slice(0, 0, components_)
                              : perm.index_select(0, torch::arange(components_) % n);
  means_.copy_(xd.index_select(0, idx));
  auto var = (xd - xd.mean(0)).pow(2).mean(0).clamp_min(min_variance_);  // [D]
  log_scale_.copy_((0.5 * torch::log(var)).expand({components_, dim_}));
  logits_.zero_();
  if (full_) lower_.zero_();
  initialised_.fill_(1);
}

void GaussianMixtureNetImpl::EmStep(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  if (initialised_.item<double>() == 0) InitialiseFrom(x);
  const auto dbl = torch::kDouble;
  auto xd = x.to(dbl);
  const double n = static_cast<double>(xd.size(0));
  // E step: responsibilities r [K, N] in log space.
  auto chol = full_ ? Cholesky().to(dbl) : torch::Tensor();
  auto joint =
      LogJoint(xd, torch::log_softmax(logits_.to(dbl), 0), means_.to(dbl), Scales().to(dbl), chol);
  auto r = torch::exp(joint - torch::logsumexp(joint, 0, true));
  auto nk = r.sum(1);  // [K]
  // M step. A component that lost all its records keeps its parameters.
  auto alive = nk > 1e-8;
  auto nk_safe = nk.clamp_min(1e-8).unsqueeze(1);
  auto mu = torch::where(alive.unsqueeze(1), torch::matmul(r, xd) / nk_safe, means_.to(dbl));
  logits_.copy_(torch::log((nk / n).clamp_min(1e-30)));
  means_.copy_(mu);
  if (!full_) {
    // E_r[(x - mu)^2] = E_r[x^2] - mu^2, floored (the constrained maximiser).
    auto var = (torch::matmul(r, xd.pow(2)) / nk_safe - mu.pow(2)).clamp_min(min_variance_);
    auto log_s = torch::where(alive.unsqueeze(1), 0.5 * torch::log(var), log_scale_.to(dbl));
    log_scale_.copy_(log_s);
    return;
  }
  // Full: Sigma_k = E_r[(x - mu)(x - mu)^T] + min_variance I, whose Cholesky diagonal squared
  // (a conditional variance) is then at least min_variance.
  auto eye = torch::eye(dim_, xd.options());
  for (int64_t k = 0; k < components_; ++k) {
    if (!alive[k].item<bool>()) continue;
    auto c = xd - mu[k];
    auto s = torch::matmul((c * r[k].unsqueeze(1)).t(), c) / nk[k] + min_variance_ * eye;
    s = 0.5 * (s + s.t());
    auto l = RobustCholesky(s, min_variance_);
    log_scale_[k].copy_(torch::log(torch::diagonal(l)));
    lower_[k].copy_(l);
  }
}

torch::Tensor GaussianMixtureNetImpl::Sample(int64_t n, at::Generator& gen) {
  if (n == 0) return torch::zeros({0, dim_});
  auto comp = torch::multinomial(Weights(), n, true, gen);  // [n]
  auto eps = torch::randn({n, dim_}, gen).to(torch::kDouble);
  auto mu = Means().index_select(0, comp);
  auto l = CholeskyFactors().index_select(0, comp);  // [n, D, D]
  return (mu + torch::matmul(l, eps.unsqueeze(2)).squeeze(2)).to(torch::kFloat);
}

torch::Tensor GaussianMixtureNetImpl::PerDimensionLogProb(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  auto log_w = torch::log_softmax(logits_.detach().to(torch::kDouble), 0);  // [K]
  auto chol = CholeskyFactors();                                            // [K, D, D]
  auto diff = x.to(torch::kDouble).unsqueeze(0) - Means().unsqueeze(1);     // [K, B, D]
  auto z = torch::linalg_solve_triangular(chol, diff.transpose(1, 2), /*upper=*/false);
  // Component k's chain-rule terms [K, D, B], their running sums and the mixture's.
  auto terms =
      -0.5 * z.pow(2) - 0.5 * kLog2Pi - torch::log(torch::diagonal(chol, 0, 1, 2)).unsqueeze(2);
  auto prefix = torch::logsumexp(terms.cumsum(1) + log_w.view({-1, 1, 1}), 0);  // [D, B]
  auto previous = torch::cat({torch::zeros_like(prefix.slice(0, 0, 1)), prefix.slice(0, 0, -1)});
  return (prefix - previous).t().contiguous();
}

std::vector<int64_t> GaussianMixtureNetImpl::FactorOrder() const {
  return VariableOrder(v1::VARIABLE_ORDER_NATURAL, 0, dim_);
}

torch::Tensor GaussianMixtureNetImpl::Weights() const {
  return torch::softmax(logits_.detach().to(torch::kDouble), 0);
}

torch::Tensor GaussianMixtureNetImpl::CholeskyFactors() const {
  torch::NoGradGuard no_grad;
  auto s = Scales().to(torch::kDouble);
  return full_ ? Cholesky().to(torch::kDouble) : torch::diag_embed(s);
}

torch::Tensor GaussianMixtureNetImpl::MixtureMean() const {
  return torch::matmul(Weights(), Means());
}

torch::Tensor GaussianMixtureNetImpl::MixtureCovariance() const {
  auto w = Weights(), mu = Means(), l = CholeskyFactors();
  auto sigma = torch::matmul(l, l.transpose(1, 2));         // [K, D, D]
  auto second = sigma + mu.unsqueeze(2) * mu.unsqueeze(1);  // E[x x^T | k]
  auto m = MixtureMean();
  return (w.view({-1, 1, 1}) * second).sum(0) - torch::outer(m, m);
}

// ---------------------------------------------------------------------------------------------
// Conditionals.

torch::Tensor GaussianNetImpl::MarginalLogProb(const torch::Tensor& x,
                                               const torch::Tensor& observed) {
  auto log_var = log_var_.detach().clamp_min(std::log(min_variance_)).to(torch::kDouble);
  auto xd = x.to(torch::kDouble);
  auto z2 = (xd - mean_.detach().to(torch::kDouble)).pow(2) * torch::exp(-log_var);
  auto terms = -0.5 * (z2 + log_var + kLog2Pi);  // [B, D]
  return torch::where(observed.unsqueeze(0), terms, torch::zeros_like(terms)).sum(1);
}

torch::Tensor GaussianNetImpl::ConditionalSample(const torch::Tensor& x,
                                                 const torch::Tensor& observed, int64_t n,
                                                 at::Generator& gen) {
  const int64_t b = x.size(0), d = x.size(1);
  auto draws = Sample(b * n, gen).view({b, n, d});
  return torch::where(observed.view({1, 1, d}), x.to(torch::kFloat).unsqueeze(1), draws);
}

torch::Tensor GaussianNetImpl::ConditionalMean(const torch::Tensor& x,
                                               const torch::Tensor& observed) {
  auto xd = x.to(torch::kDouble);
  return torch::where(observed.unsqueeze(0), xd,
                      mean_.detach().to(torch::kDouble).unsqueeze(0).expand_as(xd));
}

namespace {

// The pieces of a mixture's conditional on the observed set: per component the marginal terms
// log pi_k + log N(x_o; mu_ko, S_koo) [K, B], the conditional means of the missing dimensions
// [K, B, m] and the Cholesky factors of the conditional covariances [K, m, m].
struct MixtureConditional {
  torch::Tensor log_joint, mean, chol;
  torch::Tensor obs_idx, mis_idx;
};

MixtureConditional Condition(const torch::Tensor& x, const torch::Tensor& observed,
                             const torch::Tensor& weights, const torch::Tensor& means,
                             const torch::Tensor& chol, bool need_conditional) {
  MixtureConditional c;
  c.obs_idx = torch::nonzero(observed).view({-1});
  c.mis_idx = torch::nonzero(torch::logical_not(observed)).view({-1});
  auto sigma = torch::matmul(chol, chol.transpose(1, 2));  // [K, D, D]
  auto s_oo = sigma.index_select(1, c.obs_idx).index_select(2, c.obs_idx);
  auto l_oo = torch::linalg_cholesky(s_oo);
  auto xo = x.to(torch::kDouble).index_select(1, c.obs_idx);  // [B, o]
  auto mu_o = means.index_select(1, c.obs_idx);               // [K, o]
  c.log_joint = LogJoint(xo, torch::log(weights), mu_o, torch::diagonal(l_oo, 0, 1, 2), l_oo);
  if (!need_conditional || c.mis_idx.numel() == 0) return c;
  auto s_mo = sigma.index_select(1, c.mis_idx).index_select(2, c.obs_idx);  // [K, m, o]
  auto s_mm = sigma.index_select(1, c.mis_idx).index_select(2, c.mis_idx);  // [K, m, m]
  auto diff = (xo.unsqueeze(0) - mu_o.unsqueeze(1)).transpose(1, 2);        // [K, o, B]
  auto solved = torch::cholesky_solve(diff, l_oo);                          // S_oo^-1 (x_o - mu_o)
  auto mu_m = means.index_select(1, c.mis_idx);                             // [K, m]
  c.mean = (mu_m.unsqueeze(2) + torch::matmul(s_mo, solved)).transpose(1, 2);  // [K, B, m]
  auto gain = torch::cholesky_solve(s_mo.transpose(1, 2), l_oo);               // S_oo^-1 S_om
  auto cov = s_mm - torch::matmul(s_mo, gain);
  cov = 0.5 * (cov + cov.transpose(1, 2));
  std::vector<torch::Tensor> factors;
  for (int64_t k = 0; k < cov.size(0); ++k) factors.push_back(RobustCholesky(cov[k], 1e-12));
  c.chol = torch::stack(factors);
  return c;
}

}  // namespace

torch::Tensor GaussianMixtureNetImpl::MarginalLogProb(const torch::Tensor& x,
                                                      const torch::Tensor& observed) {
  torch::NoGradGuard no_grad;
  auto c = Condition(x, observed, Weights(), Means(), CholeskyFactors(), false);
  return torch::logsumexp(c.log_joint, 0);
}

torch::Tensor GaussianMixtureNetImpl::ConditionalSample(const torch::Tensor& x,
                                                        const torch::Tensor& observed, int64_t n,
                                                        at::Generator& gen) {
  torch::NoGradGuard no_grad;
  auto c = Condition(x, observed, Weights(), Means(), CholeskyFactors(), true);
  const int64_t b = x.size(0), d = x.size(1), m = c.mis_idx.numel();
  auto out = x.to(torch::kDouble).unsqueeze(1).repeat({1, n, 1});  // [B, n, D]
  if (m == 0 || n == 0) return out.to(torch::kFloat);
  auto post = torch::softmax(c.log_joint, 0).t().contiguous();         // [B, K]
  auto comp = torch::multinomial(post, n, /*replacement=*/true, gen);  // [B, n]
  auto eps = torch::randn({b, n, m}, gen, torch::TensorOptions().dtype(torch::kDouble));
  auto rows = torch::arange(b).unsqueeze(1).expand({b, n});
  auto mean = c.mean.permute({1, 0, 2}).index({rows, comp});  // [B, n, m]
  auto l = c.chol.index_select(0, comp.reshape({-1})).view({b, n, m, m});
  auto draw = mean + torch::matmul(l, eps.unsqueeze(3)).squeeze(3);
  out.index_copy_(2, c.mis_idx, draw);
  return out.to(torch::kFloat);
}

torch::Tensor GaussianMixtureNetImpl::ConditionalMean(const torch::Tensor& x,
                                                      const torch::Tensor& observed) {
  torch::NoGradGuard no_grad;
  auto c = Condition(x, observed, Weights(), Means(), CholeskyFactors(), true);
  auto out = x.to(torch::kDouble).clone();
  if (c.mis_idx.numel() == 0) return out;
  auto post = torch::softmax(c.log_joint, 0);       // [K, B]
  auto mean = (post.unsqueeze(2) * c.mean).sum(0);  // [B, m]
  out.index_copy_(1, c.mis_idx, mean);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Families.

FamilyInfo GaussianFamily() {
  FamilyInfo f;
  f.family = v1::MODEL_FAMILY_GAUSSIAN;
  f.name = "gaussian";
  f.kinds = {v1::DATA_KIND_CONTINUOUS};
  f.set_defaults = [](v1::ModelSpec* spec) {
    auto* g = spec->mutable_gaussian();
    if (g->min_variance() == 0) g->set_min_variance(1e-6);
  };
  f.validate = [](const v1::ModelSpec& spec, const DataShape&) {
    return CheckPositive("model.gaussian.min_variance", spec.gaussian().min_variance(), 1e6);
  };
  f.make = [](const v1::ModelSpec& spec, const DataShape& shape) {
    return std::make_shared<GaussianNetImpl>(shape.dim, spec.gaussian().min_variance());
  };
  f.footprint = [](const v1::ModelSpec&, const DataShape& shape) {
    NetFootprint n;
    n.gradient_fit = false;
    n.parameters = 2 * shape.dim;
    n.step_bytes_per_record = 24 * shape.dim;  // x, x - m and its square in double
    n.eval_bytes_per_record = 16 * shape.dim;
    return n;
  };
  return f;
}

FamilyInfo GaussianMixtureFamily() {
  FamilyInfo f;
  f.family = v1::MODEL_FAMILY_GAUSSIAN_MIXTURE;
  f.name = "gaussian_mixture";
  f.kinds = {v1::DATA_KIND_CONTINUOUS};
  f.set_defaults = [](v1::ModelSpec* spec) {
    auto* g = spec->mutable_gaussian_mixture();
    if (g->components() == 0) g->set_components(5);
    if (g->covariance() == v1::COVARIANCE_TYPE_UNSPECIFIED) {
      g->set_covariance(v1::COVARIANCE_TYPE_DIAGONAL);
    }
    if (g->training() == v1::MIXTURE_TRAINING_UNSPECIFIED) g->set_training(v1::MIXTURE_TRAINING_EM);
    if (g->min_variance() == 0) g->set_min_variance(1e-6);
  };
  f.validate = [](const v1::ModelSpec& spec, const DataShape&) -> absl::Status {
    const auto& g = spec.gaussian_mixture();
    auto st = CheckRange("model.gaussian_mixture.components", g.components(), 1, 256);
    if (!st.ok()) return st;
    if (g.covariance() != v1::COVARIANCE_TYPE_DIAGONAL &&
        g.covariance() != v1::COVARIANCE_TYPE_FULL) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.gaussian_mixture.covariance must be DIAGONAL or FULL, got ",
                       static_cast<int>(g.covariance())));
    }
    if (g.training() != v1::MIXTURE_TRAINING_EM && g.training() != v1::MIXTURE_TRAINING_GRADIENT) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.gaussian_mixture.training must be EM or GRADIENT, got ",
                       static_cast<int>(g.training())));
    }
    return CheckPositive("model.gaussian_mixture.min_variance", g.min_variance(), 1e6);
  };
  f.make = [](const v1::ModelSpec& spec, const DataShape& shape) {
    const auto& g = spec.gaussian_mixture();
    return std::make_shared<GaussianMixtureNetImpl>(
        shape.dim, g.components(), g.covariance() == v1::COVARIANCE_TYPE_FULL,
        g.training() == v1::MIXTURE_TRAINING_EM, g.min_variance());
  };
  f.footprint = [](const v1::ModelSpec& spec, const DataShape& shape) {
    const auto& g = spec.gaussian_mixture();
    const bool full = g.covariance() == v1::COVARIANCE_TYPE_FULL;
    const int64_t k = g.components(), d = shape.dim;
    NetFootprint n;
    n.gradient_fit = g.training() != v1::MIXTURE_TRAINING_EM;
    n.parameters = k + 2 * k * d + (full ? k * d * d : 0);
    // LogJoint's [K, B, D] differences, their scaled (or solved) values and squares; EM works in
    // double over all records, with x in double and per-component centred copies (full).
    if (n.gradient_fit) {
      n.step_bytes_per_record = 4 * (d + 6 * k * d + 4 * k);
      // tril and diag_embed of the factors, and their gradients.
      if (full) n.extra_parameter_copies = 4;
    } else {
      n.step_bytes_per_record = 8 * (d + 3 * k * d + 4 * k + (full ? 2 * d : d));
    }
    n.eval_bytes_per_record = 4 * (d + 3 * k * d + 2 * k);
    return n;
  };
  return f;
}

}  // namespace logp
