// The memory guard of CreateJob: a job's estimated peak memory (models/memory_estimate.h) from
// its resolved spec and its datasets, and the default per-job limit of this machine.
#ifndef LOGP_SERVER_CORE_JOB_MEMORY_H_
#define LOGP_SERVER_CORE_JOB_MEMORY_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "logp/v1/dataset_service.pb.h"
#include "logp/v1/job_service.pb.h"

namespace logp {

// The estimate for a job of `spec` (defaults applied, validated) on `train` and either the
// `validation` dataset or, when it is null, a validation set split off `train`; the training
// slot runs `compute_threads` threads.
absl::StatusOr<v1::MemoryEstimate> EstimateJobMemory(const v1::JobSpec& spec,
                                                     const v1::Dataset& train,
                                                     const v1::Dataset* validation,
                                                     int compute_threads);

// OK when `estimate` is within `limit` bytes (0: no limit); otherwise RESOURCE_EXHAUSTED giving
// the estimate by part and the limit.
absl::Status CheckJobMemory(const v1::MemoryEstimate& estimate, int64_t limit);

// Memory of this machine, or of this process's cgroup if that is less (containers): bytes.
int64_t AvailableMemoryBytes();

// The default of --max_job_memory_bytes: three quarters of AvailableMemoryBytes() shared by the
// training slots, so that the jobs training at once fit together.
int64_t DefaultMaxJobMemoryBytes(int training_slots);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_JOB_MEMORY_H_
