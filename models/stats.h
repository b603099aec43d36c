// Summaries of per-record log-likelihoods: mean NLL with its standard error. Torch-free.
#ifndef LOGP_MODELS_STATS_H_
#define LOGP_MODELS_STATS_H_

#include <cstdint>
#include <vector>

namespace logp {

struct NllSummary {
  int64_t count = 0;
  // Mean of -log p over the records (nats).
  double mean_nll = 0;
  // Sample standard deviation / sqrt(count); 0 for fewer than two records.
  double standard_error = 0;
  // mean_nll -/+ 1.96 standard errors.
  double ci95_low = 0;
  double ci95_high = 0;
  // mean_nll / (dim ln 2).
  double bits_per_dim = 0;
};

// Summarises log-likelihoods (not NLLs) of `dim`-dimensional records.
NllSummary SummarizeLogProbs(const std::vector<double>& log_probs, int64_t dim);

}  // namespace logp

#endif  // LOGP_MODELS_STATS_H_
