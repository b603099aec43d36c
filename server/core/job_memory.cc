#include "server/core/job_memory.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "models/memory_estimate.h"
#include "proto/cc/status_macros.h"

namespace logp {

absl::StatusOr<v1::MemoryEstimate> EstimateJobMemory(const v1::JobSpec& spec,
                                                     const v1::Dataset& train,
                                                     const v1::Dataset* validation,
                                                     int compute_threads) {
  const DataShape shape{train.kind(), train.dim(), static_cast<int32_t>(train.num_categories())};
  const int64_t n = static_cast<int64_t>(train.num_records());
  TrainingSize size;
  size.batch_size = spec.batch_size();
  size.compute_threads = compute_threads;
  if (validation != nullptr) {
    size.train_rows = n;
    size.validation_rows = static_cast<int64_t>(validation->num_records());
  } else {
    // As SplitRecords rounds.
    size.validation_rows = std::llround(spec.validation_fraction() * static_cast<double>(n));
    size.train_rows = n - size.validation_rows;
  }
  size.resident_data_bytes =
      ResidentDataBytes(shape, size.train_rows, size.validation_rows, validation == nullptr);
  ASSIGN_OR_RETURN(MemoryEstimate e, EstimateTrainingMemory(spec.model(), shape, size));
  v1::MemoryEstimate out;
  out.set_total_bytes(e.total_bytes());
  out.set_parameters(e.parameters);
  out.set_parameter_bytes(e.parameter_bytes);
  out.set_activation_bytes(e.activation_bytes);
  out.set_data_bytes(e.data_bytes);
  return out;
}

absl::Status CheckJobMemory(const v1::MemoryEstimate& estimate, int64_t limit) {
  if (limit <= 0 || estimate.total_bytes() <= limit) return absl::OkStatus();
  MemoryEstimate e;
  e.parameters = estimate.parameters();
  e.parameter_bytes = estimate.parameter_bytes();
  e.activation_bytes = estimate.activation_bytes();
  e.data_bytes = estimate.data_bytes();
  return absl::ResourceExhaustedError(absl::StrCat(
      "the job would need an estimated ", e.Describe(), " of memory, above this server's limit of ",
      HumanBytes(limit),
      " per job (--max_job_memory_bytes); use a smaller batch_size or model, or less data"));
}

namespace {

// The first line of a file as a number of bytes; 0 if absent or "max".
int64_t ReadBytes(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  int64_t v = 0;
  if (!std::getline(in, line) || !absl::SimpleAtoi(line, &v) || v <= 0) return 0;
  return v;
}

}  // namespace

int64_t AvailableMemoryBytes() {
  int64_t bytes = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  // cgroup v2, then v1 (whose "no limit" is a huge number, larger than the machine).
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    const int64_t limit = ReadBytes(path);
    if (limit > 0) bytes = std::min(bytes, limit);
  }
  return bytes;
}

int64_t DefaultMaxJobMemoryBytes(int training_slots) {
  return AvailableMemoryBytes() / 4 * 3 / std::max(training_slots, 1);
}

}  // namespace logp
