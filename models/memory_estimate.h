// Peak memory of a training job, estimated from its spec and the size of its data before anything
// is built, so that a job that would take the server down can be refused up front.
//
// The estimate is a model, not a measurement: parameters are counted exactly (the same count as
// Model::NumParameters), the rest from each family's layer widths. bench/ and the tests compare
// it with the measured peak resident memory of real runs (see README: "Memory of a job").
#ifndef LOGP_MODELS_MEMORY_ESTIMATE_H_
#define LOGP_MODELS_MEMORY_ESTIMATE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "models/model.h"

namespace logp {

// How much data a job trains on, and how.
struct TrainingSize {
  int64_t train_rows = 0;
  int64_t validation_rows = 0;
  int64_t batch_size = 100;
  // Bytes of both datasets as the server holds them in memory while the job trains (packed bits
  // for binary data, ...), including copies made to split off a validation set.
  int64_t resident_data_bytes = 0;
  // Compute threads of the training slot (some families keep per-thread gradient buffers).
  int compute_threads = 1;
};

// What one family's net needs, per spec and data shape (FamilyInfo::footprint).
struct NetFootprint {
  // Whether the family trains by gradient steps (Adam on batches) rather than a closed form or
  // EM over all training records at once.
  bool gradient_fit = true;
  // Trainable parameters (floats), exactly Model::NumParameters of the built net.
  int64_t parameters = 0;
  // Bytes one optimiser step holds per record it trains on: activations kept for the backward
  // pass, their gradients and the temporaries of the loss. A gradient step trains on a batch,
  // a closed-form or EM step on the whole training set.
  int64_t step_bytes_per_record = 0;
  // Bytes one scoring pass holds per record (no gradients).
  int64_t eval_bytes_per_record = 0;
  // Parameter-sized float tensors one step makes besides the gradients (masked weight products
  // and their gradients, per-thread gradient buffers).
  int64_t extra_parameter_copies = 0;
  // Per compute thread.
  int64_t per_thread_parameter_copies = 0;
};

// The estimated peak, by part.
struct MemoryEstimate {
  int64_t parameters = 0;
  // Weights, their gradients, Adam's two moments, the best weights so far, and a checkpoint
  // being encoded (weights twice and the moments), plus each family's extra copies.
  int64_t parameter_bytes = 0;
  // One training step at the job's batch size, or one scoring pass, whichever is larger.
  int64_t activation_bytes = 0;
  // The records in memory and the tensors the trainer makes of them.
  int64_t data_bytes = 0;
  int64_t total_bytes() const { return parameter_bytes + activation_bytes + data_bytes; }
  // "1.2 GiB (parameters 30.5 MiB for 2.0M parameters, activations 800 MiB, data 400 MiB)".
  std::string Describe() const;
};

// The estimate for a model of `spec` (defaults applied or not) trained on data of `shape`;
// ResolveModelSpec's error for a spec that cannot be built.
absl::StatusOr<MemoryEstimate> EstimateTrainingMemory(const v1::ModelSpec& spec,
                                                      const DataShape& shape,
                                                      const TrainingSize& size);

// Bytes of a job's records in memory while it trains, as the job manager holds them: the training
// dataset as loaded (binary data bit-packed), and either a validation dataset as loaded or, when
// the validation set is split off the training dataset, both parts besides the whole (SplitRecords
// keeps the training part packed and unpacks the validation part to a byte per value).
int64_t ResidentDataBytes(const DataShape& shape, int64_t train_rows, int64_t validation_rows,
                          bool split);

// "1.5 GiB", "300 MiB", "12 KiB", "512 B".
std::string HumanBytes(int64_t bytes);

}  // namespace logp

#endif  // LOGP_MODELS_MEMORY_ESTIMATE_H_
