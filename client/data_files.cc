#include "client/data_files.h"

#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace {

// Largest number of values a file may hold (keeps N * D and byte counts far from overflow).
constexpr int64_t kMaxValues = int64_t{1} << 40;

absl::Status OpenError(const std::string& path) {
  const int err = errno;
  const std::string message = absl::StrCat("cannot open ", path, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(message);
  if (err == EACCES) return absl::PermissionDeniedError(message);
  return absl::InvalidArgumentError(message);
}

// A file read through zlib, which passes plain (uncompressed) files through unchanged.
class GzFile {
 public:
  static absl::StatusOr<GzFile> Open(const std::string& path) {
    errno = 0;
    gzFile file = gzopen(path.c_str(), "rb");
    if (file == nullptr) return OpenError(path);
    gzbuffer(file, 1 << 20);
    return GzFile(path, file);
  }
  GzFile(GzFile&& other) noexcept
      : path_(std::move(other.path_)), file_(std::exchange(other.file_, nullptr)) {}
  GzFile& operator=(GzFile&&) = delete;
  ~GzFile() {
    if (file_ != nullptr) gzclose(file_);
  }

  // Reads up to `n` bytes; returns how many were read (fewer only at the end of the file).
  absl::StatusOr<int64_t> Read(void* buffer, int64_t n) {
    auto* out = static_cast<char*>(buffer);
    int64_t done = 0;
    while (done < n) {
      const unsigned want = static_cast<unsigned>(std::min<int64_t>(n - done, 1 << 30));
      const int got = gzread(file_, out + done, want);
      if (got < 0) {
        int errnum = 0;
        const char* message = gzerror(file_, &errnum);
        return absl::InvalidArgumentError(absl::StrCat("cannot read ", path_, ": ", message));
      }
      if (got == 0) break;
      done += got;
    }
    return done;
  }

  // The rest of the file.
  absl::StatusOr<std::string> ReadAll() {
    std::string text;
    char buffer[1 << 16];
    while (true) {
      ASSIGN_OR_RETURN(const int64_t got, Read(buffer, sizeof(buffer)));
      if (got == 0) break;
      text.append(buffer, got);
    }
    return text;
  }

 private:
  GzFile(std::string path, gzFile file) : path_(std::move(path)), file_(file) {}

  std::string path_;
  gzFile file_;
};

// Reads a file's bytes in order, with the same "file ends inside" messages for every format.
class ByteReader {
 public:
  ByteReader(absl::string_view bytes, const std::string& source) : rest_(bytes), source_(source) {}

  // The next `n` bytes (a view into the input); INVALID_ARGUMENT naming `what` if the input ends
  // first. Checked against the input's size before anything is allocated for them.
  absl::StatusOr<absl::string_view> Take(int64_t n, absl::string_view what) {
    if (n < 0 || static_cast<uint64_t>(n) > rest_.size()) {
      return absl::InvalidArgumentError(absl::StrCat(source_, ": file ends inside the ", what, " (",
                                                     rest_.size(), " of ", n, " bytes)"));
    }
    absl::string_view out = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return out;
  }
  absl::Status ReadExactly(void* buffer, int64_t n, absl::string_view what) {
    ASSIGN_OR_RETURN(absl::string_view got, Take(n, what));
    std::memcpy(buffer, got.data(), got.size());
    return absl::OkStatus();
  }

 private:
  absl::string_view rest_;
  const std::string& source_;
};

// Converts rows x cols raw values, read with value(i) for flat index i, to records of the kind
// options ask for. `source` prefixes error messages (the file name).
template <typename ValueFn>
absl::StatusOr<RecordMatrix> ToRecords(int64_t rows, int64_t cols, ValueFn value,
                                       const ReadOptions& options, const std::string& source) {
  if (rows <= 0) return absl::InvalidArgumentError(absl::StrCat(source, ": no records"));
  if (cols <= 0) return absl::InvalidArgumentError(absl::StrCat(source, ": records are empty"));
  if (cols > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": dimension ", cols, " is too large"));
  }
  const int64_t n = rows * cols;
  auto bad = [&](int64_t i, absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": record ", i / cols, ", column ", i % cols, ": ", what));
  };
  switch (options.kind) {
    case v1::DATA_KIND_CONTINUOUS: {
      ASSIGN_OR_RETURN(RecordMatrix m, RecordMatrix::Empty(options.kind, cols, 0));
      m.f32.resize(n);
      for (int64_t i = 0; i < n; ++i) {
        const double v = value(i);
        const float f = static_cast<float>(v);
        if (std::isnan(v)) return bad(i, "value is NaN");
        if (!std::isfinite(f)) return bad(i, absl::StrCat("value ", v, " is not a finite float32"));
        m.f32[i] = f;
      }
      m.rows = rows;
      return m;
    }
    case v1::DATA_KIND_BINARY: {
      ASSIGN_OR_RETURN(RecordMatrix m, RecordMatrix::Empty(options.kind, cols, 2));
      m.u8.resize(n);
      const bool threshold = options.binarize_threshold >= 0;
      for (int64_t i = 0; i < n; ++i) {
        const double v = value(i);
        if (std::isnan(v)) return bad(i, "value is NaN");
        if (threshold) {
          m.u8[i] = v > options.binarize_threshold ? 1 : 0;
        } else if (v == 0 || v == 1) {
          m.u8[i] = static_cast<uint8_t>(v);
        } else {
          return bad(
              i, absl::StrCat("value ", v, " is not 0 or 1 (set a binarize threshold to convert)"));
        }
      }
      m.rows = rows;
      return m;
    }
    case v1::DATA_KIND_CATEGORICAL: {
      if (options.num_categories < 0 || options.num_categories == 1 ||
          options.num_categories > 65536) {
        return absl::InvalidArgumentError(
            absl::StrCat("num_categories must be 0 (from the data) or in [2, 65536], got ",
                         options.num_categories));
      }
      const int64_t limit = options.num_categories > 0 ? options.num_categories : 65536;
      int64_t max_value = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double v = value(i);
        if (!(v >= 0) || v != std::floor(v)) {
          return bad(i, absl::StrCat("value ", v, " is not a non-negative integer"));
        }
        if (v >= limit) {
          return bad(i, absl::StrCat("category ", v, " is not below K = ", limit));
        }
        max_value = std::max(max_value, static_cast<int64_t>(v));
      }
      const int32_t k = options.num_categories > 0
                            ? options.num_categories
                            : static_cast<int32_t>(std::max<int64_t>(2, max_value + 1));
      ASSIGN_OR_RETURN(RecordMatrix m, RecordMatrix::Empty(options.kind, cols, k));
      if (k <= 256) {
        m.u8.resize(n);
        for (int64_t i = 0; i < n; ++i) m.u8[i] = static_cast<uint8_t>(value(i));
      } else {
        m.u16.resize(n);
        for (int64_t i = 0; i < n; ++i) m.u16[i] = static_cast<uint16_t>(value(i));
      }
      m.rows = rows;
      return m;
    }
    default:
      return absl::InvalidArgumentError("kind must be binary, categorical or continuous");
  }
}

int64_t KeptRows(int64_t rows, const ReadOptions& options) {
  return options.max_records > 0 ? std::min(rows, options.max_records) : rows;
}

void SetImageShape(FileInfo* info, uint32_t height, uint32_t width, uint32_t channels) {
  if (info == nullptr) return;
  info->image_shape.set_height(height);
  info->image_shape.set_width(width);
  info->image_shape.set_channels(channels);
}

// --- NPY header ---

// Finds `'key':` in a header dict and returns what follows it, spaces skipped.
absl::StatusOr<absl::string_view> NpyValue(absl::string_view header, absl::string_view key,
                                           const std::string& path) {
  for (const char quote : {'\'', '"'}) {
    const std::string quoted = absl::StrCat(std::string(1, quote), key, std::string(1, quote));
    const size_t at = header.find(quoted);
    if (at == absl::string_view::npos) continue;
    absl::string_view rest = absl::StripLeadingAsciiWhitespace(header.substr(at + quoted.size()));
    if (!absl::ConsumePrefix(&rest, ":")) break;
    return absl::StripLeadingAsciiWhitespace(rest);
  }
  return absl::InvalidArgumentError(absl::StrCat(path, ": NPY header has no '", key, "'"));
}

struct NpyHeader {
  std::string descr;
  std::vector<int64_t> shape;
};

absl::StatusOr<NpyHeader> ParseNpyHeader(absl::string_view header, const std::string& path) {
  NpyHeader out;
  ASSIGN_OR_RETURN(absl::string_view descr, NpyValue(header, "descr", path));
  if (descr.empty() || (descr[0] != '\'' && descr[0] != '"')) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": NPY 'descr' is not a plain dtype"));
  }
  const size_t end = descr.find(descr[0], 1);
  if (end == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed NPY 'descr'"));
  }
  out.descr = std::string(descr.substr(1, end - 1));

  ASSIGN_OR_RETURN(absl::string_view fortran, NpyValue(header, "fortran_order", path));
  if (absl::StartsWith(fortran, "True")) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": Fortran-order NPY arrays are not supported (save in C order)"));
  }
  if (!absl::StartsWith(fortran, "False")) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed NPY 'fortran_order'"));
  }

  ASSIGN_OR_RETURN(absl::string_view shape, NpyValue(header, "shape", path));
  const size_t close = shape.find(')');
  if (!absl::StartsWith(shape, "(") || close == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed NPY 'shape'"));
  }
  shape = shape.substr(1, close - 1);
  for (absl::string_view part : absl::StrSplit(shape, ',', absl::SkipWhitespace())) {
    int64_t dim = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &dim) || dim < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": malformed NPY 'shape' entry '", part, "'"));
    }
    out.shape.push_back(dim);
  }
  return out;
}

// Reads raw NPY values of one dtype as doubles.
template <typename T>
double LoadAs(const char* data, int64_t i) {
  T v;
  std::memcpy(&v, data + i * sizeof(T), sizeof(T));  // NPY '<' data on a little-endian host
  return static_cast<double>(v);
}

// --- CSV ---

// Parses one line of numbers into `values`; on failure returns the bad field's index.
int64_t ParseCsvLine(absl::string_view line, std::vector<double>* values) {
  values->clear();
  for (absl::string_view field : absl::StrSplit(line, ',')) {
    double v;
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(field), &v)) {
      return static_cast<int64_t>(values->size());
    }
    values->push_back(v);
  }
  return -1;
}

// --- PNG ---

struct PngError {
  char message[256] = "";
};

void PngErrorFn(png_structp png, png_const_charp message) {
  auto* error = static_cast<PngError*>(png_get_error_ptr(png));
  std::snprintf(error->message, sizeof(error->message), "%s", message);
  png_longjmp(png, 1);
}

void PngWarningFn(png_structp, png_const_charp) {}

// Writes an 8-bit grey (channels 1) or RGB (channels 3) image. Holds no C++ objects with
// destructors, because libpng reports errors by longjmp.
bool WritePngRows(std::FILE* file, const uint8_t* pixels, uint32_t width, uint32_t height,
                  int channels, PngError* error) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, error, PngErrorFn, PngWarningFn);
  if (png == nullptr) return false;
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_init_io(png, file);
  png_set_IHDR(png, info, width, height, 8,
               channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const size_t row_bytes = static_cast<size_t>(width) * channels;
  for (uint32_t y = 0; y < height; ++y) {
    png_write_row(png, const_cast<png_bytep>(pixels + static_cast<size_t>(y) * row_bytes));
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace

absl::StatusOr<RecordMatrix> ParseIdx(absl::string_view bytes, const std::string& path,
                                      const ReadOptions& options, FileInfo* info) {
  if (info != nullptr) *info = FileInfo();
  ByteReader file(bytes, path);
  uint8_t magic[4];
  RETURN_IF_ERROR(file.ReadExactly(magic, 4, "IDX magic number"));
  if (magic[0] != 0 || magic[1] != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not an IDX file (bad magic number)"));
  }
  if (magic[2] != 0x08) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": IDX data type 0x", absl::Hex(magic[2]),
                                                   " is not supported (only unsigned bytes)"));
  }
  const int ndims = magic[3];
  if (ndims < 1 || ndims > 3) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": IDX files with ", ndims, " dimensions are not supported (1 to 3)"));
  }
  int64_t dims[3] = {0, 1, 1};
  for (int d = 0; d < ndims; ++d) {
    uint8_t b[4];
    RETURN_IF_ERROR(file.ReadExactly(b, 4, "IDX dimensions"));
    dims[d] = (int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | b[3];
  }
  if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": IDX file holds no values"));
  }
  // Each dimension is below 2^32, so the product of two can overflow int64_t: divide instead.
  if (dims[1] > kMaxValues / dims[2] || dims[0] > kMaxValues / (dims[1] * dims[2])) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": IDX file is too large"));
  }
  const int64_t cols = dims[1] * dims[2];
  const int64_t rows = KeptRows(dims[0], options);
  ASSIGN_OR_RETURN(const absl::string_view data, file.Take(rows * cols, "IDX data"));
  if (ndims == 3) {
    SetImageShape(info, static_cast<uint32_t>(dims[1]), static_cast<uint32_t>(dims[2]), 1);
  }
  return ToRecords(
      rows, cols, [data](int64_t i) { return static_cast<double>(static_cast<uint8_t>(data[i])); },
      options, path);
}

absl::StatusOr<RecordMatrix> ParseNpy(absl::string_view bytes, const std::string& path,
                                      const ReadOptions& options, FileInfo* info) {
  if (info != nullptr) *info = FileInfo();
  ByteReader file(bytes, path);
  char preamble[8];
  RETURN_IF_ERROR(file.ReadExactly(preamble, 8, "NPY preamble"));
  if (std::memcmp(preamble, "\x93NUMPY", 6) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not an NPY file (bad magic string)"));
  }
  const int major = static_cast<uint8_t>(preamble[6]);
  int64_t header_len = 0;
  if (major == 1) {
    uint8_t b[2];
    RETURN_IF_ERROR(file.ReadExactly(b, 2, "NPY header length"));
    header_len = b[0] | (b[1] << 8);
  } else if (major == 2 || major == 3) {
    uint8_t b[4];
    RETURN_IF_ERROR(file.ReadExactly(b, 4, "NPY header length"));
    header_len =
        int64_t{b[0]} | (int64_t{b[1]} << 8) | (int64_t{b[2]} << 16) | (int64_t{b[3]} << 24);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": NPY format version ", major, " is not supported"));
  }
  if (header_len > (1 << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": NPY header is too long"));
  }
  ASSIGN_OR_RETURN(const absl::string_view header, file.Take(header_len, "NPY header"));
  ASSIGN_OR_RETURN(NpyHeader parsed, ParseNpyHeader(header, path));

  std::string dtype = parsed.descr;
  if (dtype.size() == 3 && (dtype[0] == '|' || dtype[0] == '=') && dtype[2] == '1') {
    dtype[0] = '<';  // single-byte types have no byte order
  }
  struct Dtype {
    const char* descr;
    int64_t bytes;
    double (*load)(const char*, int64_t);
  };
  static constexpr Dtype kDtypes[] = {{"<u1", 1, LoadAs<uint8_t>}, {"<b1", 1, LoadAs<uint8_t>},
                                      {"<i4", 4, LoadAs<int32_t>}, {"<i8", 8, LoadAs<int64_t>},
                                      {"<f4", 4, LoadAs<float>},   {"<f8", 8, LoadAs<double>}};
  const Dtype* type = nullptr;
  for (const Dtype& t : kDtypes) {
    if (dtype == t.descr) type = &t;
  }
  if (type == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": NPY dtype '", parsed.descr,
                                                   "' is not supported (|u1, <i4, <i8, <f4, <f8)"));
  }
  const int64_t item_bytes = type->bytes;
  double (*load)(const char*, int64_t) = type->load;

  const std::vector<int64_t>& shape = parsed.shape;
  if (shape.empty() || shape.size() > 4) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": NPY arrays of ", shape.size(),
                                                   " dimensions are not supported (1 to 4)"));
  }
  int64_t cols = 1;
  for (size_t d = 1; d < shape.size(); ++d) {
    if (shape[d] == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": records are empty"));
    if (cols > kMaxValues / shape[d]) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": NPY array is too large"));
    }
    cols *= shape[d];
  }
  if (shape[0] > kMaxValues / cols) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": NPY array is too large"));
  }
  const int64_t rows = KeptRows(shape[0], options);
  ASSIGN_OR_RETURN(const absl::string_view data, file.Take(rows * cols * item_bytes, "NPY data"));
  if (shape.size() >= 3) {
    SetImageShape(info, static_cast<uint32_t>(shape[1]), static_cast<uint32_t>(shape[2]),
                  shape.size() == 4 ? static_cast<uint32_t>(shape[3]) : 1);
  }
  const char* values = data.data();
  return ToRecords(
      rows, cols, [values, load](int64_t i) { return load(values, i); }, options, path);
}

absl::StatusOr<RecordMatrix> ParseCsv(absl::string_view text, const std::string& path,
                                      const ReadOptions& options) {
  std::vector<double> values;
  std::vector<double> row;
  int64_t cols = -1;
  int64_t rows = 0;
  int64_t line_number = 0;
  bool first = true;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    absl::ConsumeSuffix(&line, "\r");
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    if (options.max_records > 0 && rows >= options.max_records) break;
    const int64_t bad_column = ParseCsvLine(line, &row);
    if (bad_column >= 0) {
      if (first) {  // a header line
        first = false;
        continue;
      }
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": line ", line_number, ", column ", bad_column, ": not a number"));
    }
    first = false;
    if (cols < 0) cols = static_cast<int64_t>(row.size());
    if (static_cast<int64_t>(row.size()) != cols) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": line ", line_number, " has ",
                                                     row.size(), " columns, expected ", cols));
    }
    values.insert(values.end(), row.begin(), row.end());
    ++rows;
  }
  return ToRecords(
      rows, std::max<int64_t>(cols, 0), [&values](int64_t i) { return values[i]; }, options, path);
}

absl::StatusOr<RecordMatrix> ReadIdx(const std::string& path, const ReadOptions& options,
                                     FileInfo* info) {
  if (info != nullptr) *info = FileInfo();
  ASSIGN_OR_RETURN(GzFile file, GzFile::Open(path));
  ASSIGN_OR_RETURN(const std::string bytes, file.ReadAll());
  return ParseIdx(bytes, path, options, info);
}

absl::StatusOr<RecordMatrix> ReadNpy(const std::string& path, const ReadOptions& options,
                                     FileInfo* info) {
  if (info != nullptr) *info = FileInfo();
  ASSIGN_OR_RETURN(GzFile file, GzFile::Open(path));
  ASSIGN_OR_RETURN(const std::string bytes, file.ReadAll());
  return ParseNpy(bytes, path, options, info);
}

absl::StatusOr<RecordMatrix> ReadCsv(const std::string& path, const ReadOptions& options) {
  ASSIGN_OR_RETURN(GzFile file, GzFile::Open(path));
  ASSIGN_OR_RETURN(const std::string text, file.ReadAll());
  return ParseCsv(text, path, options);
}

absl::StatusOr<RecordMatrix> ReadRecordsFile(const std::string& path, const ReadOptions& options,
                                             FileInfo* info) {
  if (info != nullptr) *info = FileInfo();
  const std::string lower = absl::AsciiStrToLower(path);
  absl::string_view name = lower;
  const bool gz = absl::ConsumeSuffix(&name, ".gz");
  if (absl::EndsWith(name, ".npy")) return ReadNpy(path, options, info);
  if (absl::EndsWith(name, ".csv")) return ReadCsv(path, options);
  if (absl::EndsWith(name, ".idx") || absl::EndsWith(name, "-ubyte") ||
      absl::StrContains(name, ".idx")) {
    return ReadIdx(path, options, info);
  }
  // Unknown extension: look at the first bytes.
  ASSIGN_OR_RETURN(GzFile file, GzFile::Open(path));
  char magic[6] = {};
  ASSIGN_OR_RETURN(const int64_t got, file.Read(magic, sizeof(magic)));
  if (got == 6 && std::memcmp(magic, "\x93NUMPY", 6) == 0) return ReadNpy(path, options, info);
  if (got >= 4 && magic[0] == 0 && magic[1] == 0 && magic[2] == 0x08) {
    return ReadIdx(path, options, info);
  }
  if (gz) return ReadIdx(path, options, info);  // e.g. MNIST's train-images-idx3-ubyte.gz
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": unknown file type (expected IDX, .npy or .csv)"));
}

absl::Status WritePngGrid(const RecordMatrix& records, const v1::ImageShape& shape, int columns,
                          const std::string& path) {
  const int64_t height = shape.height(), width = shape.width();
  const int64_t channels = shape.channels() == 0 ? 1 : shape.channels();
  if (height <= 0 || width <= 0) {
    return absl::InvalidArgumentError("image shape needs a height and a width");
  }
  if (height * width * channels != records.cols) {
    return absl::InvalidArgumentError(absl::StrCat("image shape ", height, "x", width, "x",
                                                   channels, " does not match dim ", records.cols));
  }
  if (records.rows <= 0) return absl::InvalidArgumentError("no records to draw");
  if (columns <= 0) return absl::InvalidArgumentError("columns must be > 0");

  // Grey level of a value: binary 0/1 -> 0/255, categorical by K-1, continuous min..max.
  double low = 0, high = 1;
  if (records.kind == v1::DATA_KIND_CATEGORICAL) {
    high = std::max(1, records.num_categories - 1);
  } else if (records.kind == v1::DATA_KIND_CONTINUOUS && !records.f32.empty()) {
    const auto [min_it, max_it] = std::minmax_element(records.f32.begin(), records.f32.end());
    low = *min_it;
    high = *max_it > *min_it ? *max_it : *min_it + 1;
  }

  const int64_t tiles_x = std::min<int64_t>(columns, records.rows);
  const int64_t tiles_y = (records.rows + tiles_x - 1) / tiles_x;
  constexpr int64_t kMargin = 1;
  constexpr uint8_t kMarginGrey = 128;  // distinguishable from black and white backgrounds
  const int64_t image_w = tiles_x * width + (tiles_x - 1) * kMargin;
  const int64_t image_h = tiles_y * height + (tiles_y - 1) * kMargin;
  if (image_w > (1 << 20) || image_h > (1 << 20) || image_w * image_h > (int64_t{1} << 31)) {
    return absl::InvalidArgumentError(
        absl::StrCat("image grid of ", image_w, "x", image_h, " pixels is too large"));
  }
  std::vector<uint8_t> pixels(image_w * image_h, kMarginGrey);
  for (int64_t r = 0; r < records.rows; ++r) {
    const int64_t x0 = (r % tiles_x) * (width + kMargin);
    const int64_t y0 = (r / tiles_x) * (height + kMargin);
    for (int64_t y = 0; y < height; ++y) {
      for (int64_t x = 0; x < width; ++x) {
        // Only the first channel is drawn.
        const double v = records.At(r, (y * width + x) * channels);
        const double grey = std::clamp((v - low) / (high - low), 0.0, 1.0) * 255.0;
        pixels[(y0 + y) * image_w + x0 + x] = static_cast<uint8_t>(std::lround(grey));
      }
    }
  }

  return WritePng(path, pixels, static_cast<uint32_t>(image_w), static_cast<uint32_t>(image_h), 1);
}

absl::Status WritePng(const std::string& path, const std::vector<uint8_t>& pixels, uint32_t width,
                      uint32_t height, int channels) {
  if (channels != 1 && channels != 3) {
    return absl::InvalidArgumentError(absl::StrCat("PNG channels must be 1 or 3, got ", channels));
  }
  if (pixels.size() != static_cast<size_t>(width) * height * channels || width == 0 ||
      height == 0) {
    return absl::InvalidArgumentError(absl::StrCat("PNG of ", width, "x", height, "x", channels,
                                                   " from ", pixels.size(), " bytes"));
  }
  errno = 0;
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return OpenError(path);
  PngError error;
  const bool written = WritePngRows(file, pixels.data(), width, height, channels, &error);
  const bool closed = std::fclose(file) == 0;
  if (!written) {
    return absl::InternalError(absl::StrCat("cannot write PNG ", path, ": ", error.message));
  }
  if (!closed) {
    return absl::InternalError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace logp
