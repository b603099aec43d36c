// Statistics on per-record log-likelihoods: conformal p-values, Benjamini-Hochberg, the
// bootstrap typicality test, AUROC and the paired comparison of two models. Torch-free and
// gRPC-free; deterministic for a seed on every platform (own generator arithmetic, no
// implementation-defined std:: distributions).
#ifndef LOGP_ANALYTICS_STATISTICS_H_
#define LOGP_ANALYTICS_STATISTICS_H_

#include <cstdint>
#include <vector>

namespace logp {

// Conformal p-values of `scores` against a reference sample (log-likelihoods of held-out
// records, sorted ascending): p = (1 + #{reference <= s}) / (n + 1), small for records less
// likely than most of the reference. If a record is exchangeable with the reference records,
// P(p <= alpha) <= alpha for every alpha (exactly floor(alpha (n + 1)) / (n + 1) without ties).
// An empty reference gives p = 1.
std::vector<double> ConformalPValues(const std::vector<double>& sorted_reference,
                                     const std::vector<double>& scores);

struct BhDecision {
  // rejected[i]: hypothesis i (record i is like the reference) is rejected, i.e. flagged.
  std::vector<bool> rejected;
  int64_t num_rejected = 0;
  // The largest p-value rejected (every p <= threshold is rejected); 0 when none is.
  double threshold = 0;
};

// The Benjamini-Hochberg step-up procedure at false discovery rate q in (0, 1]: rejects the k
// smallest p-values for the largest k with p_(k) <= k q / m. Controls the expected share of
// false rejections among rejections at q when the p-values of true nulls are independent (or
// positively dependent, as conformal p-values sharing one reference are).
BhDecision BenjaminiHochberg(const std::vector<double>& p_values, double q);

struct TypicalityDecision {
  // Mean NLL of the reference: the estimate of the model's entropy on its data (nats).
  double entropy_estimate = 0;
  // |mean NLL of the batch - entropy_estimate|.
  double statistic = 0;
  // The (1 - alpha) quantile of the statistic over bootstrap batches.
  double threshold = 0;
  // statistic <= threshold.
  bool typical = true;
  // (1 + #{bootstrap statistics >= statistic}) / (draws + 1).
  double p_value = 1;
  int64_t batch_size = 0;
  int64_t reference_size = 0;
  int bootstrap_draws = 0;
};

// The typicality test of Nalisnick, Matsukawa, Teh and Lakshminarayanan (2019): is a batch of M
// records typical for the model, i.e. is its mean NLL within epsilon of the model's entropy?
// `reference`: finite log-likelihoods of held-out records (n >= 2); `batch`: the batch's (M >= 1;
// a record of log p = -inf makes the statistic infinite: not typical).
// Each of `draws` bootstrap replicates draws M reference records with replacement and
// re-estimates the entropy as the reference mean plus a normal draw of its standard error
// s / sqrt(n), so that a replicate's statistic varies as a fresh batch's does (both the batch
// mean and the entropy estimate are uncertain). Rejects ("not typical") at level alpha when the
// statistic exceeds the (1 - alpha) quantile of the replicates.
TypicalityDecision TypicalityTest(const std::vector<double>& reference,
                                  const std::vector<double>& batch, double alpha, int draws,
                                  uint64_t seed);

// The area under the ROC curve of a detector that flags high `score`s, `negatives` being the
// in-distribution records and `positives` the others: P(positive > negative) + P(tie) / 2 (the
// Mann-Whitney statistic). 0.5 when either set is empty.
double Auroc(const std::vector<double>& negatives, const std::vector<double>& positives);

struct PairedComparison {
  int64_t num_records = 0;
  // Mean of a_i - b_i.
  double mean_difference = 0;
  // Sample standard deviation of the differences / sqrt(n); 0 for n < 2.
  double standard_error = 0;
  // mean_difference -/+ 1.96 standard errors; -inf and +inf for n < 2.
  double ci95_low = 0;
  double ci95_high = 0;
  // mean_difference / standard_error (0 when both are 0 and for n < 2, where the spread cannot
  // be estimated and p_value is 1; +/-inf when only the error is 0 with n >= 2, i.e. every
  // difference is the same non-zero value).
  double z = 0;
  // Two-sided p-value of "the mean difference is 0" by the normal approximation,
  // erfc(|z| / sqrt(2)): a large-sample test (optimistic below about 30 records).
  double p_value = 1;
};

// Paired comparison of two scorings of the same records (a.size() == b.size()).
PairedComparison ComparePaired(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace logp

#endif  // LOGP_ANALYTICS_STATISTICS_H_
