// logpctl models explain: which dimensions of a record the model finds least likely, from the
// chain-rule terms log p(x_d | x_<d) (ScoreRequest.per_dimension), as a table and, for image
// data, a PNG of the record beside a heat map of -log p(x_d | x_<d).
#ifndef LOGP_CLIENT_LOGPCTL_EXPLAIN_H_
#define LOGP_CLIENT_LOGPCTL_EXPLAIN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "client/data_files.h"
#include "logp/v1/model_service.pb.h"

namespace logp::logpctl {

inline constexpr char kExplainUsage[] =
    "models explain ID --input=FILE [read flags as for upload] [--record=N] [--top=K] "
    "[--output=FILE.png]";

// Reads --input with `options`, explains record --record under `model` (printing the --top
// least likely dimensions, or JSON with --json) and writes --output as a PNG. INVALID_ARGUMENT
// for a record index outside the file; FAILED_PRECONDITION for --output when the model has no
// image shape, or (from the server) for a family without per-dimension terms.
absl::StatusOr<int> ModelsExplain(Client& client, const v1::Model& model,
                                  const ReadOptions& options);

// The image that ModelsExplain writes, for record `values` (D = height x width x channels) and
// its terms: the record in grey (channel 0; RGB when there are 3 channels) on the left, a gap
// of `scale` pixels, and on the right each pixel's surprise -sum_c log p(x_(y,x,c) | ...)
// coloured from black (least surprising) through red and yellow to white (most surprising),
// each image pixel drawn as scale x scale. RGB bytes, row-major; sets *width and *height.
std::vector<uint8_t> ExplainImage(const std::vector<double>& values,
                                  const std::vector<double>& terms, const v1::ImageShape& shape,
                                  v1::DataKind kind, int32_t num_categories, int scale,
                                  uint32_t* width, uint32_t* height);

}  // namespace logp::logpctl

#endif  // LOGP_CLIENT_LOGPCTL_EXPLAIN_H_
