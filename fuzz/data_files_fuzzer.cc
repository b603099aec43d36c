// Fuzzes the IDX, NPY and CSV readers (client/data_files.h) through their in-memory entry points,
// which the path-based readers call after reading the file. Every accepted matrix must be
// well-formed for the options' kind, respect max_records and the image shape, and read back
// identically after being written out again as IDX (byte values) or CSV (every value).
#include <cmath>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/data_files.h"
#include "fuzz/fuzz_util.h"

namespace logp::fuzz {
namespace {

void CheckWellFormed(const RecordMatrix& m, const ReadOptions& o) {
  FUZZ_CHECK(m.rows >= 1 && m.cols >= 1 && m.kind == o.kind);
  if (o.max_records > 0) FUZZ_CHECK(m.rows <= o.max_records);
  const size_t n = static_cast<size_t>(m.rows * m.cols);
  FUZZ_CHECK(!m.packed());
  switch (m.kind) {
    case v1::DATA_KIND_CONTINUOUS:
      FUZZ_CHECK(m.f32.size() == n && m.u8.empty() && m.u16.empty());
      for (float f : m.f32) FUZZ_CHECK(std::isfinite(f));
      break;
    case v1::DATA_KIND_BINARY:
      FUZZ_CHECK(m.num_categories == 2 && m.u8.size() == n);
      for (uint8_t v : m.u8) FUZZ_CHECK(v <= 1);
      break;
    case v1::DATA_KIND_CATEGORICAL:
      FUZZ_CHECK(m.num_categories >= 2 && m.num_categories <= 65536);
      if (o.num_categories > 0) FUZZ_CHECK(m.num_categories == o.num_categories);
      if (m.num_categories > 256) {
        FUZZ_CHECK(m.u16.size() == n && m.u8.empty());
        for (uint16_t v : m.u16) FUZZ_CHECK(v < m.num_categories);
      } else {
        FUZZ_CHECK(m.u8.size() == n && m.u16.empty());
        for (uint8_t v : m.u8) FUZZ_CHECK(v < m.num_categories);
      }
      break;
    default:
      FUZZ_CHECK(false);
  }
}

bool SameValues(const RecordMatrix& a, const RecordMatrix& b) {
  if (a.rows != b.rows || a.cols != b.cols || a.kind != b.kind) return false;
  for (int64_t r = 0; r < a.rows; ++r) {
    for (int64_t c = 0; c < a.cols; ++c) {
      if (a.At(r, c) != b.At(r, c)) return false;
    }
  }
  return true;
}

// Writes `m` back as CSV (shortest round-tripping float text) and as a 2-D IDX file when every
// value is a byte, and reads it again with options that keep values as they are.
void CheckRewrite(const RecordMatrix& m, const ReadOptions& o) {
  if (m.rows * m.cols > 4096) return;  // keep the fuzzer fast
  ReadOptions same = o;
  same.binarize_threshold = -1;
  same.max_records = 0;
  if (m.kind == v1::DATA_KIND_CATEGORICAL) same.num_categories = m.num_categories;
  std::string csv;
  for (int64_t r = 0; r < m.rows; ++r) {
    for (int64_t c = 0; c < m.cols; ++c) {
      absl::StrAppendFormat(&csv, "%s%.9g", c > 0 ? "," : "", m.At(r, c));
    }
    csv += r % 2 ? "\r\n" : "\n";
  }
  absl::StatusOr<RecordMatrix> from_csv = ParseCsv(csv, "rewrite.csv", same);
  FUZZ_CHECK(from_csv.ok());
  FUZZ_CHECK(SameValues(m, *from_csv));

  bool bytes = m.kind != v1::DATA_KIND_CATEGORICAL || m.num_categories <= 256;
  for (int64_t i = 0; bytes && i < m.rows * m.cols; ++i) {
    const double v = m.At(i / m.cols, i % m.cols);
    bytes = v >= 0 && v <= 255 && v == std::floor(v);
  }
  if (!bytes) return;
  std::string idx("\0\0\x08\x02", 4);
  for (const int64_t d : {m.rows, m.cols}) {
    for (int shift = 24; shift >= 0; shift -= 8) idx.push_back(static_cast<char>(d >> shift));
  }
  for (int64_t i = 0; i < m.rows * m.cols; ++i) {
    idx.push_back(static_cast<char>(static_cast<uint8_t>(m.At(i / m.cols, i % m.cols))));
  }
  absl::StatusOr<RecordMatrix> from_idx = ParseIdx(idx, "rewrite.idx", same);
  FUZZ_CHECK(from_idx.ok());
  FUZZ_CHECK(SameValues(m, *from_idx));
}

}  // namespace
}  // namespace logp::fuzz

// Input: a format byte, an options byte, K (2 bytes), max_records (1 byte), then the file.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace logp;
  fuzz::Input in(data, size);
  const uint8_t format = in.Take<uint8_t>() % 3;
  const uint8_t flags = in.Take<uint8_t>();
  ReadOptions o;
  o.kind = static_cast<v1::DataKind>(flags % 4);  // including UNSPECIFIED
  o.binarize_threshold = (flags & 4) ? (flags >> 3) * 8.5 : -1;
  o.num_categories = static_cast<int32_t>(in.Take<uint16_t>()) - (flags & 0x80 ? 1 : 0);
  if (flags & 0x40) o.num_categories = 0;
  o.max_records = in.Take<uint8_t>();
  const absl::string_view file = in.rest();
  FileInfo info;
  info.image_shape.set_height(99);  // must be reset by the reader
  absl::StatusOr<RecordMatrix> m;
  switch (format) {
    case 0:
      m = ParseIdx(file, "fuzz.idx", o, &info);
      break;
    case 1:
      m = ParseNpy(file, "fuzz.npy", o, &info);
      break;
    default:
      m = ParseCsv(file, "fuzz.csv", o);
      info = FileInfo();
      break;
  }
  if (!m.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(m.status()));
    return 0;
  }
  fuzz::CheckWellFormed(*m, o);
  const auto& s = info.image_shape;
  FUZZ_CHECK(s.height() != 99 || s.width() != 0);
  if (s.height() != 0 || s.width() != 0) {
    FUZZ_CHECK(uint64_t{s.height()} * s.width() * s.channels() == static_cast<uint64_t>(m->cols));
  }
  fuzz::CheckRewrite(*m, o);
  return 0;
}
