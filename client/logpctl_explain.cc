#include "client/logpctl_explain.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/logpctl_print.h"
#include "proto/cc/status_macros.h"

ABSL_DECLARE_FLAG(std::string, output);
ABSL_DECLARE_FLAG(bool, json);
ABSL_FLAG(std::string, input, "", "models explain: the file holding the record to explain.");
ABSL_FLAG(int64_t, record, 0, "models explain: index of the record in --input (0-based).");
ABSL_FLAG(int32_t, top, 10, "models explain: how many of the least likely dimensions to list.");

namespace logp::logpctl {
namespace {

// What "<d" means for the model's terms, in words.
std::string OrderWords(const v1::ModelSpec& spec) {
  auto order = [](v1::VariableOrder o, uint64_t seed) {
    return o == v1::VARIABLE_ORDER_RANDOM
               ? absl::StrCat("random variable order (order_seed ", seed, ")")
               : std::string("natural variable order");
  };
  switch (spec.family()) {
    case v1::MODEL_FAMILY_FVSBN:
      return order(spec.fvsbn().order(), spec.fvsbn().order_seed());
    case v1::MODEL_FAMILY_NADE:
      return order(spec.nade().order(), spec.nade().order_seed());
    case v1::MODEL_FAMILY_MADE:
      return order(spec.made().order(), spec.made().order_seed());
    case v1::MODEL_FAMILY_GAUSSIAN_MIXTURE:
      return "natural variable order";
    case v1::MODEL_FAMILY_PIXELCNN:
      return "raster order (row by row, left to right)";
    default:
      return "independent dimensions (each term is the marginal log p(x_d))";
  }
}

// Black -> red -> yellow -> white for t in [0, 1].
void HeatColour(double t, uint8_t* rgb) {
  t = std::clamp(t, 0.0, 1.0);
  const double c[3] = {3 * t, 3 * t - 1, 3 * t - 2};
  for (int i = 0; i < 3; ++i)
    rgb[i] = static_cast<uint8_t>(std::lround(std::clamp(c[i], 0.0, 1.0) * 255));
}

}  // namespace

std::vector<uint8_t> ExplainImage(const std::vector<double>& values,
                                  const std::vector<double>& terms, const v1::ImageShape& shape,
                                  v1::DataKind kind, int32_t num_categories, int scale,
                                  uint32_t* width, uint32_t* height) {
  const int64_t h = shape.height(), w = shape.width();
  const int64_t channels = std::max<int64_t>(1, shape.channels());
  *width = static_cast<uint32_t>((2 * w + 1) * scale);
  *height = static_cast<uint32_t>(h * scale);
  std::vector<uint8_t> rgb(static_cast<size_t>(*width) * *height * 3, 128);
  // Grey levels as WritePngGrid: binary 0/1, categorical by K - 1, continuous min..max.
  double low = 0, high = 1;
  if (kind == v1::DATA_KIND_CATEGORICAL) high = std::max(1, num_categories - 1);
  if (kind == v1::DATA_KIND_CONTINUOUS && !values.empty()) {
    const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
    low = *lo;
    high = *hi > *lo ? *hi : *lo + 1;
  }
  // Surprise per pixel: the sum over its channels of -log p(x_d | x_<d); -inf terms saturate.
  std::vector<double> surprise(h * w, 0);
  for (int64_t p = 0; p < h * w; ++p) {
    for (int64_t c = 0; c < channels; ++c) surprise[p] -= terms[p * channels + c];
  }
  double s_lo = INFINITY, s_hi = -INFINITY;
  for (double s : surprise) {
    if (std::isfinite(s)) s_lo = std::min(s_lo, s), s_hi = std::max(s_hi, s);
  }
  if (!(s_hi > s_lo)) s_hi = s_lo + 1;
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      uint8_t left[3], right[3];
      for (int64_t c = 0; c < 3; ++c) {
        const int64_t channel = channels == 3 ? c : 0;
        const double v = (values[(y * w + x) * channels + channel] - low) / (high - low);
        left[c] = static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 1.0) * 255));
      }
      const double s = surprise[y * w + x];
      HeatColour(std::isfinite(s) ? (s - s_lo) / (s_hi - s_lo) : 1.0, right);
      for (int64_t dy = 0; dy < scale; ++dy) {
        for (int64_t dx = 0; dx < scale; ++dx) {
          const size_t row = static_cast<size_t>(y * scale + dy) * *width;
          uint8_t* l = &rgb[(row + x * scale + dx) * 3];
          uint8_t* r = &rgb[(row + (w + 1 + x) * scale + dx) * 3];
          std::copy(left, left + 3, l);
          std::copy(right, right + 3, r);
        }
      }
    }
  }
  return rgb;
}

absl::StatusOr<int> ModelsExplain(Client& client, const v1::Model& model,
                                  const ReadOptions& options) {
  const std::string input = absl::GetFlag(FLAGS_input);
  const std::string output = absl::GetFlag(FLAGS_output);
  const int64_t index = absl::GetFlag(FLAGS_record);
  const int64_t top = absl::GetFlag(FLAGS_top);
  if (input.empty()) return absl::InvalidArgumentError("models explain needs --input=FILE");
  if (top < 0) return absl::InvalidArgumentError(absl::StrCat("--top must be >= 0, got ", top));
  const v1::ImageShape& shape = model.image_shape();
  const bool image = shape.height() > 0 && shape.width() > 0;
  if (!output.empty() && !image) {
    return absl::FailedPreconditionError(
        absl::StrCat("model ", model.id(),
                     " has no image shape (its dataset was not uploaded as images); "
                     "run without --output for the table of least likely dimensions"));
  }
  ASSIGN_OR_RETURN(const RecordMatrix records, ReadRecordsFile(input, options));
  if (index < 0 || index >= records.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("--record=", index, ", but ", input, " has ", records.rows, " records"));
  }
  ASSIGN_OR_RETURN(RecordMatrix one,
                   RecordMatrix::Empty(records.kind, records.cols, records.num_categories));
  one.AppendRow(records, index);
  ASSIGN_OR_RETURN(const v1::ScoreResponse scored, client.ScorePerDimension(model.id(), one));
  const int64_t dim = records.cols;
  const std::vector<double> terms(scored.dimension_log_prob().begin(),
                                  scored.dimension_log_prob().end());
  std::vector<double> values(dim);
  for (int64_t d = 0; d < dim; ++d) values[d] = one.At(0, d);
  // Dimensions from the least likely term up.
  std::vector<int64_t> ranked(dim);
  std::iota(ranked.begin(), ranked.end(), 0);
  std::stable_sort(ranked.begin(), ranked.end(),
                   [&](int64_t a, int64_t b) { return terms[a] < terms[b]; });
  ranked.resize(std::min<int64_t>(top, dim));

  if (!output.empty()) {
    const int scale =
        static_cast<int>(std::max<int64_t>(1, (256 + std::max(shape.height(), shape.width()) - 1) /
                                                  std::max(shape.height(), shape.width())));
    uint32_t width = 0, height = 0;
    const std::vector<uint8_t> rgb = ExplainImage(values, terms, shape, records.kind,
                                                  records.num_categories, scale, &width, &height);
    RETURN_IF_ERROR(WritePng(output, rgb, width, height, 3));
  }
  const int64_t channels = std::max<int64_t>(1, shape.channels());
  if (absl::GetFlag(FLAGS_json)) {
    std::string least;
    for (int64_t d : ranked) {
      absl::StrAppend(
          &least, least.empty() ? "" : ",",
          absl::StrFormat("{\"dim\":%d,\"value\":%.9g,\"logProb\":%.9g}", d, values[d], terms[d]));
    }
    std::string all;
    for (double t : terms)
      absl::StrAppend(&all, all.empty() ? "" : ",", absl::StrFormat("%.9g", t));
    std::printf(
        "{\"record\":%lld,\"logProb\":%.9g,\"leastLikely\":[%s],\"dimensionLogProb\":[%s]}\n",
        static_cast<long long>(index), scored.log_prob(0), least.c_str(), all.c_str());
    return 0;
  }
  std::vector<std::pair<std::string, std::string>> fields = {
      {"record", absl::StrCat(index, " of ", input)},
      {"log p(x)", absl::StrFormat("%.4f nats", scored.log_prob(0))},
      {"terms", absl::StrCat("log p(x_d | x_<d), ", OrderWords(model.spec()))}};
  if (!output.empty()) fields.push_back({"heat map", output});
  PrintFields(fields);
  std::printf("\n");
  if (image) {
    std::printf("%4s  %5s  %4s  %4s%s  %10s  %12s\n", "rank", "dim", "row", "col",
                channels > 1 ? "  chan" : "", "value", "log p");
  } else {
    std::printf("%4s  %5s  %10s  %12s\n", "rank", "dim", "value", "log p");
  }
  for (size_t i = 0; i < ranked.size(); ++i) {
    const int64_t d = ranked[i];
    if (image) {
      const int64_t pixel = d / channels;
      const std::string chan = channels > 1 ? absl::StrFormat("  %4d", d % channels) : "";
      std::printf("%4zu  %5lld  %4lld  %4lld%s  %10.4g  %12.4f\n", i + 1, static_cast<long long>(d),
                  static_cast<long long>(pixel / shape.width()),
                  static_cast<long long>(pixel % shape.width()), chan.c_str(), values[d], terms[d]);
    } else {
      std::printf("%4zu  %5lld  %10.4g  %12.4f\n", i + 1, static_cast<long long>(d), values[d],
                  terms[d]);
    }
  }
  return 0;
}

}  // namespace logp::logpctl
