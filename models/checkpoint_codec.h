// The checkpoint codec: a training run's state at a step boundary as bytes, and back. Internal to
// models/ (the trainer and its tests); the rest of logp sees TrainCheckpoint, ModelFromCheckpoint
// and IsUnusableCheckpoint in models/train.h.
//
// Format: "LOGPCKP1", the length of the model part (uint64, host byte order), the model part (what
// Model::Serialize writes: the current weights), then a LibTorch archive of the training state
// (version 2; version 1, which named the noise generator "global_gen", is still read).
#ifndef LOGP_MODELS_CHECKPOINT_CODEC_H_
#define LOGP_MODELS_CHECKPOINT_CODEC_H_

#include <torch/torch.h>

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/model.h"

namespace logp {

// Where training is, at a step boundary: everything a resumed run needs besides the weights,
// the optimiser and the generators.
struct TrainState {
  int64_t step = 0;
  int64_t epoch = 1;       // the current epoch, 1-based
  int64_t next_batch = 0;  // next batch of the epoch; == batches per epoch: validation pending
  double epoch_sum = 0;    // sum of batch losses * records this epoch
  int64_t epoch_records = 0;
  double epoch_seconds = 0;  // training time this epoch before the current run segment
  double train_seconds = 0;  // training time of the job before the current run segment
  double best = std::numeric_limits<double>::infinity();
  int64_t best_epoch = 0;
  int64_t since_best = 0;
  torch::Tensor perm;  // this epoch's record order (gradient training)
  std::vector<torch::Tensor> best_state;
};

// The checkpoint of `model` (its current weights) with the training state `st`, the optimiser's
// state (nullptr for closed-form and EM fits), the record-order generator `gen` and the noise
// generator `noise`, for a training set of `train_rows` rows.
absl::StatusOr<std::string> EncodeCheckpoint(const Model& model, const TrainState& st,
                                             torch::optim::Optimizer* optimizer, at::Generator& gen,
                                             at::Generator& noise, int64_t train_rows);

// Splits a checkpoint into its model bytes and its training-state archive bytes; DATA_LOSS for a
// bad magic or a truncated model part.
absl::StatusOr<std::pair<std::string, std::string>> SplitCheckpoint(const std::string& bytes);

// Reads the training-state archive into *st, `optimizer` (nullptr: the fit has none) and both
// generators. Throws (std::exception) if the archive is corrupt, of an unknown version, written
// for another number of training rows, or with optimiser state that does not match `optimizer`.
void DecodeTrainState(const std::string& state_bytes, int64_t train_rows, TrainState* st,
                      torch::optim::Optimizer* optimizer, at::Generator& gen, at::Generator& noise);

// INVALID_ARGUMENT with `message`, marked so that IsUnusableCheckpoint recognises it.
absl::Status UnusableCheckpoint(absl::string_view message);

}  // namespace logp

#endif  // LOGP_MODELS_CHECKPOINT_CODEC_H_
