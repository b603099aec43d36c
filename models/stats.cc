#include "models/stats.h"

#include <cmath>

namespace logp {

NllSummary SummarizeLogProbs(const std::vector<double>& log_probs, int64_t dim) {
  NllSummary s;
  s.count = static_cast<int64_t>(log_probs.size());
  if (s.count == 0) return s;
  // Welford's update: stable for large N.
  double mean = 0, m2 = 0;
  int64_t k = 0;
  for (double lp : log_probs) {
    ++k;
    const double x = -lp;
    const double delta = x - mean;
    mean += delta / k;
    m2 += delta * (x - mean);
  }
  s.mean_nll = mean;
  if (s.count > 1) s.standard_error = std::sqrt(m2 / (s.count - 1)) / std::sqrt(double(s.count));
  s.ci95_low = mean - 1.96 * s.standard_error;
  s.ci95_high = mean + 1.96 * s.standard_error;
  if (dim > 0) s.bits_per_dim = mean / (dim * std::log(2.0));
  return s;
}

}  // namespace logp
