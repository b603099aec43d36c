#ifndef LOGP_MODELS_FAMILIES_VAE_H_
#define LOGP_MODELS_FAMILIES_VAE_H_

#include <vector>

#include "models/density_net.h"

namespace logp {

// Variational autoencoder (Kingma & Welling 2014) with a N(0, I) prior on z, a diagonal-Gaussian
// encoder q(z|x) = N(mu(x), diag exp(log_var(x))) and a decoder p(x|z): independent Bernoulli
// (binary data) or diagonal Gaussian with a learned per-dimension log-std (continuous data; the
// log-std is clamped to [-7, 7], so the density stays finite on constant columns).
//
// Its log-likelihood is not tractable. LogProb, the training objective, is the ELBO
//   E_q[log p(x|z)] - KL(q(z|x) || p(z))   (KL analytic, the expectation by one sample),
// drawn from the training noise generator (NoiseGenerator()) in train mode and, in eval mode,
// with a generator seeded by the constant kEvalSeed at every call, so validation numbers are
// reproducible. Score gives the ELBO estimated with kElboSamples draws and its standard error
// (LOWER_BOUND: the ELBO is a bound on every record's log p(x); its estimate exceeds it by more
// than 2 standard errors with probability about 2.5%), or the importance-weighted estimate with
// k samples (Burda et al. 2016),
//   log (1/k) sum_i p(x, z_i) / q(z_i|x),  z_i ~ q(z|x),
// labelled ESTIMATE with a per-record standard error.
class VaeImpl : public DensityNet {
 public:
  static constexpr uint64_t kEvalSeed = 0x5EED5EED;
  // Draws of z per record behind a LOWER_BOUND score: a one-draw value is not a bound per record
  // (its noise is of the order of the bound's gap), the mean of 100 is, within its reported
  // standard error (sd / 10).
  static constexpr int64_t kElboSamples = 100;

  VaeImpl(int64_t dim, bool binary, int64_t latent_dim, int64_t hidden_layers, int64_t hidden_units,
          int default_importance_samples, double dropout);

  torch::Tensor LogProb(const torch::Tensor& x) override;
  torch::Tensor Loss(const torch::Tensor& x) override;
  // importance_samples < 0: the spec's default; 0: the ELBO estimated with kElboSamples draws
  // from options.seed, with its standard error (LOWER_BOUND); k >= 1: the IWAE-k estimate
  // (ESTIMATE) with standard error sd(w_i / mean w) / sqrt(k) by the delta method (for k = 1, the
  // sd of log w estimated from 16 extra draws).
  ScoreBatch Score(const torch::Tensor& x, const ScoreOptions& options) override;
  torch::Tensor Sample(int64_t n, at::Generator& gen) override;

  // q(z|x): (mu, log_var), each [B, latent].
  std::pair<torch::Tensor, torch::Tensor> Encode(const torch::Tensor& x);
  // log p(x|z) per record for x [B, D] and z [..., B, latent] (broadcast over leading dims).
  torch::Tensor LogLikelihood(const torch::Tensor& x, const torch::Tensor& z);
  // ELBO per record with eps ~ N(0, I) drawn from `gen` (or NoiseGenerator() if null).
  torch::Tensor Elbo(const torch::Tensor& x, at::Generator* gen);
  // The ELBO per record with its expectation estimated from `samples` draws of z from `gen`:
  // (estimate, standard error), each [B] double.
  std::pair<torch::Tensor, torch::Tensor> ElboEstimate(const torch::Tensor& x, int64_t samples,
                                                       at::Generator& gen);
  // Per-record log importance weights log p(x, z_i) - log q(z_i|x), [k, B].
  torch::Tensor LogWeights(const torch::Tensor& x, int64_t k, at::Generator& gen);

  // Conditionals (models/conditional.cc). The proposal is the defensive mixture
  // 1/2 q(z | x~) + 1/2 p(z) (Hesterberg 1995), q the encoder at x~ (x with its missing
  // dimensions filled by the decoder's mean at z = 0): the prior half bounds every weight
  // p(x_o | z) p(z) / proposal(z) by 2 max p(x_o | z), so the estimate's variance is finite and
  // its delta-method standard error meaningful even where the encoder, never trained on partial
  // records, misses the posterior. The weights use only the observed dimensions' decoder terms,
  // so log mean exp(w) estimates log p(x_o) whatever the fill.
  torch::Tensor LatentLogWeights(const torch::Tensor& x, const torch::Tensor& observed, int64_t k,
                                 at::Generator& gen, torch::Tensor* z) override;
  torch::Tensor DecodeSample(const torch::Tensor& z, at::Generator& gen) override;

 private:
  torch::Tensor Mlp(std::vector<torch::nn::Linear>& layers, torch::Tensor h);
  // The per-dimension terms of LogLikelihood, [..., B, D].
  torch::Tensor LogLikelihoodTerms(const torch::Tensor& x, const torch::Tensor& z);
  // A [c, B] term of c draws z = mu + std * eps of q(z|x) (eps, z [c, B, latent]; mu, log_var
  // [B, latent]).
  using DrawTerm =
      std::function<torch::Tensor(const torch::Tensor& eps, const torch::Tensor& z,
                                  const torch::Tensor& mu, const torch::Tensor& log_var)>;
  // The term over `samples` draws from `gen`, [samples, B], drawn in chunks of at most
  // kRowsPerChunk rows (samples x records) and polling PollStop() between chunks.
  torch::Tensor OverDraws(const torch::Tensor& x, int64_t samples, at::Generator& gen,
                          const DrawTerm& term);

  int64_t dim_, latent_dim_;
  bool binary_;
  int default_importance_samples_;
  double dropout_;
  std::vector<torch::nn::Linear> encoder_, decoder_;
  torch::Tensor log_std_;  // continuous decoder only
};

}  // namespace logp

#endif  // LOGP_MODELS_FAMILIES_VAE_H_
