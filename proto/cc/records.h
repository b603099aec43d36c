// RecordMatrix: an in-memory N x D matrix of records, and its conversion to and from the wire
// encoding of logp.v1.RecordBlock. Torch-free; shared by models/, server/ and client/.
#ifndef LOGP_PROTO_CC_RECORDS_H_
#define LOGP_PROTO_CC_RECORDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "logp/v1/records.pb.h"

namespace logp {

// Values, row-major. Binary and categorical data with K <= 256 live in `u8`; categorical data
// with K > 256 in `u16`; continuous data in `f32`. Binary data may instead live bit-packed in
// `bits` (see PackBits). Exactly one of the four is non-empty (unless rows == 0).
struct RecordMatrix {
  v1::DataKind kind = v1::DATA_KIND_UNSPECIFIED;
  int64_t rows = 0;
  int64_t cols = 0;
  // 2 for binary, K for categorical, 0 for continuous.
  int32_t num_categories = 0;
  std::vector<uint8_t> u8;
  std::vector<uint16_t> u16;
  std::vector<float> f32;
  // Binary only, made by PackBits: row r, column c is bit 7 - c % 8 of byte
  // r * PackedRowBytes() + c / 8, padding bits 0 (the BITPACKED wire layout), 8x smaller than
  // `u8`. At, AppendRow (as the source row) and the encoders read packed matrices; a packed
  // matrix is never appended to.
  std::vector<uint8_t> bits;
  bool packed() const { return !bits.empty(); }
  int64_t PackedRowBytes() const { return (cols + 7) / 8; }

  // An empty matrix of the given shape; INVALID_ARGUMENT for an impossible shape.
  static absl::StatusOr<RecordMatrix> Empty(v1::DataKind kind, int64_t cols,
                                            int32_t num_categories);
  // Value of record r, column c as a double.
  double At(int64_t r, int64_t c) const;
  // Appends row r of `other` (same kind/cols) to this matrix.
  void AppendRow(const RecordMatrix& other, int64_t r);
  // Reserves room for `n` rows.
  void Reserve(int64_t n);
};

// Binary data in `u8` moves to `bits` (u8's memory is released); anything else is left as is.
void PackBits(RecordMatrix* m);

// Bytes one encoded row of `dim` values occupies; 0 for an unknown encoding.
int64_t RowBytes(v1::Encoding encoding, int64_t dim);

// The encoding the server stores and sends: BITPACKED for binary, UINT8 for K <= 256, UINT16_LE
// for larger K, FLOAT32_LE for continuous.
v1::Encoding CanonicalEncoding(v1::DataKind kind, int32_t num_categories);

// Short lower-case name ("binary", "categorical", "continuous").
std::string KindName(v1::DataKind kind);

// Validates the values in `data` (N rows of `encoding`) and appends them to `out`, whose kind,
// cols and num_categories say what is allowed. `first_index` is the index of the first row in
// the whole upload, used in messages: INVALID_ARGUMENT "record 12, column 3: value 2 is not 0 or
// 1", "record 5, column 0: NaN", wrong byte length, encoding not allowed for the kind. On any
// error `out` is left as it was.
absl::Status DecodeAppend(v1::Encoding encoding, int64_t num_records, int64_t dim,
                          absl::string_view data, int64_t first_index, RecordMatrix* out);
// Same for BITPACKED rows of binary data, kept bit-packed: appended to `bits` (`out` must be
// binary, and packed or empty).
absl::Status DecodeAppendPacked(int64_t num_records, int64_t dim, absl::string_view data,
                                int64_t first_index, RecordMatrix* out);
// Same, for a RecordBlock.
absl::Status DecodeAppend(const v1::RecordBlock& block, int64_t first_index, RecordMatrix* out);

// Encodes rows [begin, end) of `m` in its canonical encoding.
v1::RecordBlock Encode(const RecordMatrix& m, int64_t begin, int64_t end);
// Appends the canonical encoding of rows [begin, end) to `out`.
void EncodeAppend(const RecordMatrix& m, int64_t begin, int64_t end, std::string* out);

}  // namespace logp

#endif  // LOGP_PROTO_CC_RECORDS_H_
