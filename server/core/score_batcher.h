// ScoreBatcher: dynamic batching of Score. Concurrent scoring calls on the same model (and the
// same ScoreOptions) are merged into one forward pass over their concatenated records, and each
// call gets back exactly its own rows, in order (Triton's dynamic batcher is the model).
//
// A call joins the open batch of its (model, options) if its records fit within max_records;
// otherwise it opens a new batch and becomes its leader. The leader waits until the batch is
// full, until max_delay has passed since it opened, or (start_when_idle) until no batch of that
// model is being computed, then runs the forward pass in its own thread with the lock released
// and hands every member its slice; the other members wait on a condition variable. No thread
// of its own: the callers' threads do the work.
//
// What is merged: only models whose scores are exact (Model::score_kind() == EXACT), whose value
// for a row does not depend on the other rows; requests whose records do not match the model's
// shape, over max_records, or with importance_samples over the model's limit are scored alone
// (so that their error is theirs only). A merged pass that fails for any reason other than its
// members' deadlines or cancellation is retried by each member alone: an error never passes from
// one call to another.
//
// Deadlines and cancellation: a call whose deadline passes before its batch starts leaves the
// batch and gets DEADLINE_EXCEEDED; once started, the pass stops early only when every member's
// call has stopped, and each member whose call stopped gets its own DEADLINE_EXCEEDED or
// CANCELLED while the others get their scores. Cancellation of a waiting member is seen when
// its batch starts (at most max_delay later).
//
// Thread-safety: Score may be called from any number of threads at once.
#ifndef LOGP_SERVER_CORE_SCORE_BATCHER_H_
#define LOGP_SERVER_CORE_SCORE_BATCHER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "models/model.h"
#include "proto/cc/records.h"
#include "server/core/call_control.h"

namespace logp {

struct ScoreBatchingOptions {
  // Most records one merged forward pass carries (default 256); a request of at least this many
  // records is scored alone. < 2: batching off.
  int64_t max_records = 256;
  // Longest the first request of a batch waits for others (default 1 ms). 0: batching off.
  absl::Duration max_delay = absl::Microseconds(1000);
  // A batch starts as soon as no other batch of its model is being computed (default true), so
  // that a lone caller never waits; batches then form while the model is busy. false: every
  // batch waits for max_delay or max_records.
  bool start_when_idle = true;

  bool enabled() const { return max_records >= 2 && max_delay > absl::ZeroDuration(); }
};

// Counters, for tests and benchmarks.
struct ScoreBatcherStats {
  int64_t requests = 0;        // Score calls
  int64_t alone = 0;           // ... scored on their own (off, not mergeable, too large)
  int64_t batches = 0;         // merged forward passes run (one member or more)
  int64_t merged_records = 0;  // records of those passes
  int64_t withdrawn = 0;       // members that left a batch before it started (deadline)
  int64_t retried_alone = 0;   // members scored alone after their merged pass failed
};

class ScoreBatcher {
 public:
  explicit ScoreBatcher(const ScoreBatchingOptions& options) : options_(options) {}
  ScoreBatcher(const ScoreBatcher&) = delete;
  ScoreBatcher& operator=(const ScoreBatcher&) = delete;

  // model->Score(records, options) under `call` (options.stop is replaced by the call's), as if
  // the records had been scored alone: same values (within float rounding of the batched matrix
  // products), same errors. DEADLINE_EXCEEDED / CANCELLED as the call says.
  absl::StatusOr<Scores> Score(const std::shared_ptr<const Model>& model,
                               const RecordMatrix& records, const ScoreOptions& options,
                               const CallControl& call);

  const ScoreBatchingOptions& options() const { return options_; }
  ScoreBatcherStats stats() const;

  // Calls waiting in an open (not yet started) batch of `model`, for tests.
  int64_t TEST_Waiting(const Model* model) const;
  // Every merged pass fails with INTERNAL from now on (its members are then scored alone).
  void TEST_FailMergedPasses(bool fail) { fail_merged_passes_.store(fail); }

 private:
  struct Member;
  struct Batch;
  // (model, importance_samples, seed): requests that may share a pass.
  using Key = std::tuple<const Model*, int, uint64_t>;

  bool Mergeable(const Model& model, const RecordMatrix& records,
                 const ScoreOptions& options) const;
  absl::StatusOr<Scores> ScoreAlone(const Model& model, const RecordMatrix& records,
                                    ScoreOptions options, const CallControl& call);
  // The leader's part: wait for the batch to fill, run it, hand out the slices.
  absl::StatusOr<Scores> Lead(Batch* batch, Member* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Scores> Follow(Batch* batch, Member* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes `batch` out of open_ (no more members join it).
  void Close(Batch* batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Wakes the leaders of the open batches of `model` (a pass of it ended).
  void WakeLeaders(const Model* model) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ScoreBatchingOptions options_;
  mutable absl::Mutex mu_;
  std::map<Key, Batch*> open_ ABSL_GUARDED_BY(mu_);
  // Merged passes being computed, per model.
  std::map<const Model*, int> running_ ABSL_GUARDED_BY(mu_);
  ScoreBatcherStats stats_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> fail_merged_passes_{false};
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_SCORE_BATCHER_H_
