// JobManager: validates training jobs, queues them (bounded FIFO), runs them on a fixed number of
// training slots, records their numbered events durably and serves them to watchers.
//
// Durability: a running job writes a checkpoint (weights, optimiser, generators, position in the
// epoch, best weights so far) every checkpoint_interval_steps steps or
// checkpoint_interval_seconds seconds, at epoch ends, and when the server shuts down. A job that
// was RUNNING when the server stopped (SIGTERM, crash, kill -9) is re-queued at the next start,
// ahead of jobs queued after it, and resumes from its newest checkpoint. Its event sequence
// continues: a state change says where it resumed, and the steps and epochs it had already
// reported are not reported again.
//
// Thread-safety: all public methods may be called concurrently.
#ifndef LOGP_SERVER_CORE_JOB_MANAGER_H_
#define LOGP_SERVER_CORE_JOB_MANAGER_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "logp/v1/job_service.pb.h"
#include "server/core/catalog.h"
#include "server/core/checkpoint_store.h"
#include "server/core/dataset_store.h"
#include "server/core/model_store.h"

namespace logp {

struct JobManagerOptions {
  // Jobs that train at the same time (default 1).
  int training_slots = 1;
  // QUEUED jobs beyond which CreateJob answers RESOURCE_EXHAUSTED (default 64).
  int max_queued = 64;
  // Minimum seconds between two progress events of a job (default 1).
  double progress_interval_seconds = 1.0;
  // A running job writes a checkpoint after this many steps (0 = not by steps) ...
  int64_t checkpoint_interval_steps = 0;
  // ... or this many seconds since its last one (0 = not by time), whichever comes first.
  double checkpoint_interval_seconds = 60;
  // Checkpoints kept per job (the newest).
  int checkpoints_kept = 2;
  // LibTorch intra-op threads of each training slot (0: the process default).
  int threads_per_slot = 0;
};

// A model to score with and where it came from.
struct ResolvedModel {
  std::shared_ptr<const Model> model;
  // The checkpoint's step when the model is a running job's checkpoint; 0 otherwise.
  int64_t checkpoint_step = 0;
};

class JobManager {
 public:
  // Re-queues jobs left QUEUED or RUNNING by a previous process (in creation order) and starts
  // the training slots. The stores and catalogue must outlive the manager.
  static absl::StatusOr<std::unique_ptr<JobManager>> Start(const JobManagerOptions& options,
                                                           Catalog* catalog, DatasetStore* datasets,
                                                           ModelStore* models,
                                                           CheckpointStore* checkpoints);
  // Calls Shutdown().
  ~JobManager();

  // Validates `spec` (INVALID_ARGUMENT naming the field, NOT_FOUND for unknown datasets,
  // FAILED_PRECONDITION when the family cannot model the data) and queues it.
  absl::StatusOr<v1::Job> CreateJob(const v1::JobSpec& spec);
  absl::StatusOr<v1::Job> GetJob(const std::string& id);
  absl::StatusOr<Page<v1::Job>> ListJobs(int page_size, const std::string& page_token);
  // Cancels a QUEUED job at once, a RUNNING one at its next step boundary (the returned job may
  // still say RUNNING; its final state change follows on the watch stream). FAILED_PRECONDITION
  // for a job that has already ended.
  absl::StatusOr<v1::Job> CancelJob(const std::string& id);
  // Sends the job's events with seq >= from_seq to `emit` in order, waiting for new ones, until
  // the job has ended and all its events are sent (OK), `emit` returns false (OK),
  // `cancelled()` returns true (CANCELLED) or the manager shuts down (UNAVAILABLE).
  absl::Status Watch(const std::string& id, int64_t from_seq,
                     const std::function<bool(const v1::JobEvent&)>& emit,
                     const std::function<bool()>& cancelled);
  // The weights of a job's newest checkpoint (QUEUED or RUNNING), or its published model
  // (SUCCEEDED). FAILED_PRECONDITION before the first checkpoint and for a job that ended without
  // a model; NOT_FOUND for an unknown job.
  absl::StatusOr<ResolvedModel> CheckpointModel(const std::string& id);
  // Non-empty when a queued or running job uses the dataset.
  std::string DatasetInUse(const std::string& dataset_id);

  // Stops accepting jobs, checkpoints running ones at their next step boundary (they stay QUEUED
  // and resume at the next start) and joins the slots. Idempotent.
  void Shutdown();

 private:
  struct ActiveJob;
  class Observer;

  JobManager(const JobManagerOptions& options, Catalog* catalog, DatasetStore* datasets,
             ModelStore* models, CheckpointStore* checkpoints);
  void SlotLoop();
  void RunJob(const std::shared_ptr<ActiveJob>& job);
  // Assigns the next seq, updates the job with `update`, persists both, wakes watchers. Returns
  // the updated job.
  v1::Job AddEvent(const std::shared_ptr<ActiveJob>& job, v1::JobEvent event,
                   const std::function<void(v1::Job*)>& update);
  // Records a state change (and removes the job from the active set if it is final).
  v1::Job ChangeState(const std::shared_ptr<ActiveJob>& job, v1::JobState state,
                      const std::string& message,
                      const std::function<void(v1::Job*)>& update = nullptr);
  absl::Status ValidateSpec(v1::JobSpec* spec);

  const JobManagerOptions options_;
  Catalog* const catalog_;
  DatasetStore* const datasets_;
  ModelStore* const models_;
  CheckpointStore* const checkpoints_;

  absl::Mutex mu_;
  absl::CondVar work_cv_;    // queue_ changed or shutting down
  absl::CondVar events_cv_;  // some job got an event
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  // Queue places taken by CreateJob calls still writing their job.
  int reserved_places_ ABSL_GUARDED_BY(mu_) = 0;
  // QUEUED and RUNNING jobs; ended jobs live only in the catalogue.
  std::map<std::string, std::shared_ptr<ActiveJob>> active_ ABSL_GUARDED_BY(mu_);
  // Mirrors shutting_down_ for lock-free polling at every training step.
  std::atomic<bool> stop_training_{false};
  std::vector<std::thread> slots_;
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_JOB_MANAGER_H_
