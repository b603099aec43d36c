// The wire codec: exact encodings and the validation messages that name record and column.
#include "proto/cc/records.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace logp {
namespace {

RecordMatrix Binary(int64_t d) { return RecordMatrix::Empty(v1::DATA_KIND_BINARY, d, 2).value(); }

TEST(RecordsTest, BitpackedIsNumpyPackbitsOrder) {
  RecordMatrix m = Binary(10);
  // Row 0: 1 at columns 0 and 9. Row 1: all ones.
  m.u8 = {1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  m.rows = 2;
  v1::RecordBlock b = Encode(m, 0, 2);
  EXPECT_EQ(b.encoding(), v1::ENCODING_BITPACKED);
  ASSERT_EQ(b.data().size(), 4u);
  EXPECT_EQ(static_cast<uint8_t>(b.data()[0]), 0x80);
  EXPECT_EQ(static_cast<uint8_t>(b.data()[1]), 0x40);
  EXPECT_EQ(static_cast<uint8_t>(b.data()[2]), 0xFF);
  EXPECT_EQ(static_cast<uint8_t>(b.data()[3]), 0xC0);
  RecordMatrix back = Binary(10);
  ASSERT_TRUE(DecodeAppend(b, 0, &back).ok());
  EXPECT_EQ(back.u8, m.u8);
  EXPECT_EQ(back.rows, 2);
}

// PackBits keeps every value (At), encodes to the same wire bytes, serves as the source of
// AppendRow, releases the byte-per-value copy, and leaves non-binary data alone.
TEST(RecordsTest, PackBitsKeepsValuesAndEncoding) {
  RecordMatrix m = Binary(13);  // not a multiple of 8: a padded last byte
  for (int64_t r = 0; r < 5; ++r, ++m.rows) {
    for (int64_t c = 0; c < 13; ++c) m.u8.push_back(((r * 7 + c * 3) % 5) < 2 ? 1 : 0);
  }
  const RecordMatrix original = m;
  PackBits(&m);
  ASSERT_TRUE(m.packed());
  EXPECT_TRUE(m.u8.empty());
  EXPECT_EQ(m.u8.capacity(), 0u);
  EXPECT_EQ(m.bits.size(), 5u * 2u);
  for (int64_t r = 0; r < 5; ++r) {
    for (int64_t c = 0; c < 13; ++c) EXPECT_EQ(m.At(r, c), original.At(r, c)) << r << "," << c;
  }
  EXPECT_EQ(Encode(m, 1, 4).SerializeAsString(), Encode(original, 1, 4).SerializeAsString());
  RecordMatrix copy = Binary(13);
  copy.AppendRow(m, 3);
  copy.AppendRow(m, 0);
  EXPECT_EQ(copy.rows, 2);
  EXPECT_EQ(std::vector<uint8_t>(copy.u8.begin(), copy.u8.begin() + 13),
            std::vector<uint8_t>(original.u8.begin() + 3 * 13, original.u8.begin() + 4 * 13));
  RecordMatrix cat = RecordMatrix::Empty(v1::DATA_KIND_CATEGORICAL, 2, 3).value();
  cat.u8 = {0, 2};
  cat.rows = 1;
  PackBits(&cat);
  EXPECT_FALSE(cat.packed());
  EXPECT_EQ(cat.u8, (std::vector<uint8_t>{0, 2}));
}

TEST(RecordsTest, RejectsNonzeroPaddingBits) {
  RecordMatrix m = Binary(10);
  auto st = DecodeAppend(v1::ENCODING_BITPACKED, 1, 10, std::string("\x00\x01", 2), 4, &m);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("record 4"), std::string::npos) << st;
}

TEST(RecordsTest, NamesRecordAndColumnOfABadBinaryValue) {
  RecordMatrix m = Binary(3);
  auto st =
      DecodeAppend(v1::ENCODING_UINT8, 2, 3, std::string("\x00\x01\x00\x01\x02\x00", 6), 10, &m);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("record 11, column 1"), std::string::npos) << st;
}

TEST(RecordsTest, CategoryMustBeBelowK) {
  auto m = RecordMatrix::Empty(v1::DATA_KIND_CATEGORICAL, 2, 300).value();
  std::string data = {'\x2b', '\x01', '\x2c', '\x01'};  // 299, 300
  auto st = DecodeAppend(v1::ENCODING_UINT16_LE, 1, 2, data, 0, &m);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("record 0, column 1"), std::string::npos) << st;
  data[2] = '\x2a';
  ASSERT_TRUE(DecodeAppend(v1::ENCODING_UINT16_LE, 1, 2, data, 0, &m).ok());
  EXPECT_EQ(m.u16, (std::vector<uint16_t>{299, 298}));
}

TEST(RecordsTest, ContinuousRejectsNanAndInf) {
  auto m = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, 2, 0).value();
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
    float vals[4] = {1.f, 2.f, 3.f, bad};
    auto st = DecodeAppend(v1::ENCODING_FLOAT32_LE, 2, 2,
                           std::string(reinterpret_cast<char*>(vals), sizeof(vals)), 0, &m);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(st.message()).find("record 1, column 1"), std::string::npos) << st;
    EXPECT_EQ(m.rows, 0);
    EXPECT_TRUE(m.f32.empty());
  }
}

TEST(RecordsTest, WrongByteLengthAndWrongEncoding) {
  RecordMatrix m = Binary(16);
  EXPECT_EQ(DecodeAppend(v1::ENCODING_BITPACKED, 2, 16, std::string(3, '\0'), 0, &m).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeAppend(v1::ENCODING_FLOAT32_LE, 1, 16, std::string(64, '\0'), 0, &m).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeAppend(v1::ENCODING_BITPACKED, 1, 15, std::string(2, '\0'), 0, &m).code(),
            absl::StatusCode::kInvalidArgument);
}

// Found by fuzz/records_fuzzer: num_records * row_bytes wrapped around, so 2^62 + 1 float
// records "matched" 4 bytes and the decoder then tried to allocate 2^62 values.
TEST(RecordsTest, RecordCountWhoseByteSizeOverflowsIsRejected) {
  RecordMatrix m = RecordMatrix::Empty(v1::DATA_KIND_CONTINUOUS, 1, 0).value();
  const float one = 1;
  const std::string four(reinterpret_cast<const char*>(&one), 4);
  const absl::Status st =
      DecodeAppend(v1::ENCODING_FLOAT32_LE, (int64_t{1} << 62) + 1, 1, four, 0, &m);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("expected over 2^63"), absl::string_view::npos) << st;
  EXPECT_EQ(m.rows, 0);
  v1::RecordBlock block;
  block.set_encoding(v1::ENCODING_FLOAT32_LE);
  block.set_num_records(uint64_t{1} << 63);  // negative as int64_t
  block.set_dim(1);
  block.set_data(four);
  EXPECT_EQ(DecodeAppend(block, 0, &m).code(), absl::StatusCode::kInvalidArgument);
  RecordMatrix bits = Binary(8);
  EXPECT_EQ(DecodeAppendPacked(int64_t{1} << 61, 8, std::string(8, '\0'), 0, &bits).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RecordsTest, EmptyRejectsImpossibleShapes) {
  EXPECT_FALSE(RecordMatrix::Empty(v1::DATA_KIND_BINARY, 0, 2).ok());
  EXPECT_FALSE(RecordMatrix::Empty(v1::DATA_KIND_CATEGORICAL, 3, 1).ok());
  EXPECT_FALSE(RecordMatrix::Empty(v1::DATA_KIND_UNSPECIFIED, 3, 0).ok());
}

}  // namespace
}  // namespace logp
