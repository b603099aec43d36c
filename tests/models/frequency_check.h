// Sampled frequencies against exact probabilities: Pearson's chi-square over every outcome of a
// small binary space, for the samplers' tests.
#ifndef LOGP_TESTS_MODELS_FREQUENCY_CHECK_H_
#define LOGP_TESTS_MODELS_FREQUENCY_CHECK_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace logp {

// How often each of the 2^dim outcomes occurs among n binary records (u8 row-major); record x
// is outcome sum_d x_d 2^d, the order of AllBinaryInputs.
inline std::vector<double> OutcomeCounts(const std::vector<uint8_t>& u8, int64_t n, int64_t dim) {
  std::vector<double> counts(int64_t{1} << dim, 0);
  for (int64_t r = 0; r < n; ++r) {
    int64_t idx = 0;
    for (int64_t d = 0; d < dim; ++d) idx |= int64_t{u8[r * dim + d]} << d;
    counts[idx] += 1;
  }
  return counts;
}

struct ChiSquare {
  double statistic = 0;
  int64_t cells = 0;  // after pooling
  double max_p = 0;   // the largest outcome probability: far above uniform gives the test teeth
};

// Pearson's statistic of `counts` (n draws) against probabilities exp(log_p); outcomes expected
// fewer than 5 times are pooled into one cell.
inline ChiSquare PooledChiSquare(const std::vector<double>& counts,
                                 const std::vector<double>& log_p, int64_t n) {
  ChiSquare c;
  double pooled_count = 0, pooled_expected = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double p = std::exp(log_p[i]), expected = static_cast<double>(n) * p;
    c.max_p = std::max(c.max_p, p);
    if (expected < 5) {
      pooled_count += counts[i];
      pooled_expected += expected;
      continue;
    }
    c.statistic += (counts[i] - expected) * (counts[i] - expected) / expected;
    ++c.cells;
  }
  if (pooled_expected > 0) {
    c.statistic +=
        (pooled_count - pooled_expected) * (pooled_count - pooled_expected) / pooled_expected;
    ++c.cells;
  }
  return c;
}

// The 0.999 quantile of chi-square with k degrees of freedom (Wilson-Hilferty; within 1% for
// k >= 10).
inline double ChiSquareQuantile999(int64_t k) {
  const double a = 2.0 / (9.0 * static_cast<double>(k));
  const double t = 1 - a + 3.0902 * std::sqrt(a);
  return static_cast<double>(k) * t * t * t;
}

}  // namespace logp

#endif  // LOGP_TESTS_MODELS_FREQUENCY_CHECK_H_
