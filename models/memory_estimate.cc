#include "models/memory_estimate.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "models/density_net.h"
#include "proto/cc/status_macros.h"

namespace logp {

int64_t MlpParameters(int64_t in, int64_t hidden_layers, int64_t units, int64_t out) {
  int64_t p = 0;
  for (int64_t l = 0; l < hidden_layers; ++l) {
    p += in * units + units;
    in = units;
  }
  return p + in * out + out;
}

int64_t MlpStepBytes(int64_t in, int64_t hidden_layers, int64_t units, int64_t out, bool dropout) {
  // Per hidden unit: the ReLU output autograd keeps (the linear output it came from is freed)
  // and, in the backward pass, the gradients flowing through it: measured at about 2.5 floats
  // (10 bytes) per unit; dropout adds its mask and its output. Per output unit: the value and
  // its gradient. The input is read as it is (the first layer needs no gradient of it).
  const int64_t bytes_per_hidden = dropout ? 18 : 10;
  return 4 * (in + 2 * out) + bytes_per_hidden * hidden_layers * units;
}

int64_t MlpEvalBytes(int64_t in, int64_t hidden_layers, int64_t units, int64_t out) {
  // Without autograd a layer's input is freed once its output exists: at most two layers live.
  return 4 * (in + 2 * std::max(units, out) + out);
}

namespace {

// Bytes per value of the tensors the trainer makes of stored records (models/model.cc): packed
// bits unpack to uint8, uint8 categories stay uint8, wider ones and continuous values are float.
int64_t TensorBytesPerValue(const DataShape& shape) {
  switch (shape.kind) {
    case v1::DATA_KIND_BINARY:
      return 1;
    case v1::DATA_KIND_CATEGORICAL:
      return shape.num_categories <= 256 ? 1 : 4;
    default:
      return 4;
  }
}

// Bytes per record of a loaded dataset (proto/cc/records.h).
int64_t LoadedRowBytes(const DataShape& shape) {
  switch (shape.kind) {
    case v1::DATA_KIND_BINARY:
      return (shape.dim + 7) / 8;
    case v1::DATA_KIND_CATEGORICAL:
      return shape.dim * (shape.num_categories <= 256 ? 1 : 2);
    default:
      return shape.dim * 4;
  }
}

}  // namespace

int64_t ResidentDataBytes(const DataShape& shape, int64_t train_rows, int64_t validation_rows,
                          bool split) {
  const int64_t row = LoadedRowBytes(shape);
  if (!split) return (train_rows + validation_rows) * row;
  const int64_t valid_row = shape.kind == v1::DATA_KIND_BINARY ? shape.dim : row;
  return (train_rows + validation_rows) * row + train_rows * row + validation_rows * valid_row;
}

std::string HumanBytes(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= double{1 << 30}) return absl::StrFormat("%.1f GiB", b / double{1 << 30});
  if (b >= double{1 << 20}) return absl::StrFormat("%.1f MiB", b / double{1 << 20});
  if (b >= double{1 << 10}) return absl::StrFormat("%.1f KiB", b / double{1 << 10});
  return absl::StrCat(bytes, " B");
}

std::string MemoryEstimate::Describe() const {
  return absl::StrFormat("%s (parameters %s for %.3gM parameters, activations %s, data %s)",
                         HumanBytes(total_bytes()), HumanBytes(parameter_bytes),
                         static_cast<double>(parameters) / 1e6, HumanBytes(activation_bytes),
                         HumanBytes(data_bytes));
}

absl::StatusOr<MemoryEstimate> EstimateTrainingMemory(const v1::ModelSpec& raw,
                                                      const DataShape& shape,
                                                      const TrainingSize& size) {
  ASSIGN_OR_RETURN(const v1::ModelSpec spec, ResolveModelSpec(raw, shape));
  const FamilyInfo* family = FindFamily(spec.family());
  NetFootprint net = family->footprint(spec, shape);
  if (spec.has_preprocessing()) {
    // Dequantisation noise, the logit transform and its log-determinant terms, with gradients.
    net.step_bytes_per_record += 4 * 6 * shape.dim;
    net.eval_bytes_per_record += 4 * 3 * shape.dim;
  }
  const bool gradient = net.gradient_fit;
  const int64_t n = std::max<int64_t>(size.train_rows, 1);
  const int64_t v = std::max<int64_t>(size.validation_rows, 1);
  const int64_t threads = std::max(size.compute_threads, 1);

  MemoryEstimate e;
  e.parameters = net.parameters;
  // Weights, the best weights so far and a checkpoint being encoded (both again); with Adam also
  // the gradients, the two moments and the moments again in the checkpoint.
  const int64_t copies = gradient ? 4 + 1 + 2 + 2 : 4;
  e.parameter_bytes =
      4 * net.parameters *
      (copies + net.extra_parameter_copies + threads * net.per_thread_parameter_copies);

  const int64_t step_rows = gradient ? std::min(size.batch_size, n) : n;
  const int64_t eval_rows = std::min<int64_t>(kEvalBatchRows, std::max(n, v));
  e.activation_bytes =
      std::max(step_rows * net.step_bytes_per_record, eval_rows * net.eval_bytes_per_record);

  // Validation records as a tensor, the fixed training subset scored each epoch, and for
  // closed-form and EM fits every training record unpacked and as float.
  const int64_t row = shape.dim * TensorBytesPerValue(shape);
  const int64_t train_eval_rows = std::min<int64_t>({n, v, 10000});
  e.data_bytes = size.resident_data_bytes + (v + train_eval_rows) * row;
  if (!gradient) e.data_bytes += n * (row + 4 * shape.dim);
  return e;
}

}  // namespace logp
