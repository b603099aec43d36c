// Readers for the file formats logpctl uploads, and a PNG writer for samples.
#ifndef LOGP_CLIENT_DATA_FILES_H_
#define LOGP_CLIENT_DATA_FILES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "logp/v1/records.pb.h"
#include "proto/cc/records.h"

namespace logp {

// How raw file values become records.
struct ReadOptions {
  // Kind of the resulting records.
  v1::DataKind kind = v1::DATA_KIND_CONTINUOUS;
  // For BINARY: value > threshold becomes 1 (e.g. 127 for 8-bit images). Values must otherwise
  // already be 0 or 1.
  double binarize_threshold = -1;  // < 0: no thresholding
  // For CATEGORICAL: K (0: max value + 1).
  int32_t num_categories = 0;
  // Keep at most this many records (0: all).
  int64_t max_records = 0;
};

// What a file held besides its values: the image shape of IDX images ([N, H, W]).
struct FileInfo {
  v1::ImageShape image_shape;  // all zero if the file has no image shape
};

// IDX (the MNIST format; gzip-compressed files are read transparently, as by every Read*
// below). Unsigned-byte data only.
absl::StatusOr<RecordMatrix> ReadIdx(const std::string& path, const ReadOptions& options,
                                     FileInfo* info = nullptr);
// NPY version 1/2, C order, 2-D (or 3-D images, flattened), dtype u1, i4, i8, f4 or f8.
absl::StatusOr<RecordMatrix> ReadNpy(const std::string& path, const ReadOptions& options,
                                     FileInfo* info = nullptr);
// CSV of numbers, one record per line; a first line that is not numeric is skipped as a header.
absl::StatusOr<RecordMatrix> ReadCsv(const std::string& path, const ReadOptions& options);
// The same readers over a file's (uncompressed) bytes in memory; `source` names it in messages.
// Every size a header declares is checked against the bytes before anything is allocated.
absl::StatusOr<RecordMatrix> ParseIdx(absl::string_view bytes, const std::string& source,
                                      const ReadOptions& options, FileInfo* info = nullptr);
absl::StatusOr<RecordMatrix> ParseNpy(absl::string_view bytes, const std::string& source,
                                      const ReadOptions& options, FileInfo* info = nullptr);
absl::StatusOr<RecordMatrix> ParseCsv(absl::string_view text, const std::string& source,
                                      const ReadOptions& options);
// Chooses the reader by extension (.idx, .idx3-ubyte, -ubyte, .gz -> IDX; .npy; .csv).
absl::StatusOr<RecordMatrix> ReadRecordsFile(const std::string& path, const ReadOptions& options,
                                             FileInfo* info = nullptr);

// Writes records as a grid of grey images (values scaled: binary 0/1 -> 0/255; categorical by
// K-1; continuous min..max) with `columns` images per row, each shape.height x shape.width.
absl::Status WritePngGrid(const RecordMatrix& records, const v1::ImageShape& shape, int columns,
                          const std::string& path);
// Writes `pixels` (row-major, `channels` bytes per pixel: 1 grey, 3 RGB) as an 8-bit PNG.
absl::Status WritePng(const std::string& path, const std::vector<uint8_t>& pixels, uint32_t width,
                      uint32_t height, int channels);

}  // namespace logp

#endif  // LOGP_CLIENT_DATA_FILES_H_
