#ifndef LOGP_MODELS_FAMILIES_GAUSSIAN_H_
#define LOGP_MODELS_FAMILIES_GAUSSIAN_H_

#include "models/density_net.h"

namespace logp {

// Diagonal Gaussian: log p(x) = -1/2 sum_d [(x_d - m_d)^2 / v_d + log v_d + log 2 pi], with
// v_d = exp(log_var_d) floored at min_variance.
class GaussianNetImpl : public DensityNet {
 public:
  GaussianNetImpl(int64_t dim, double min_variance);
  torch::Tensor LogProb(const torch::Tensor& x) override;
  torch::Tensor Sample(int64_t n, at::Generator& gen) override;
  Fit fit() const override { return Fit::kClosedForm; }
  // m = sample mean, v = max(biased sample variance, min_variance).
  void FitClosedForm(const torch::Tensor& x) override;
  torch::Tensor Mean() const { return mean_.detach(); }
  torch::Tensor Variance() const;
  // log N(x_d; m_d, v_d) per dimension (independent: FactorOrder() is empty).
  torch::Tensor PerDimensionLogProb(const torch::Tensor& x) override;

  // Conditionals (models/conditional.cc): the dimensions are independent, so the marginal sums
  // the observed terms and the conditional is the prior of the missing dimensions.
  torch::Tensor MarginalLogProb(const torch::Tensor& x, const torch::Tensor& observed) override;
  torch::Tensor ConditionalSample(const torch::Tensor& x, const torch::Tensor& observed, int64_t n,
                                  at::Generator& gen) override;
  torch::Tensor ConditionalMean(const torch::Tensor& x, const torch::Tensor& observed) override;

 private:
  double min_variance_;
  torch::Tensor mean_, log_var_;
};

// Mixture of K Gaussians: log p(x) = logsumexp_k [log pi_k + log N(x; mu_k, Sigma_k)], with
// pi = softmax(logits). Each Sigma_k = L_k L_k^T: L_k diagonal (DIAGONAL) or lower triangular
// (FULL), its diagonal exp(log_scale) floored at sqrt(min_variance).
//
// EM (the default fit): the first EmStep initialises the means from K distinct records chosen
// by a generator seeded at construction (so by the job seed), the variances from the data
// variance and the weights as uniform; every EmStep is then one E step (responsibilities in log
// space) and one M step over the records it is given, in double precision. Gradient training
// initialises the same way from its first training batch (in Loss).
class GaussianMixtureNetImpl : public DensityNet {
 public:
  GaussianMixtureNetImpl(int64_t dim, int64_t components, bool full_covariance, bool em,
                         double min_variance);
  torch::Tensor LogProb(const torch::Tensor& x) override;
  torch::Tensor Loss(const torch::Tensor& x) override;
  torch::Tensor Sample(int64_t n, at::Generator& gen) override;
  Fit fit() const override { return em_ ? Fit::kEm : Fit::kGradient; }
  void EmStep(const torch::Tensor& x) override;

  // [K, B] log pi_k + log N(x_b; mu_k, Sigma_k).
  torch::Tensor ComponentLogJoint(const torch::Tensor& x);
  // Analytic moments: weights [K], means [K, D], Cholesky factors [K, D, D] (double).
  torch::Tensor Weights() const;
  torch::Tensor Means() const { return means_.detach().to(torch::kDouble); }
  torch::Tensor CholeskyFactors() const;
  // Mixture mean [D] and covariance [D, D] (double).
  torch::Tensor MixtureMean() const;
  torch::Tensor MixtureCovariance() const;
  // log p(x_<=d) - log p(x_<d) in natural order, where log p(x_<=d) = logsumexp_k [log pi_k +
  // sum_{j<=d} (log N(z_kj; 0, 1) - log L_k,jj)], z_k = L_k^{-1} (x - mu_k): component k's
  // chain-rule terms in natural order are its Gaussian conditionals (exactly so for FULL, by the
  // triangular structure of L_k).
  torch::Tensor PerDimensionLogProb(const torch::Tensor& x) override;
  std::vector<int64_t> FactorOrder() const override;

  // Conditionals (models/conditional.cc), in double precision. Component k's marginal over the
  // observed set o is N(mu_ko, S_koo) (rows and columns of o kept); log p(x_o) is the logsumexp
  // over k of log pi_k + log N(x_o; mu_ko, S_koo). The conditional is the mixture, with
  // posterior weights r_k(x_o) proportional to those terms, of the Schur-complement Gaussians
  // N(mu_km + S_kmo S_koo^-1 (x_o - mu_ko), S_kmm - S_kmo S_koo^-1 S_kom).
  torch::Tensor MarginalLogProb(const torch::Tensor& x, const torch::Tensor& observed) override;
  torch::Tensor ConditionalSample(const torch::Tensor& x, const torch::Tensor& observed, int64_t n,
                                  at::Generator& gen) override;
  torch::Tensor ConditionalMean(const torch::Tensor& x, const torch::Tensor& observed) override;

 private:
  // [K, D] diagonal of L_k, floored.
  torch::Tensor Scales() const;
  // [K, D, D] L_k as used by LogProb (differentiable).
  torch::Tensor Cholesky() const;
  void InitialiseFrom(const torch::Tensor& x);

  int64_t dim_, components_;
  bool full_, em_;
  double min_variance_;
  uint64_t init_seed_;
  torch::Tensor logits_, means_, log_scale_, lower_;  // lower_: FULL only
  torch::Tensor initialised_;                         // buffer: 0 until data initialised it
};

}  // namespace logp

#endif  // LOGP_MODELS_FAMILIES_GAUSSIAN_H_
