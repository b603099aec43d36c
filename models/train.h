// Training: maximum-likelihood fits of a model of a spec to records, with checkpoints to resume
// from, and the split of one record set into training and validation records. Torch-free, like
// models/model.h; the loop itself is the Trainer in models/trainer.cc.
#ifndef LOGP_MODELS_TRAIN_H_
#define LOGP_MODELS_TRAIN_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "logp/v1/job_service.pb.h"
#include "models/model.h"
#include "proto/cc/records.h"

namespace logp {

struct TrainOptions {
  double learning_rate = 1e-3;
  double weight_decay = 0.0;
  int64_t batch_size = 100;
  int64_t epochs = 10;
  uint64_t seed = 0;
  // Minimum seconds between two progress reports (the last step of an epoch always reports).
  double progress_interval_seconds = 1.0;
  // Stopping rules besides `epochs` (0 = off): optimiser steps in all; seconds of training summed
  // over resumes; epochs without a better validation NLL.
  int64_t max_steps = 0;
  double max_seconds = 0;
  int64_t early_stopping_patience = 0;
  // Continue from a checkpoint that a Train with the same spec, data and options wrote (through
  // TrainObserver::OnCheckpoint). Training then goes on exactly where it was: weights, optimiser
  // state, random generators, position in the epoch, best weights so far.
  const std::string* resume_from = nullptr;
  // Nets that can skip the matrix blocks their masks zero out (MADE on binary data) do; false
  // runs their dense products instead (same results to float rounding; for benchmarks).
  bool block_products = true;
};

// A durable snapshot of training at a step boundary.
struct TrainCheckpoint {
  int64_t step = 0;
  int64_t epoch = 0;
  // Opaque; ModelFromCheckpoint reads the current weights back as a Model.
  std::string bytes;
  // Time the training thread spent encoding it.
  double encode_seconds = 0;
};

// The model (current weights, not the best so far) inside a checkpoint; DATA_LOSS if corrupt.
absl::StatusOr<std::unique_ptr<Model>> ModelFromCheckpoint(const std::string& bytes);

// Receives training events on the training thread; keep the work short.
class TrainObserver {
 public:
  virtual ~TrainObserver() = default;
  // Called once before the first step (and again after a resume) with the planned number of
  // steps and the step training starts from.
  virtual void OnStart(int64_t total_steps, int64_t first_step) {}
  virtual void OnProgress(const v1::TrainingProgress& progress) {}
  virtual void OnEpoch(const v1::EpochSummary& summary) {}
  // Polled at every step boundary (and between validation batches); true stops training with
  // CANCELLED.
  virtual bool StopRequested() { return false; }
  // Polled like StopRequested; true writes a checkpoint and stops training with ABORTED, so that
  // it can resume later.
  virtual bool SuspendRequested() { return false; }
  // Polled after every step and at the end of every epoch: true writes a checkpoint now.
  virtual bool CheckpointDue(int64_t step) { return false; }
  // Stores a checkpoint durably; an error fails training with that error.
  virtual absl::Status OnCheckpoint(TrainCheckpoint checkpoint) { return absl::OkStatus(); }
};

struct TrainResult {
  // The weights of the epoch with the best validation NLL.
  std::unique_ptr<Model> model;
  double best_validation_nll = 0;
  int64_t best_epoch = 0;
  int64_t steps = 0;
  // Why training ended, e.g. "completed 10 epochs" or "early stopping: ...".
  std::string stop_reason;
};

// Trains a model of `spec` on `train` by maximum likelihood (Adam on the mean NLL, or the closed
// form / EM where the family has one), evaluating `validation` after each epoch. CANCELLED if the
// observer asked to stop; ABORTED after a checkpoint if it asked to suspend; FAILED_PRECONDITION
// if the loss became NaN or infinite (names step, epoch and value); RESOURCE_EXHAUSTED when out
// of memory; INVALID_ARGUMENT for a checkpoint that does not fit (IsUnusableCheckpoint).
absl::StatusOr<TrainResult> Train(const v1::ModelSpec& spec, const RecordMatrix& train,
                                  const RecordMatrix& validation, const TrainOptions& options,
                                  TrainObserver* observer);

// True for Train's status when options.resume_from cannot be used (corrupt, truncated, or
// written for another spec, data or format): the caller may try an older checkpoint or start
// over. Typed (a status payload), not read off the message.
bool IsUnusableCheckpoint(const absl::Status& status);

// Splits `data` into (train, validation) with `fraction` of the rows, chosen by `seed`, held out.
// Both parts keep at least one row; INVALID_ARGUMENT if that is impossible.
absl::StatusOr<std::pair<RecordMatrix, RecordMatrix>> SplitRecords(const RecordMatrix& data,
                                                                   double fraction, uint64_t seed);

}  // namespace logp

#endif  // LOGP_MODELS_TRAIN_H_
