#include "proto/cc/json_rows.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"

namespace logp {
namespace {

std::string KindOfValue(const google::protobuf::Value& v) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kNullValue:
      return "null";
    case google::protobuf::Value::kBoolValue:
      return "a boolean";
    case google::protobuf::Value::kStringValue:
      return "a string";
    case google::protobuf::Value::kStructValue:
      return "an object";
    case google::protobuf::Value::kListValue:
      return "a list";
    default:
      return "nothing";
  }
}

}  // namespace

absl::Status AppendRows(const google::protobuf::ListValue& rows, int64_t max_rows,
                        RecordMatrix* out) {
  const int64_t n = rows.values_size();
  if (n > max_rows) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a Score request may carry at most ", max_rows, " records, got ", n));
  }
  const int64_t dim = out->cols;
  const bool continuous = out->kind == v1::DATA_KIND_CONTINUOUS;
  // Binary and categorical values as integers (DecodeAppend checks their range), continuous ones
  // as float32.
  std::string bytes;
  v1::Encoding encoding;
  if (continuous) {
    encoding = v1::ENCODING_FLOAT32_LE;
  } else if (out->kind == v1::DATA_KIND_CATEGORICAL && out->num_categories > 256) {
    encoding = v1::ENCODING_UINT16_LE;
  } else {
    encoding = v1::ENCODING_UINT8;
  }
  bytes.reserve(static_cast<size_t>(n * RowBytes(encoding, dim)));
  for (int64_t r = 0; r < n; ++r) {
    const google::protobuf::Value& row = rows.values(static_cast<int>(r));
    if (row.kind_case() != google::protobuf::Value::kListValue) {
      return absl::InvalidArgumentError(absl::StrCat("record ", r, " is ", KindOfValue(row),
                                                     ", not a list of ", dim, " numbers"));
    }
    const auto& values = row.list_value().values();
    if (values.size() != dim) {
      return absl::InvalidArgumentError(
          absl::StrCat("record ", r, " has ", values.size(), " values, the model expects ", dim));
    }
    for (int64_t c = 0; c < dim; ++c) {
      const google::protobuf::Value& v = values.Get(static_cast<int>(c));
      if (v.kind_case() != google::protobuf::Value::kNumberValue) {
        return absl::InvalidArgumentError(
            absl::StrCat("record ", r, ", column ", c, ": ", KindOfValue(v), ", not a number"));
      }
      const double x = v.number_value();
      if (continuous) {
        // (A double beyond float's range has no float value: converting it is undefined.)
        const bool in_range = std::isfinite(x) && std::fabs(x) <= std::numeric_limits<float>::max();
        const float f = in_range ? static_cast<float>(x) : 0.0f;
        if (!in_range) {
          return absl::InvalidArgumentError(absl::StrCat("record ", r, ", column ", c, ": ", x,
                                                         " is not a finite float32 value"));
        }
        char le[4];
        std::memcpy(le, &f, 4);  // x86-64 and aarch64 are little-endian
        bytes.append(le, 4);
        continue;
      }
      if (x != std::floor(x) || x < 0 || x > 65535) {
        return absl::InvalidArgumentError(absl::StrCat("record ", r, ", column ", c, ": ", x,
                                                       " is not an integer in 0..",
                                                       out->num_categories - 1));
      }
      const auto k = static_cast<uint32_t>(x);
      if (encoding == v1::ENCODING_UINT16_LE) {
        bytes.push_back(static_cast<char>(k & 0xff));
        bytes.push_back(static_cast<char>(k >> 8));
      } else if (k > 255) {
        return absl::InvalidArgumentError(absl::StrCat("record ", r, ", column ", c, ": value ", k,
                                                       " is out of 0..", out->num_categories - 1));
      } else {
        bytes.push_back(static_cast<char>(k));
      }
    }
  }
  return DecodeAppend(encoding, n, dim, bytes, /*first_index=*/0, out);
}

}  // namespace logp
