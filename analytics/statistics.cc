#include "analytics/statistics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace logp {
namespace {

// Portable draws from std::mt19937_64, whose output sequence the standard fixes (unlike its
// distributions').
class Draws {
 public:
  explicit Draws(uint64_t seed) : engine_(seed) {}
  // Uniform in [0, n), n >= 1, by rejection (no modulo bias).
  uint64_t Index(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do {
      v = engine_();
    } while (v >= limit);
    return v % n;
  }
  // Uniform in (0, 1].
  double Unit() { return (static_cast<double>(engine_() >> 11) + 1.0) * 0x1.0p-53; }
  // Standard normal (Box-Muller, one of the pair).
  double Normal() {
    const double r = std::sqrt(-2.0 * std::log(Unit()));
    return r * std::cos(2.0 * M_PI * Unit());
  }

 private:
  std::mt19937_64 engine_;
};

double Mean(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / v.size();
}

// Sample standard deviation (n - 1); 0 for fewer than two values.
double StdDev(const std::vector<double>& v, double mean) {
  if (v.size() < 2) return 0;
  double m2 = 0;
  for (double x : v) m2 += (x - mean) * (x - mean);
  return std::sqrt(m2 / (v.size() - 1));
}

}  // namespace

std::vector<double> ConformalPValues(const std::vector<double>& sorted_reference,
                                     const std::vector<double>& scores) {
  const double n = static_cast<double>(sorted_reference.size());
  std::vector<double> p(scores.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    const auto at_most =
        std::upper_bound(sorted_reference.begin(), sorted_reference.end(), scores[i]) -
        sorted_reference.begin();
    p[i] = (1.0 + static_cast<double>(at_most)) / (n + 1.0);
  }
  return p;
}

BhDecision BenjaminiHochberg(const std::vector<double>& p_values, double q) {
  BhDecision d;
  const size_t m = p_values.size();
  d.rejected.assign(m, false);
  if (m == 0) return d;
  std::vector<size_t> order(m);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return p_values[a] < p_values[b]; });
  size_t k = 0;  // number rejected: the largest rank r with p_(r) <= r q / m
  for (size_t r = 1; r <= m; ++r) {
    if (p_values[order[r - 1]] <= static_cast<double>(r) * q / static_cast<double>(m)) k = r;
  }
  for (size_t r = 0; r < k; ++r) d.rejected[order[r]] = true;
  d.num_rejected = static_cast<int64_t>(k);
  d.threshold = k > 0 ? p_values[order[k - 1]] : 0.0;
  return d;
}

TypicalityDecision TypicalityTest(const std::vector<double>& reference,
                                  const std::vector<double>& batch, double alpha, int draws,
                                  uint64_t seed) {
  TypicalityDecision t;
  t.reference_size = static_cast<int64_t>(reference.size());
  t.batch_size = static_cast<int64_t>(batch.size());
  t.bootstrap_draws = draws;
  if (reference.empty() || batch.empty() || draws < 1) return t;
  const double ref_mean = Mean(reference);  // mean log-likelihood
  const double ref_se = StdDev(reference, ref_mean) / std::sqrt(double(reference.size()));
  t.entropy_estimate = -ref_mean;
  t.statistic = std::fabs(-Mean(batch) - t.entropy_estimate);
  Draws rng(seed);
  std::vector<double> stats(draws);
  const uint64_t n = reference.size();
  for (int b = 0; b < draws; ++b) {
    double sum = 0;
    for (size_t m = 0; m < batch.size(); ++m) sum += reference[rng.Index(n)];
    const double entropy = -(ref_mean + ref_se * rng.Normal());
    stats[b] = std::fabs(-sum / batch.size() - entropy);
  }
  std::sort(stats.begin(), stats.end());
  // The ceil((draws + 1)(1 - alpha))-th smallest replicate (the largest for tiny alpha).
  const double rank = std::ceil((draws + 1.0) * (1.0 - alpha));
  const size_t index = static_cast<size_t>(std::clamp(rank, 1.0, double(draws))) - 1;
  t.threshold = stats[index];
  t.typical = t.statistic <= t.threshold;
  const auto at_least = stats.end() - std::lower_bound(stats.begin(), stats.end(), t.statistic);
  t.p_value = (1.0 + static_cast<double>(at_least)) / (draws + 1.0);
  return t;
}

double Auroc(const std::vector<double>& negatives, const std::vector<double>& positives) {
  if (negatives.empty() || positives.empty()) return 0.5;
  // Mann-Whitney U from mid-ranks of the pooled scores.
  struct Item {
    double score;
    bool positive;
  };
  std::vector<Item> all;
  all.reserve(negatives.size() + positives.size());
  for (double s : negatives) all.push_back({s, false});
  for (double s : positives) all.push_back({s, true});
  std::sort(all.begin(), all.end(), [](const Item& a, const Item& b) { return a.score < b.score; });
  double positive_rank_sum = 0;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    while (j < all.size() && all[j].score == all[i].score) ++j;
    const double mid_rank = (i + 1 + j) / 2.0;  // ranks i+1..j share their mean
    for (size_t k = i; k < j; ++k) {
      if (all[k].positive) positive_rank_sum += mid_rank;
    }
    i = j;
  }
  const double np = positives.size(), nn = negatives.size();
  const double u = positive_rank_sum - np * (np + 1) / 2;
  return u / (np * nn);
}

PairedComparison ComparePaired(const std::vector<double>& a, const std::vector<double>& b) {
  PairedComparison c;
  const size_t n = std::min(a.size(), b.size());
  c.num_records = static_cast<int64_t>(n);
  if (n == 0) return c;
  std::vector<double> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = a[i] - b[i];
  c.mean_difference = Mean(d);
  if (n < 2) {  // no spread to estimate: no evidence either way, whatever the one difference
    c.ci95_low = -INFINITY;
    c.ci95_high = INFINITY;
    return c;
  }
  c.standard_error = StdDev(d, c.mean_difference) / std::sqrt(double(n));
  c.ci95_low = c.mean_difference - 1.96 * c.standard_error;
  c.ci95_high = c.mean_difference + 1.96 * c.standard_error;
  if (c.standard_error > 0) {
    c.z = c.mean_difference / c.standard_error;
    c.p_value = std::erfc(std::fabs(c.z) / std::sqrt(2.0));
  } else if (c.mean_difference != 0) {
    c.z = c.mean_difference > 0 ? INFINITY : -INFINITY;
    c.p_value = 0;
  }
  return c;
}

}  // namespace logp
