// Small data sets for the model tests: seeded random records and every input of a small space.
#ifndef LOGP_TESTS_MODELS_TEST_DATA_H_
#define LOGP_TESTS_MODELS_TEST_DATA_H_

#include <cstdint>
#include <random>

#include "proto/cc/records.h"

namespace logp {

// n binary records of dim d; column c is 1 with probability 0.2 + 0.6 c / d, and with p_copy
// repeats the previous column instead (structure only an autoregressive model captures).
inline RecordMatrix RandomBinary(int64_t n, int64_t d, uint64_t seed, double p_copy = 0.0) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_BINARY, d, 2).value();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < d; ++c) {
      const bool copy = c > 0 && u(rng) < p_copy;
      m.u8.push_back(copy ? m.u8.back() : static_cast<uint8_t>(u(rng) < 0.2 + 0.6 * c / d));
    }
    ++m.rows;
  }
  return m;
}

// All k^d records of a binary (k = 2) or categorical space; record x has value
// (x / k^c) mod k in column c.
inline RecordMatrix AllInputs(v1::DataKind kind, int64_t d, int32_t k) {
  RecordMatrix m = RecordMatrix::Empty(kind, d, k).value();
  int64_t total = 1;
  for (int64_t c = 0; c < d; ++c) total *= k;
  for (int64_t x = 0; x < total; ++x) {
    int64_t rest = x;
    for (int64_t c = 0; c < d; ++c, rest /= k) m.u8.push_back(static_cast<uint8_t>(rest % k));
    ++m.rows;
  }
  return m;
}

inline RecordMatrix AllBinaryInputs(int64_t d) { return AllInputs(v1::DATA_KIND_BINARY, d, 2); }

}  // namespace logp

#endif  // LOGP_TESTS_MODELS_TEST_DATA_H_
