// Fuzzes what the HTTP port does with a Score body: protobuf's JSON parser into a ScoreRequest,
// then AppendRows (proto/cc/json_rows.h) into matrices of every kind. Each AppendRows is checked
// against a naive reference (accept/reject and every value), and an accepted matrix must hold
// exactly the rows' values.
#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "logp/v1/model_service.pb.h"
#include "proto/cc/json_rows.h"

namespace logp::fuzz {
namespace {

// The reference: whether `rows` fit `m`'s kind, cols and categories, and their values.
bool Reference(const google::protobuf::ListValue& rows, const RecordMatrix& m,
               std::vector<double>* values) {
  values->clear();
  for (const auto& row : rows.values()) {
    if (!row.has_list_value() || row.list_value().values_size() != m.cols) return false;
    for (const auto& v : row.list_value().values()) {
      if (v.kind_case() != google::protobuf::Value::kNumberValue) return false;
      const double x = v.number_value();
      if (m.kind == v1::DATA_KIND_CONTINUOUS) {
        if (!(std::fabs(x) <= std::numeric_limits<float>::max())) return false;
        values->push_back(static_cast<float>(x));
      } else {
        if (!(x >= 0 && x < m.num_categories && std::floor(x) == x)) return false;
        values->push_back(x);
      }
    }
  }
  return true;
}

void Check(const google::protobuf::ListValue& rows, v1::DataKind kind, int64_t cols, int32_t k) {
  RecordMatrix m = *RecordMatrix::Empty(kind, cols, k);
  std::vector<double> want;
  const bool ok = Reference(rows, m, &want);
  const absl::Status st = AppendRows(rows, /*max_rows=*/1 << 20, &m);
  FUZZ_CHECK(st.ok() == ok);
  if (!ok) {
    FUZZ_CHECK(m.rows == 0);
    FUZZ_CHECK(st.code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  FUZZ_CHECK(m.rows == rows.values_size());
  for (int64_t r = 0; r < m.rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) FUZZ_CHECK(m.At(r, c) == want[r * cols + c]);
  }
}

}  // namespace
}  // namespace logp::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace logp;
  const std::string json(reinterpret_cast<const char*>(data), size);
  v1::ScoreRequest request;
  if (!google::protobuf::util::JsonStringToMessage(json, &request).ok()) return 0;
  const auto& rows = request.rows();
  // The width of the first row, so that well-formed inputs reach the value checks.
  const int64_t cols = rows.values_size() > 0 && rows.values(0).has_list_value()
                           ? rows.values(0).list_value().values_size()
                           : 1;
  if (cols == 0) return 0;  // no matrix has zero columns
  fuzz::Check(rows, v1::DATA_KIND_BINARY, cols, 2);
  fuzz::Check(rows, v1::DATA_KIND_CATEGORICAL, cols, 3);
  fuzz::Check(rows, v1::DATA_KIND_CATEGORICAL, cols, 300);
  fuzz::Check(rows, v1::DATA_KIND_CONTINUOUS, cols, 0);
  return 0;
}
