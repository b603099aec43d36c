#include "models/families/vae.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "models/families/families.h"

namespace logp {
namespace F = torch::nn::functional;
namespace {

const double kLogSqrt2Pi = 0.5 * std::log(2.0 * M_PI);
constexpr double kMinLogStd = -7.0;
constexpr double kMaxLogStd = 7.0;
// Rows (samples x records) per decoder pass when drawing importance samples.
constexpr int64_t kRowsPerChunk = 1 << 16;
// Extra draws that estimate the standard error of a one-sample estimate.
constexpr int64_t kSingleSampleSeDraws = 16;

std::vector<torch::nn::Linear> MakeMlp(torch::nn::Module& owner, const std::string& name,
                                       int64_t in, int64_t hidden_layers, int64_t hidden_units,
                                       int64_t out) {
  std::vector<torch::nn::Linear> layers;
  for (int64_t l = 0; l < hidden_layers; ++l) {
    layers.push_back(
        owner.register_module(absl::StrCat(name, l), torch::nn::Linear(in, hidden_units)));
    in = hidden_units;
  }
  layers.push_back(owner.register_module(absl::StrCat(name, "_out"), torch::nn::Linear(in, out)));
  return layers;
}

torch::Tensor Randn(at::IntArrayRef sizes, at::Generator* gen, const torch::Tensor& like) {
  return torch::randn(sizes, gen != nullptr ? *gen : NoiseGenerator(), like.options());
}

}  // namespace

VaeImpl::VaeImpl(int64_t dim, bool binary, int64_t latent_dim, int64_t hidden_layers,
                 int64_t hidden_units, int default_importance_samples, double dropout)
    : dim_(dim),
      latent_dim_(latent_dim),
      binary_(binary),
      default_importance_samples_(default_importance_samples),
      dropout_(dropout) {
  encoder_ = MakeMlp(*this, "encoder", dim, hidden_layers, hidden_units, 2 * latent_dim);
  decoder_ = MakeMlp(*this, "decoder", latent_dim, hidden_layers, hidden_units, dim);
  if (!binary_) log_std_ = register_parameter("log_std", torch::zeros({dim}));
}

torch::Tensor VaeImpl::Mlp(std::vector<torch::nn::Linear>& layers, torch::Tensor h) {
  for (size_t l = 0; l < layers.size(); ++l) {
    h = layers[l]->forward(h);
    if (l + 1 < layers.size()) {
      h = torch::relu(h);
      h = Dropout(h, dropout_, is_training());
    }
  }
  return h;
}

std::pair<torch::Tensor, torch::Tensor> VaeImpl::Encode(const torch::Tensor& x) {
  auto h = Mlp(encoder_, x);
  return {h.slice(-1, 0, latent_dim_), h.slice(-1, latent_dim_, 2 * latent_dim_)};
}

torch::Tensor VaeImpl::LogLikelihoodTerms(const torch::Tensor& x, const torch::Tensor& z) {
  auto out = Mlp(decoder_, z);
  if (binary_) {
    // x log sigmoid(l) + (1 - x) log sigmoid(-l) = x l - softplus(l).
    return x * out - F::softplus(out);
  }
  auto log_std = log_std_.clamp(kMinLogStd, kMaxLogStd);
  return -0.5 * ((x - out) * torch::exp(-log_std)).pow(2) - log_std - kLogSqrt2Pi;
}

torch::Tensor VaeImpl::LogLikelihood(const torch::Tensor& x, const torch::Tensor& z) {
  return LogLikelihoodTerms(x, z).sum(-1);
}

torch::Tensor VaeImpl::Elbo(const torch::Tensor& x, at::Generator* gen) {
  auto [mu, log_var] = Encode(x);
  auto eps = Randn({x.size(0), latent_dim_}, gen, x);
  auto z = mu + torch::exp(0.5 * log_var) * eps;
  auto kl = 0.5 * (mu.pow(2) + torch::exp(log_var) - 1 - log_var).sum(-1);
  return LogLikelihood(x, z) - kl;
}

torch::Tensor VaeImpl::OverDraws(const torch::Tensor& x, int64_t samples, at::Generator& gen,
                                 const DrawTerm& term) {
  auto [mu, log_var] = Encode(x);
  auto std = torch::exp(0.5 * log_var);
  const int64_t b = x.size(0);
  const int64_t chunk = std::max<int64_t>(1, kRowsPerChunk / std::max<int64_t>(b, 1));
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < samples; i += chunk) {
    PollStop();
    const int64_t c = std::min(chunk, samples - i);
    auto eps = torch::randn({c, b, latent_dim_}, gen, x.options());
    parts.push_back(term(eps, mu + std * eps, mu, log_var));  // [c, B]
  }
  return torch::cat(parts, 0);
}

std::pair<torch::Tensor, torch::Tensor> VaeImpl::ElboEstimate(const torch::Tensor& x,
                                                              int64_t samples, at::Generator& gen) {
  torch::Tensor kl;
  auto ll = OverDraws(x, samples, gen,
                      [&](const torch::Tensor&, const torch::Tensor& z, const torch::Tensor& mu,
                          const torch::Tensor& log_var) {
                        if (!kl.defined()) {
                          kl = 0.5 * (mu.pow(2) + torch::exp(log_var) - 1 - log_var).sum(-1);
                        }
                        return LogLikelihood(x, z).to(torch::kDouble);
                      });
  auto elbo = ll.mean(0) - kl.to(torch::kDouble);
  auto se = ll.std(0, /*unbiased=*/true) / std::sqrt(static_cast<double>(samples));
  return {elbo, se};
}

torch::Tensor VaeImpl::LogProb(const torch::Tensor& x) {
  if (is_training()) return Elbo(x, nullptr);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(kEvalSeed);
  return Elbo(x, &gen);
}

torch::Tensor VaeImpl::Loss(const torch::Tensor& x) { return -Elbo(x, nullptr).mean(); }

torch::Tensor VaeImpl::LogWeights(const torch::Tensor& x, int64_t k, at::Generator& gen) {
  return OverDraws(x, k, gen,
                   [&](const torch::Tensor& eps, const torch::Tensor& z, const torch::Tensor&,
                       const torch::Tensor& log_var) {
                     auto log_q = (-0.5 * eps.pow(2) - 0.5 * log_var - kLogSqrt2Pi).sum(-1);
                     auto log_prior = (-0.5 * z.pow(2) - kLogSqrt2Pi).sum(-1);
                     return LogLikelihood(x, z) + log_prior - log_q;
                   });
}

ScoreBatch VaeImpl::Score(const torch::Tensor& x, const ScoreOptions& options) {
  const int k =
      options.importance_samples < 0 ? default_importance_samples_ : options.importance_samples;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  if (k == 0) {
    auto [elbo, se] = ElboEstimate(x, kElboSamples, gen);
    return ScoreBatch{elbo, se, v1::SCORE_KIND_LOWER_BOUND, 0};
  }
  auto log_w = LogWeights(x, k, gen).to(torch::kDouble);  // [k, B]
  auto estimate = LogMeanExp(log_w, 0);
  torch::Tensor se;
  if (k == 1) {
    // One weight says nothing about its spread: the estimate log w has sd(log w), estimated
    // from independent extra draws (not part of the estimate).
    se = LogWeights(x, kSingleSampleSeDraws, gen).to(torch::kDouble).std(0, /*unbiased=*/true);
  } else {
    // Delta method: Var[log mean w] ~ Var[w] / (k E[w]^2); w_i / mean(w) = exp(log w_i - est)
    // is at most k, so this is stable in any range of log w.
    auto ratio = torch::exp(log_w - estimate);
    se = ratio.std(0, /*unbiased=*/true) / std::sqrt(static_cast<double>(k));
  }
  return ScoreBatch{estimate, se, v1::SCORE_KIND_ESTIMATE, k};
}

torch::Tensor VaeImpl::Sample(int64_t n, at::Generator& gen) {
  auto like = log_std_.defined() ? log_std_ : decoder_.back()->weight;
  auto z = torch::randn({n, latent_dim_}, gen, like.options());
  auto out = Mlp(decoder_, z);
  if (binary_) {
    auto u = torch::rand({n, dim_}, gen, like.options());
    return (u < torch::sigmoid(out)).to(like.scalar_type());
  }
  auto log_std = log_std_.clamp(kMinLogStd, kMaxLogStd);
  return out + torch::exp(log_std) * torch::randn({n, dim_}, gen, like.options());
}

torch::Tensor VaeImpl::LatentLogWeights(const torch::Tensor& x, const torch::Tensor& observed,
                                        int64_t k, at::Generator& gen, torch::Tensor* z_out) {
  auto fill = Mlp(decoder_, torch::zeros({1, latent_dim_}, x.options()));
  if (binary_) fill = torch::sigmoid(fill);
  auto xf = torch::where(observed.unsqueeze(0), x, fill.expand_as(x));
  auto mask = observed.to(x.scalar_type());
  auto [mu, log_var] = Encode(xf);
  auto std = torch::exp(0.5 * log_var);
  const int64_t b = x.size(0);
  const int64_t chunk = std::max<int64_t>(1, kRowsPerChunk / std::max<int64_t>(b, 1));
  std::vector<torch::Tensor> parts, zs;
  for (int64_t i = 0; i < k; i += chunk) {
    PollStop();
    const int64_t c = std::min(chunk, k - i);
    auto eps = torch::randn({c, b, latent_dim_}, gen, x.options());
    auto from_q = torch::rand({c, b, 1}, gen, x.options()) < 0.5;
    auto z = torch::where(from_q, mu + std * eps, eps);
    auto log_q = (-0.5 * ((z - mu) / std).pow(2) - 0.5 * log_var - kLogSqrt2Pi).sum(-1);
    auto log_prior = (-0.5 * z.pow(2) - kLogSqrt2Pi).sum(-1);
    auto log_proposal = torch::logaddexp(log_q, log_prior) - std::log(2.0);
    parts.push_back(
        ((LogLikelihoodTerms(xf, z) * mask).sum(-1) + log_prior - log_proposal).to(torch::kDouble));
    if (z_out != nullptr) zs.push_back(z);
  }
  if (z_out != nullptr) *z_out = torch::cat(zs, 0);
  return torch::cat(parts, 0);
}

torch::Tensor VaeImpl::DecodeSample(const torch::Tensor& z, at::Generator& gen) {
  auto out = Mlp(decoder_, z);
  if (binary_) {
    auto u = torch::rand(out.sizes(), gen, out.options());
    return (u < torch::sigmoid(out)).to(out.scalar_type());
  }
  auto log_std = log_std_.clamp(kMinLogStd, kMaxLogStd);
  return out + torch::exp(log_std) * torch::randn(out.sizes(), gen, out.options());
}

FamilyInfo VaeFamily() {
  FamilyInfo f;
  f.family = v1::MODEL_FAMILY_VAE;
  f.name = "vae";
  f.kinds = {v1::DATA_KIND_BINARY, v1::DATA_KIND_CONTINUOUS};
  f.set_defaults = [](v1::ModelSpec* spec) {
    auto* m = spec->mutable_vae();
    if (m->latent_dim() == 0) m->set_latent_dim(32);
    if (m->hidden_layers() == 0) m->set_hidden_layers(1);
    if (m->hidden_units() == 0) m->set_hidden_units(500);
  };
  f.validate = [](const v1::ModelSpec& spec, const DataShape&) -> absl::Status {
    const auto& m = spec.vae();
    auto st = CheckRange("model.vae.latent_dim", m.latent_dim(), 1, 1024);
    if (st.ok()) st = CheckRange("model.vae.hidden_layers", m.hidden_layers(), 1, 8);
    if (st.ok()) st = CheckRange("model.vae.hidden_units", m.hidden_units(), 1, 8192);
    if (st.ok()) st = CheckRange("model.vae.importance_samples", m.importance_samples(), 0, 10000);
    return st;
  };
  // As VaeImpl::Score with importance_samples unset: the spec's default k.
  f.score_kind = [](const v1::ModelSpec& spec) {
    return spec.vae().importance_samples() > 0 ? v1::SCORE_KIND_ESTIMATE
                                               : v1::SCORE_KIND_LOWER_BOUND;
  };
  f.make = [](const v1::ModelSpec& spec, const DataShape& shape) {
    const auto& m = spec.vae();
    return std::make_shared<VaeImpl>(shape.dim, shape.kind == v1::DATA_KIND_BINARY, m.latent_dim(),
                                     m.hidden_layers(), m.hidden_units(), m.importance_samples(),
                                     spec.regularization().dropout());
  };
  f.footprint = [](const v1::ModelSpec& spec, const DataShape& shape) {
    const auto& m = spec.vae();
    const int64_t d = shape.dim, z = m.latent_dim(), l = m.hidden_layers(), h = m.hidden_units();
    const bool dropout = spec.regularization().dropout() > 0;
    NetFootprint n;
    n.parameters = MlpParameters(d, l, h, 2 * z) + MlpParameters(z, l, h, d) +
                   (shape.kind == v1::DATA_KIND_BINARY ? 0 : d);
    // Encoder and decoder; the latent terms (eps, z, the KL's); the likelihood's terms.
    n.step_bytes_per_record = MlpStepBytes(d, l, h, 2 * z, dropout) +
                              MlpStepBytes(z, l, h, d, dropout) + 4 * (4 * z + 4 * d);
    n.eval_bytes_per_record =
        MlpEvalBytes(d, l, h, 2 * z) + MlpEvalBytes(z, l, h, d) + 4 * (4 * z + 4 * d);
    return n;
  };
  return f;
}

}  // namespace logp
