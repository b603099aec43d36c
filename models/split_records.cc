// SplitRecords (models/train.h). Torch-free.
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "models/train.h"
#include "proto/cc/status_macros.h"

namespace logp {

absl::StatusOr<std::pair<RecordMatrix, RecordMatrix>> SplitRecords(const RecordMatrix& data,
                                                                   double fraction, uint64_t seed) {
  if (!(fraction > 0 && fraction < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("validation_fraction must be in (0, 1), got ", fraction));
  }
  const int64_t n_valid = static_cast<int64_t>(std::llround(fraction * data.rows));
  if (n_valid < 1 || n_valid >= data.rows) {
    return absl::InvalidArgumentError(absl::StrCat("validation_fraction ", fraction, " of ",
                                                   data.rows,
                                                   " records leaves an empty training or "
                                                   "validation set"));
  }
  std::vector<int64_t> idx(data.rows);
  for (int64_t i = 0; i < data.rows; ++i) idx[i] = i;
  std::mt19937_64 rng(seed);
  for (int64_t i = data.rows - 1; i > 0; --i) {
    std::swap(idx[i], idx[rng() % static_cast<uint64_t>(i + 1)]);
  }
  // Keep each part in the original record order, so the split is a pure selection.
  std::vector<char> is_valid(data.rows, 0);
  for (int64_t i = 0; i < n_valid; ++i) is_valid[idx[i]] = 1;
  // Empty matrices of data's shape (not copies of data: a cleared vector keeps its capacity).
  ASSIGN_OR_RETURN(RecordMatrix train,
                   RecordMatrix::Empty(data.kind, data.cols, data.num_categories));
  RecordMatrix valid = train;
  valid.Reserve(n_valid);
  if (data.packed()) {  // the training part stays packed; the validation part is unpacked
    const int64_t stride = data.PackedRowBytes();
    train.bits.reserve((data.rows - n_valid) * stride);
    for (int64_t r = 0; r < data.rows; ++r) {
      if (is_valid[r]) {
        valid.AppendRow(data, r);
      } else {
        train.bits.insert(train.bits.end(), data.bits.begin() + r * stride,
                          data.bits.begin() + (r + 1) * stride);
        ++train.rows;
      }
    }
    return std::make_pair(std::move(train), std::move(valid));
  }
  train.Reserve(data.rows - n_valid);
  for (int64_t r = 0; r < data.rows; ++r) (is_valid[r] ? valid : train).AppendRow(data, r);
  return std::make_pair(std::move(train), std::move(valid));
}

}  // namespace logp
