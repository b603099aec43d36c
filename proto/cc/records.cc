#include "proto/cc/records.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace logp {
namespace {

bool KindAllowsEncoding(v1::DataKind kind, int32_t k, v1::Encoding e) {
  switch (kind) {
    case v1::DATA_KIND_BINARY:
      return e == v1::ENCODING_BITPACKED || e == v1::ENCODING_UINT8;
    case v1::DATA_KIND_CATEGORICAL:
      return e == v1::ENCODING_UINT16_LE || (e == v1::ENCODING_UINT8 && k <= 256);
    case v1::DATA_KIND_CONTINUOUS:
      return e == v1::ENCODING_FLOAT32_LE;
    default:
      return false;
  }
}

absl::Status BadValue(int64_t record, int64_t column, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("record ", record, ", column ", column, ": ", what));
}

}  // namespace

absl::StatusOr<RecordMatrix> RecordMatrix::Empty(v1::DataKind kind, int64_t cols,
                                                 int32_t num_categories) {
  if (cols <= 0) return absl::InvalidArgumentError("dim must be > 0");
  RecordMatrix m;
  m.kind = kind;
  m.cols = cols;
  switch (kind) {
    case v1::DATA_KIND_BINARY:
      m.num_categories = 2;
      break;
    case v1::DATA_KIND_CATEGORICAL:
      if (num_categories < 2 || num_categories > 65536) {
        return absl::InvalidArgumentError(absl::StrCat(
            "num_categories must be in [2, 65536] for categorical data, got ", num_categories));
      }
      m.num_categories = num_categories;
      break;
    case v1::DATA_KIND_CONTINUOUS:
      m.num_categories = 0;
      break;
    default:
      return absl::InvalidArgumentError("kind must be BINARY, CATEGORICAL or CONTINUOUS");
  }
  return m;
}

double RecordMatrix::At(int64_t r, int64_t c) const {
  if (packed()) return (bits[r * PackedRowBytes() + (c >> 3)] >> (7 - (c & 7))) & 1;
  const int64_t i = r * cols + c;
  if (!f32.empty()) return f32[i];
  if (!u16.empty()) return u16[i];
  return u8[i];
}

void RecordMatrix::AppendRow(const RecordMatrix& other, int64_t r) {
  const int64_t b = r * cols, e = b + cols;
  if (kind == v1::DATA_KIND_CONTINUOUS) {
    f32.insert(f32.end(), other.f32.begin() + b, other.f32.begin() + e);
  } else if (num_categories > 256) {
    u16.insert(u16.end(), other.u16.begin() + b, other.u16.begin() + e);
  } else if (other.packed()) {
    for (int64_t c = 0; c < cols; ++c) u8.push_back(static_cast<uint8_t>(other.At(r, c)));
  } else {
    u8.insert(u8.end(), other.u8.begin() + b, other.u8.begin() + e);
  }
  ++rows;
}

void PackBits(RecordMatrix* m) {
  if (m->kind != v1::DATA_KIND_BINARY || m->u8.empty()) return;
  const int64_t stride = m->PackedRowBytes(), d = m->cols;
  m->bits.assign(m->rows * stride, 0);
  for (int64_t r = 0; r < m->rows; ++r) {
    const uint8_t* src = m->u8.data() + r * d;
    uint8_t* row = m->bits.data() + r * stride;
    for (int64_t c = 0; c < d; ++c) {
      if (src[c]) row[c >> 3] |= static_cast<uint8_t>(0x80 >> (c & 7));
    }
  }
  std::vector<uint8_t>().swap(m->u8);
}

void RecordMatrix::Reserve(int64_t n) {
  if (kind == v1::DATA_KIND_CONTINUOUS) {
    f32.reserve(n * cols);
  } else if (num_categories > 256) {
    u16.reserve(n * cols);
  } else {
    u8.reserve(n * cols);
  }
}

int64_t RowBytes(v1::Encoding encoding, int64_t dim) {
  switch (encoding) {
    case v1::ENCODING_BITPACKED:
      return (dim + 7) / 8;
    case v1::ENCODING_UINT8:
      return dim;
    case v1::ENCODING_UINT16_LE:
      return 2 * dim;
    case v1::ENCODING_FLOAT32_LE:
      return 4 * dim;
    default:
      return 0;
  }
}

v1::Encoding CanonicalEncoding(v1::DataKind kind, int32_t num_categories) {
  switch (kind) {
    case v1::DATA_KIND_BINARY:
      return v1::ENCODING_BITPACKED;
    case v1::DATA_KIND_CATEGORICAL:
      return num_categories <= 256 ? v1::ENCODING_UINT8 : v1::ENCODING_UINT16_LE;
    case v1::DATA_KIND_CONTINUOUS:
      return v1::ENCODING_FLOAT32_LE;
    default:
      return v1::ENCODING_UNSPECIFIED;
  }
}

std::string KindName(v1::DataKind kind) {
  switch (kind) {
    case v1::DATA_KIND_BINARY:
      return "binary";
    case v1::DATA_KIND_CATEGORICAL:
      return "categorical";
    case v1::DATA_KIND_CONTINUOUS:
      return "continuous";
    default:
      return "unspecified";
  }
}

namespace {

// The checks every decode shares: dim, an encoding the kind allows, the byte length. Returns the
// bytes per row.
absl::StatusOr<int64_t> CheckBlock(v1::Encoding encoding, int64_t num_records, int64_t dim,
                                   absl::string_view data, int64_t first_index,
                                   const RecordMatrix* out) {
  if (dim != out->cols) {
    return absl::InvalidArgumentError(absl::StrCat("records starting at record ", first_index,
                                                   " have dim ", dim, ", expected ", out->cols));
  }
  if (!KindAllowsEncoding(out->kind, out->num_categories, encoding)) {
    return absl::InvalidArgumentError(absl::StrCat("encoding ", v1::Encoding_Name(encoding),
                                                   " cannot carry ", KindName(out->kind),
                                                   " data with K = ", out->num_categories));
  }
  if (num_records < 0) return absl::InvalidArgumentError("negative num_records");
  const int64_t row_bytes = RowBytes(encoding, dim);  // > 0: the encoding and dim are valid
  // By division: num_records * row_bytes overflows for a num_records near 2^63 / row_bytes, and
  // the wrapped product can equal the byte count.
  const int64_t size = static_cast<int64_t>(data.size());
  if (size % row_bytes != 0 || size / row_bytes != num_records) {
    const std::string expected = num_records <= std::numeric_limits<int64_t>::max() / row_bytes
                                     ? absl::StrCat(num_records * row_bytes)
                                     : "over 2^63";
    return absl::InvalidArgumentError(absl::StrFormat(
        "records starting at record %d: %d bytes for %d records of dim %d in %s, expected %s",
        first_index, data.size(), num_records, dim, v1::Encoding_Name(encoding), expected));
  }
  return row_bytes;
}

// Padding bits must be zero so that each record has exactly one encoding.
absl::Status CheckPadding(const uint8_t* row, int64_t row_bytes, int64_t dim, int64_t record) {
  if ((dim & 7) != 0 && (row[row_bytes - 1] & (0xFF >> (dim & 7))) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("record ", record, ": padding bits after column ", dim - 1, " are not zero"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status DecodeAppend(v1::Encoding encoding, int64_t num_records, int64_t dim,
                          absl::string_view data, int64_t first_index, RecordMatrix* out) {
  absl::StatusOr<int64_t> checked = CheckBlock(encoding, num_records, dim, data, first_index, out);
  if (!checked.ok()) return checked.status();
  const int64_t row_bytes = *checked;
  const auto* bytes = reinterpret_cast<const uint8_t*>(data.data());
  const int64_t old = out->rows * dim;
  const int64_t n = num_records * dim;
  switch (encoding) {
    case v1::ENCODING_BITPACKED: {
      out->u8.resize(old + n);
      uint8_t* dst = out->u8.data() + old;
      for (int64_t r = 0; r < num_records; ++r) {
        const uint8_t* row = bytes + r * row_bytes;
        for (int64_t c = 0; c < dim; ++c) dst[r * dim + c] = (row[c >> 3] >> (7 - (c & 7))) & 1;
        absl::Status padding = CheckPadding(row, row_bytes, dim, first_index + r);
        if (!padding.ok()) {
          out->u8.resize(old);
          return padding;
        }
      }
      break;
    }
    case v1::ENCODING_UINT8: {
      const int limit = out->num_categories;
      for (int64_t i = 0; i < n; ++i) {
        if (bytes[i] >= limit) {
          return BadValue(first_index + i / dim, i % dim,
                          out->kind == v1::DATA_KIND_BINARY
                              ? absl::StrCat("value ", bytes[i], " is not 0 or 1")
                              : absl::StrCat("category ", bytes[i], " is not below K = ", limit));
        }
      }
      if (out->num_categories > 256) {
        out->u16.insert(out->u16.end(), bytes, bytes + n);
      } else {
        out->u8.insert(out->u8.end(), bytes, bytes + n);
      }
      break;
    }
    case v1::ENCODING_UINT16_LE: {
      const int limit = out->num_categories;
      std::vector<uint16_t> vals(n);
      for (int64_t i = 0; i < n; ++i) {
        vals[i] = static_cast<uint16_t>(bytes[2 * i] | (bytes[2 * i + 1] << 8));
        if (vals[i] >= limit) {
          return BadValue(first_index + i / dim, i % dim,
                          absl::StrCat("category ", vals[i], " is not below K = ", limit));
        }
      }
      if (out->num_categories > 256) {
        out->u16.insert(out->u16.end(), vals.begin(), vals.end());
      } else {
        out->u8.insert(out->u8.end(), vals.begin(), vals.end());
      }
      break;
    }
    case v1::ENCODING_FLOAT32_LE: {
      out->f32.resize(old + n);
      float* dst = out->f32.data() + old;
      if (n > 0) std::memcpy(dst, bytes, n * sizeof(float));  // x86-64, aarch64: little-endian
      for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(dst[i])) {
          out->f32.resize(old);
          return BadValue(first_index + i / dim, i % dim,
                          std::isnan(dst[i]) ? "value is NaN" : "value is infinite");
        }
      }
      break;
    }
    default:
      return absl::InvalidArgumentError("encoding is unspecified");
  }
  out->rows += num_records;
  return absl::OkStatus();
}

absl::Status DecodeAppendPacked(int64_t num_records, int64_t dim, absl::string_view data,
                                int64_t first_index, RecordMatrix* out) {
  if (out->kind != v1::DATA_KIND_BINARY || (out->rows > 0 && !out->packed())) {
    return absl::InvalidArgumentError("only binary, bit-packed (or empty) matrices keep bits");
  }
  absl::StatusOr<int64_t> checked =
      CheckBlock(v1::ENCODING_BITPACKED, num_records, dim, data, first_index, out);
  if (!checked.ok()) return checked.status();
  const int64_t row_bytes = *checked;
  const auto* bytes = reinterpret_cast<const uint8_t*>(data.data());
  for (int64_t r = 0; r < num_records; ++r) {
    absl::Status padding = CheckPadding(bytes + r * row_bytes, row_bytes, dim, first_index + r);
    if (!padding.ok()) return padding;
  }
  out->bits.insert(out->bits.end(), bytes, bytes + data.size());
  out->rows += num_records;
  return absl::OkStatus();
}

absl::Status DecodeAppend(const v1::RecordBlock& block, int64_t first_index, RecordMatrix* out) {
  return DecodeAppend(block.encoding(), static_cast<int64_t>(block.num_records()), block.dim(),
                      block.data(), first_index, out);
}

void EncodeAppend(const RecordMatrix& m, int64_t begin, int64_t end, std::string* out) {
  if (end <= begin) return;  // an empty matrix's vectors have no data() to copy from
  const v1::Encoding enc = CanonicalEncoding(m.kind, m.num_categories);
  const int64_t row_bytes = RowBytes(enc, m.cols);
  const size_t start = out->size();
  out->resize(start + (end - begin) * row_bytes, '\0');
  auto* dst = reinterpret_cast<uint8_t*>(&(*out)[start]);
  const int64_t d = m.cols;
  switch (enc) {
    case v1::ENCODING_BITPACKED:
      if (m.packed()) {
        std::memcpy(dst, m.bits.data() + begin * row_bytes, (end - begin) * row_bytes);
        break;
      }
      for (int64_t r = begin; r < end; ++r) {
        uint8_t* row = dst + (r - begin) * row_bytes;
        const uint8_t* src = m.u8.data() + r * d;
        for (int64_t c = 0; c < d; ++c) {
          if (src[c]) row[c >> 3] |= static_cast<uint8_t>(0x80 >> (c & 7));
        }
      }
      break;
    case v1::ENCODING_UINT8:
      std::memcpy(dst, m.u8.data() + begin * d, (end - begin) * d);
      break;
    case v1::ENCODING_UINT16_LE:
      for (int64_t i = begin * d; i < end * d; ++i) {
        const uint16_t v = m.u16[i];
        dst[2 * (i - begin * d)] = v & 0xFF;
        dst[2 * (i - begin * d) + 1] = v >> 8;
      }
      break;
    case v1::ENCODING_FLOAT32_LE:
      std::memcpy(dst, m.f32.data() + begin * d, (end - begin) * d * sizeof(float));
      break;
    default:
      break;
  }
}

v1::RecordBlock Encode(const RecordMatrix& m, int64_t begin, int64_t end) {
  v1::RecordBlock block;
  block.set_encoding(CanonicalEncoding(m.kind, m.num_categories));
  block.set_num_records(end - begin);
  block.set_dim(static_cast<uint32_t>(m.cols));
  EncodeAppend(m, begin, end, block.mutable_data());
  return block;
}

}  // namespace logp
