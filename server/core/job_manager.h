// JobManager: validates training jobs, queues them in the catalogue (bounded), runs them on a
// fixed number of training slots, records their numbered events durably and serves them to
// watchers.
//
// Replicas: several managers (logpd processes) may share one PostgreSQL catalogue and one data
// directory. A slot claims a job with a lease (Catalog::ClaimJob: claim, then train, never inside
// the claim's transaction); a LeaseKeeper renews it while the job trains. Every write for the job
// (events, the checkpoint the row names, the model's publication) is fenced by the lease's token,
// so a replica that lost the lease (paused, cut off) writes nothing more for it. A replica that
// stops renewing (killed) loses its jobs: a reaper on every replica claims RUNNING jobs whose
// lease expired and requeues them, and they resume from their newest registered checkpoint on
// whichever replica claims them next. With a SQLite catalogue, one process, leases live in the
// process and a restart requeues every job left RUNNING at once.
//
// Durability: a running job writes a checkpoint (weights, optimiser, generators, position in the
// epoch, best weights so far) every checkpoint_interval_steps steps or
// checkpoint_interval_seconds seconds, at epoch ends, and when the server shuts down; it counts
// once the job's row names it (a fenced write). A job that was RUNNING when its server stopped
// (SIGTERM, crash, kill -9) is re-queued, ahead of jobs queued after it, and resumes from its
// newest checkpoint. Its event sequence continues: a state change says where it resumed (and on
// which replica), and the steps and epochs it had already reported are not reported again.
//
// Watching: a watcher subscribes to a job, then reads its events without blocking (ReadEvents)
// whenever it is told there is news. Recording an event only marks the job as changed; one
// notifier thread (started with the manager, joined by Shutdown) tells the listeners, so a slow
// or vanished watcher never slows a training loop. Events of a job training on another replica
// are read from the catalogue, which announces every write (Catalog::WatchChanges).
//
// Thread-safety: all public methods may be called concurrently.
#ifndef LOGP_SERVER_CORE_JOB_MANAGER_H_
#define LOGP_SERVER_CORE_JOB_MANAGER_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "logp/v1/job_service.pb.h"
#include "server/core/catalog.h"
#include "server/core/checkpoint_store.h"
#include "server/core/dataset_store.h"
#include "server/core/lease_keeper.h"
#include "server/core/model_store.h"
#include "server/core/quota.h"
#include "server/core/scope.h"

namespace logp {

// Told that a job has news: new events, its end, or the manager shutting down. Called on the
// manager's notifier thread (never on a training thread) with no manager lock held; it must
// return quickly. Notifications carry no data and may be spurious or coalesced: the listener
// reads what is new with JobManager::ReadEvents.
class WatchListener {
 public:
  virtual ~WatchListener() = default;
  virtual void OnJobChanged() = 0;
};

// Events of one job with consecutive seq numbers, as read by JobManager::ReadEvents.
struct EventBatch {
  std::vector<v1::JobEvent> events;
  // The job has ended and `events` runs to its final event: nothing more will come.
  bool ended = false;
};

struct JobManagerOptions {
  // This replica's name in job leases and events; empty: host name and pid (DefaultReplicaId).
  std::string replica_id;
  // Seconds a job's lease lasts without renewal (default 30); renewed every lease_seconds / 10
  // (at most every 2 s) while the job trains.
  double lease_seconds = 30;
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
  // TrainOptions::block_products of every job.
  bool block_products = true;
  // Nice value of the training threads (Linux: per thread), so that scoring calls, at the
  // server's own priority, take the CPU first; 0 leaves them at the server's.
  int training_nice = 10;
  // A job that was running when the server died this many times in a row (no graceful stop, no
  // newer checkpoint in between) is failed at the next start ("interrupted by N crashes")
  // instead of resumed again. 0: resume forever. Default 3.
  int max_job_crashes = 3;
  // CreateJob refuses a job whose estimated peak memory (Job.memory_estimate) is above this,
  // with RESOURCE_EXHAUSTED. 0: no limit (logpd's default: DefaultMaxJobMemoryBytes).
  int64_t max_job_memory_bytes = 0;
  // Per-tenant limits on queued and running jobs (default: none). The queue is fair across
  // tenants whatever the quotas: see NextJobLocked.
  QuotaFn quotas;
};

// A model to score with and where it came from.
struct ResolvedModel {
  std::shared_ptr<const Model> model;
  // The checkpoint's step when the model is a running job's checkpoint; 0 otherwise.
  int64_t checkpoint_step = 0;
  // A published model's reference scores (ModelStore::Reference: null when it has none), read
  // when first asked; unset for a checkpoint.
  std::function<absl::StatusOr<std::shared_ptr<const ReferenceScores>>()> reference;
};

// The newest progress of a job training on this replica (JobManager::RunningJobs).
struct RunningJobProgress {
  std::string job_id;
  std::string tenant;  // its owner (OwnerOf)
  v1::ModelFamily family = v1::MODEL_FAMILY_UNSPECIFIED;
  int64_t step = 0;  // optimiser steps completed
  // The newest progress event and epoch summary this replica recorded (none yet: empty; a job
  // resumed here reports its first ones after the resumption).
  std::optional<v1::TrainingProgress> progress;
  std::optional<v1::EpochSummary> epoch;
};

// Told after each checkpoint file this replica writes: how long the write took (temporary file,
// fsync, rename) and whether it succeeded. Called on a training thread; must be thread-safe,
// return quickly and not call the manager.
using CheckpointListener = std::function<void(absl::Duration write_time, bool ok)>;

// The host name and the process id, e.g. "logp-0:1234".
std::string DefaultReplicaId();

class JobManager {
 public:
  // Starts the training slots, which claim QUEUED jobs, and RUNNING ones whose replica stopped
  // renewing their lease (a previous process of this server, another replica), in creation
  // order, and resume them from their newest checkpoint. The stores and catalogue must outlive
  // the manager.
  static absl::StatusOr<std::unique_ptr<JobManager>> Start(const JobManagerOptions& options,
                                                           Catalog* catalog, DatasetStore* datasets,
                                                           ModelStore* models,
                                                           CheckpointStore* checkpoints);
  // Calls Shutdown().
  ~JobManager();

  // Validates `spec` (INVALID_ARGUMENT naming the field, NOT_FOUND for unknown datasets and for
  // datasets `scope` does not see, FAILED_PRECONDITION when the family cannot model the data)
  // and queues it as a job of scope.tenant(). RESOURCE_EXHAUSTED when the queue is full or the
  // tenant is at its queued_jobs or stored_bytes quota. With a `request_id` the tenant already
  // used for the same spec, returns the job that call created (nothing is queued; also after a
  // restart); for another spec ALREADY_EXISTS.
  absl::StatusOr<v1::Job> CreateJob(const Scope& scope, const v1::JobSpec& spec,
                                    const std::string& request_id = "");
  absl::StatusOr<v1::Job> GetJob(const std::string& id);
  // `tenant` filters the listing (empty: every tenant's).
  absl::StatusOr<Page<v1::Job>> ListJobs(const std::string& tenant, int page_size,
                                         const std::string& page_token);
  // Cancels a QUEUED job at once, a RUNNING one at its next step boundary (the returned job may
  // still say RUNNING; its final state change follows on the watch stream). FAILED_PRECONDITION
  // for a job that has already ended.
  absl::StatusOr<v1::Job> CancelJob(const std::string& id);
  // Without waiting: up to `max_events` (>= 1) of the job's events with seq >= from_seq, oldest
  // first (from_seq 0 and 1 both mean the first event). INVALID_ARGUMENT for a negative
  // from_seq, NOT_FOUND for an unknown job, UNAVAILABLE once the manager is shutting down.
  absl::StatusOr<EventBatch> ReadEvents(const std::string& id, int64_t from_seq, int max_events);
  // Calls `listener->OnJobChanged()` after each new event of job `job_id` (known or not) until
  // Unsubscribe or until the listener is destroyed, and once more for every listener when the
  // manager shuts down. To miss nothing, subscribe first, then read.
  void Subscribe(const std::string& job_id, std::weak_ptr<WatchListener> listener);
  void Unsubscribe(const std::string& job_id, const WatchListener* listener);
  // The weights of a job's newest checkpoint (QUEUED or RUNNING), or its published model
  // (SUCCEEDED). FAILED_PRECONDITION before the first checkpoint and for a job that ended without
  // a model; NOT_FOUND for an unknown job.
  absl::StatusOr<ResolvedModel> CheckpointModel(const std::string& id);
  // The jobs training here (RUNNING, lease held), with their newest progress.
  std::vector<RunningJobProgress> RunningJobs();
  // Replaces the checkpoint listener (null: none). Once it returns, the previous listener is
  // not called any more.
  void SetCheckpointListener(CheckpointListener listener);
  // Non-empty when a queued or running job uses the dataset.
  std::string DatasetInUse(const std::string& dataset_id);

  // Stops accepting jobs, checkpoints running ones at their next step boundary (they stay QUEUED
  // and resume at the next start), notifies every watch listener (their next ReadEvents is
  // UNAVAILABLE) and joins the slots and the notifier. Idempotent.
  void Shutdown();

  // Listeners subscribed to the job, expired ones included (for tests).
  int TEST_ListenerCount(const std::string& job_id);

 private:
  absl::StatusOr<std::optional<v1::Job>> EarlierJob(const CreateRequest& request);
  struct ActiveJob;
  class Observer;

  JobManager(const JobManagerOptions& options, Catalog* catalog, DatasetStore* datasets,
             ModelStore* models, CheckpointStore* checkpoints);
  void SlotLoop();
  // Of the claimable jobs, the one a free slot claims next (null if none may start). Round-robin
  // across tenants: of each tenant's oldest claimable job, the one whose tenant started a job
  // here least recently (never: first; ties: the oldest job) goes first, skipping tenants at
  // their running_jobs quota (counted over every replica's leases). Within a tenant, jobs start
  // in creation order (those that had started, and lost their replica, first).
  const v1::Job* NextJobLocked(const JobQueue& queue) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls the listeners of changed jobs until Shutdown.
  void NotifierLoop();
  // A claimed job, until its lease is released or lost: requeued, failed for crashing too often,
  // cancelled, or trained.
  void RunClaimed(JobClaim claim);
  // Takes a claimed job on: its events, its registered checkpoint (newer files removed), into
  // active_ and the lease keeper. Null when its events cannot be read (the lease expires).
  std::shared_ptr<ActiveJob> Adopt(JobClaim claim);
  // A claimed job its replica died under: requeued (releasing the lease with `release`), or
  // FAILED after max_job_crashes crashes in a row, or CANCELLED if asked. True when requeued.
  bool RequeueOrphan(const std::shared_ptr<ActiveJob>& active, bool release);
  // Claims and requeues every RUNNING job no live lease holds (Start, then the reaper thread
  // every second): a dead replica's jobs go back to the queue even when every slot is busy.
  void ReapOrphans();
  void ReaperLoop();
  void RunJob(const std::shared_ptr<ActiveJob>& job);
  // Persists `update` of the job (and `event`, numbered next, when given) in one fenced write,
  // with `model` and releasing the lease when asked; tells the notifier. The job's last event
  // is retried for a while; other events the catalogue refuses are kept and written with the
  // next one. Returns the updated job, or the error of the write (FAILED_PRECONDITION when the
  // lease is lost: then nothing is kept, and the job leaves active_).
  absl::StatusOr<v1::Job> Record(const std::shared_ptr<ActiveJob>& job,
                                 std::optional<v1::JobEvent> event,
                                 const std::function<void(v1::Job*)>& update,
                                 const std::optional<v1::Model>& model = std::nullopt,
                                 bool release_lease = false);
  // Record with an event; the updated job whatever the write's fate.
  v1::Job AddEvent(const std::shared_ptr<ActiveJob>& job, v1::JobEvent event,
                   const std::function<void(v1::Job*)>& update);
  // Records a state change (releasing the lease when it is final or QUEUED) and returns the
  // write's status.
  absl::Status ChangeState(const std::shared_ptr<ActiveJob>& job, v1::JobState state,
                           const std::string& message,
                           const std::function<void(v1::Job*)>& update = nullptr,
                           const std::optional<v1::Model>& model = std::nullopt);
  // The job leaves this replica (released or lost): out of active_ and the keeper.
  void Forget(const std::shared_ptr<ActiveJob>& job);
  // Calls the checkpoint listener, if any.
  void TellCheckpointListener(absl::Duration write_time, bool ok);
  // Told by the catalogue that another replica wrote job `job_id` ("": anything).
  void OnCatalogChange(const std::string& job_id);

  const JobManagerOptions options_;
  const std::string replica_id_;
  Catalog* const catalog_;
  DatasetStore* const datasets_;
  ModelStore* const models_;
  CheckpointStore* const checkpoints_;
  std::unique_ptr<LeaseKeeper> leases_;

  // Held by CreateJob from reading the queue to inserting the job (the queue bound and quotas).
  absl::Mutex create_mu_;
  absl::Mutex mu_;
  absl::CondVar work_cv_;  // a job was queued, a slot freed, or shutting down
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // When each tenant last started a job here (a count of starts).
  std::map<std::string, int64_t> last_start_ ABSL_GUARDED_BY(mu_);
  int64_t starts_ ABSL_GUARDED_BY(mu_) = 0;
  // Jobs this replica holds the lease of; the others live in the catalogue.
  std::map<std::string, std::shared_ptr<ActiveJob>> active_ ABSL_GUARDED_BY(mu_);
  // Mirrors shutting_down_ for lock-free polling at every training step.
  std::atomic<bool> stop_training_{false};
  std::vector<std::thread> slots_;
  std::thread reaper_;
  absl::CondVar reaper_cv_;  // shutting down

  // Watch notifications. Never held together with mu_, nor while a listener runs.
  absl::Mutex watch_mu_;
  std::map<std::string, std::vector<std::weak_ptr<WatchListener>>> listeners_
      ABSL_GUARDED_BY(watch_mu_);
  std::set<std::string> changed_jobs_ ABSL_GUARDED_BY(watch_mu_);
  bool notify_everyone_ ABSL_GUARDED_BY(watch_mu_) = false;
  bool stop_notifier_ ABSL_GUARDED_BY(watch_mu_) = false;
  std::thread notifier_;

  // Never held with another lock of the manager's; held while the listener runs.
  absl::Mutex listener_mu_;
  CheckpointListener checkpoint_listener_ ABSL_GUARDED_BY(listener_mu_);

  // Models of checkpoints of jobs training on other replicas (CheckpointModel), a few.
  absl::Mutex remote_mu_;
  std::map<std::string, ResolvedModel> remote_probes_ ABSL_GUARDED_BY(remote_mu_);
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_JOB_MANAGER_H_
