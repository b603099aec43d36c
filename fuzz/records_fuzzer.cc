// Fuzzes the record codec (proto/cc/records.h): DecodeAppend with every encoding,
// DecodeAppendPacked, RecordBlock parsing, and Encode. Each decode is checked against a
// deliberately naive reference decoder (accept/reject and every value); every accepted matrix
// must round-trip: decode(encode(m)) == m, and canonical input bytes re-encode to themselves.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "google/protobuf/stubs/logging.h"
#include "logp/v1/records.pb.h"
#include "proto/cc/records.h"

namespace logp::fuzz {
namespace {

// The reference: what DecodeAppend must accept, and the values it must produce (as doubles).
bool ReferenceDecode(v1::Encoding enc, uint64_t num_records, int64_t dim, absl::string_view data,
                     const RecordMatrix& out, std::vector<double>* values) {
  if (dim != out.cols) return false;
  const int32_t k = out.num_categories;
  bool allowed = false;
  switch (out.kind) {
    case v1::DATA_KIND_BINARY:
      allowed = enc == v1::ENCODING_BITPACKED || enc == v1::ENCODING_UINT8;
      break;
    case v1::DATA_KIND_CATEGORICAL:
      allowed = enc == v1::ENCODING_UINT16_LE || (enc == v1::ENCODING_UINT8 && k <= 256);
      break;
    case v1::DATA_KIND_CONTINUOUS:
      allowed = enc == v1::ENCODING_FLOAT32_LE;
      break;
    default:
      break;
  }
  if (!allowed) return false;
  const unsigned __int128 row_bytes = RowBytes(enc, dim);
  if (static_cast<unsigned __int128>(num_records) * row_bytes != data.size()) return false;
  const auto* b = reinterpret_cast<const uint8_t*>(data.data());
  values->clear();
  for (uint64_t r = 0; r < num_records; ++r) {
    const uint8_t* row = b + r * static_cast<uint64_t>(row_bytes);
    for (int64_t c = 0; c < dim; ++c) {
      double v = 0;
      switch (enc) {
        case v1::ENCODING_BITPACKED:
          v = (row[c / 8] >> (7 - c % 8)) & 1;
          break;
        case v1::ENCODING_UINT8:
          v = row[c];
          if (v >= k) return false;
          break;
        case v1::ENCODING_UINT16_LE:
          v = row[2 * c] + 256.0 * row[2 * c + 1];
          if (v >= k) return false;
          break;
        case v1::ENCODING_FLOAT32_LE: {
          float f;
          std::memcpy(&f, row + 4 * c, 4);
          if (!std::isfinite(f)) return false;
          v = f;
          break;
        }
        default:
          return false;
      }
      values->push_back(v);
    }
    if (enc == v1::ENCODING_BITPACKED) {  // padding bits after the last column are zero
      for (int64_t c = dim; c < static_cast<int64_t>(row_bytes) * 8; ++c) {
        if ((row[c / 8] >> (7 - c % 8)) & 1) return false;
      }
    }
  }
  return true;
}

bool SameMatrix(const RecordMatrix& a, const RecordMatrix& b) {
  return a.kind == b.kind && a.rows == b.rows && a.cols == b.cols &&
         a.num_categories == b.num_categories && a.u8 == b.u8 && a.u16 == b.u16 &&
         a.bits == b.bits && a.f32.size() == b.f32.size() &&
         (a.f32.empty() ||  // bitwise, so that -0 and 0 differ
          std::memcmp(a.f32.data(), b.f32.data(), a.f32.size() * sizeof(float)) == 0);
}

// Storage and values of an unpacked matrix that decoding accepted.
void CheckWellFormed(const RecordMatrix& m) {
  const size_t n = static_cast<size_t>(m.rows * m.cols);
  FUZZ_CHECK(m.bits.empty());
  if (m.kind == v1::DATA_KIND_CONTINUOUS) {
    FUZZ_CHECK(m.f32.size() == n && m.u8.empty() && m.u16.empty());
    for (float f : m.f32) FUZZ_CHECK(std::isfinite(f));
  } else if (m.num_categories > 256) {
    FUZZ_CHECK(m.u16.size() == n && m.u8.empty() && m.f32.empty());
    for (uint16_t v : m.u16) FUZZ_CHECK(v < m.num_categories);
  } else {
    FUZZ_CHECK(m.u8.size() == n && m.u16.empty() && m.f32.empty());
    for (uint8_t v : m.u8) FUZZ_CHECK(v < m.num_categories);
  }
}

// Encodes `m` (accepted by a decode) and checks that the encoding decodes to `m` again, that a
// range encodes as the slice of the whole, and for binary data that the packed path agrees.
void CheckRoundTrip(const RecordMatrix& m) {
  const v1::RecordBlock block = Encode(m, 0, m.rows);
  const v1::Encoding canonical = CanonicalEncoding(m.kind, m.num_categories);
  FUZZ_CHECK(block.encoding() == canonical);
  FUZZ_CHECK(static_cast<int64_t>(block.num_records()) == m.rows);
  FUZZ_CHECK(static_cast<int64_t>(block.dim()) == m.cols);
  FUZZ_CHECK(static_cast<int64_t>(block.data().size()) == m.rows * RowBytes(canonical, m.cols));

  // Through the wire format too: serialise the block and parse it back.
  v1::RecordBlock parsed;
  FUZZ_CHECK(parsed.ParseFromString(block.SerializeAsString()));
  absl::StatusOr<RecordMatrix> again = RecordMatrix::Empty(m.kind, m.cols, m.num_categories);
  FUZZ_CHECK(again.ok());
  const absl::Status st = DecodeAppend(parsed, 0, &*again);
  FUZZ_CHECK(st.ok());
  FUZZ_CHECK(SameMatrix(m, *again));

  if (m.rows >= 2) {
    const int64_t mid = m.rows / 2;
    std::string part;
    EncodeAppend(m, mid, m.rows, &part);
    const int64_t rb = RowBytes(canonical, m.cols);
    FUZZ_CHECK(part == block.data().substr(mid * rb));
  }

  if (m.kind == v1::DATA_KIND_BINARY) {
    RecordMatrix packed = m;
    PackBits(&packed);
    if (m.rows > 0) FUZZ_CHECK(packed.packed() && packed.u8.empty());
    absl::StatusOr<RecordMatrix> direct = RecordMatrix::Empty(m.kind, m.cols, 2);
    FUZZ_CHECK(direct.ok());
    FUZZ_CHECK(DecodeAppendPacked(m.rows, m.cols, block.data(), 0, &*direct).ok());
    FUZZ_CHECK(direct->bits == packed.bits && direct->rows == m.rows);
    FUZZ_CHECK(Encode(*direct, 0, m.rows).data() == block.data());
    RecordMatrix unpacked = *RecordMatrix::Empty(m.kind, m.cols, 2);
    for (int64_t r = 0; r < m.rows; ++r) {
      for (int64_t c = 0; c < m.cols; ++c) FUZZ_CHECK(direct->At(r, c) == m.At(r, c));
      unpacked.AppendRow(*direct, r);
    }
    FUZZ_CHECK(SameMatrix(unpacked, m));
  }
}

// Decodes one block into `m` and checks it against the reference; returns whether it decoded.
bool DecodeChecked(v1::Encoding enc, uint64_t num_records, int64_t dim, absl::string_view data,
                   int64_t first_index, RecordMatrix* m) {
  std::vector<double> expected;
  const bool want = ReferenceDecode(enc, num_records, dim, data, *m, &expected);
  const RecordMatrix before = *m;
  const absl::Status st =
      DecodeAppend(enc, static_cast<int64_t>(num_records), dim, data, first_index, m);
  if (!st.ok()) {
    FUZZ_CHECK(!want);
    FUZZ_CHECK(absl::IsInvalidArgument(st) && !st.message().empty());
    FUZZ_CHECK(SameMatrix(before, *m));  // a failed decode appends nothing
  } else {
    FUZZ_CHECK(want);
    FUZZ_CHECK(m->rows == before.rows + static_cast<int64_t>(num_records));
    for (size_t i = 0; i < expected.size(); ++i) {
      FUZZ_CHECK(m->At(before.rows + i / dim, i % dim) == expected[i]);
    }
  }
  // The packed decode accepts exactly what the unpacked one accepts for BITPACKED binary rows.
  if (m->kind == v1::DATA_KIND_BINARY && enc == v1::ENCODING_BITPACKED && before.rows == 0) {
    RecordMatrix packed = *RecordMatrix::Empty(m->kind, m->cols, 2);
    const absl::Status pst =
        DecodeAppendPacked(static_cast<int64_t>(num_records), dim, data, first_index, &packed);
    FUZZ_CHECK(pst.ok() == st.ok());
    if (!pst.ok()) FUZZ_CHECK(packed.rows == 0 && packed.bits.empty());
    if (pst.ok()) FUZZ_CHECK(packed.bits.size() == data.size());
  }
  if (st.ok()) CheckWellFormed(*m);
  return st.ok();
}

}  // namespace
}  // namespace logp::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // no line per bad UTF-8 or malformed message
  return 0;
}

// Input: a mode byte, then either raw decode parameters and bytes (mode even) or a serialised
// RecordBlock (mode odd).
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace logp;
  fuzz::Input in(data, size);
  const uint8_t mode = in.Take<uint8_t>();
  const auto kind = static_cast<v1::DataKind>(in.Take<uint8_t>() % 5);
  const int32_t k = static_cast<int32_t>(in.Take<uint16_t>()) + (mode & 2 ? 256 : 0);
  if (mode & 1) {
    v1::RecordBlock block;
    if (!block.ParseFromArray(in.rest().data(), static_cast<int>(in.rest().size()))) return 0;
    if (block.dim() == 0 || block.dim() > 4096) return 0;
    absl::StatusOr<RecordMatrix> m = RecordMatrix::Empty(kind, block.dim(), k);
    if (!m.ok()) return 0;
    std::vector<double> expected;
    const bool want = fuzz::ReferenceDecode(block.encoding(), block.num_records(), block.dim(),
                                            block.data(), *m, &expected);
    const absl::Status st = DecodeAppend(block, 7, &*m);
    FUZZ_CHECK(st.ok() == want);
    if (st.ok()) {
      fuzz::CheckWellFormed(*m);
      fuzz::CheckRoundTrip(*m);
    }
    return 0;
  }
  const auto enc = static_cast<v1::Encoding>(in.Take<uint8_t>() % 6);
  const int64_t dim = in.Take<uint8_t>() + (mode & 4 ? in.Take<uint8_t>() * 256 : 0);
  const uint64_t raw_records = in.Take<uint64_t>();
  absl::StatusOr<RecordMatrix> m = RecordMatrix::Empty(kind, dim, k);
  if (!m.ok()) return 0;
  const int64_t row_bytes = RowBytes(enc, dim);
  // Mostly a consistent record count; sometimes any 64-bit value.
  auto records_for = [&](absl::string_view bytes) -> uint64_t {
    if ((mode & 8) || row_bytes == 0) return raw_records;
    return bytes.size() / row_bytes;
  };
  absl::string_view rest = in.rest();
  if (mode & 16) {  // two blocks appended to one matrix
    const size_t cut =
        row_bytes > 0 ? (raw_records % (rest.size() / row_bytes + 1)) * row_bytes : rest.size() / 2;
    const absl::string_view first = rest.substr(0, cut), second = rest.substr(cut);
    if (fuzz::DecodeChecked(enc, records_for(first), dim, first, 0, &*m)) {
      fuzz::DecodeChecked(enc, records_for(second), dim, second, m->rows, &*m);
    }
  } else {
    const uint64_t n = records_for(rest);
    const bool ok = fuzz::DecodeChecked(enc, n, dim, rest, 0, &*m);
    // Canonical bytes are the only encoding of their values.
    if (ok && enc == CanonicalEncoding(m->kind, m->num_categories)) {
      FUZZ_CHECK(Encode(*m, 0, m->rows).data() == rest);
    }
  }
  if (m->rows > 0) fuzz::CheckRoundTrip(*m);
  return 0;
}
