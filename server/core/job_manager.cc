#include "server/core/job_manager.h"

#include <glog/logging.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "models/model.h"
#include "models/train.h"
#include "proto/cc/status_macros.h"
#include "server/core/active_job.h"
#include "server/core/files.h"
#include "server/core/job_memory.h"
#include "server/core/job_spec.h"
#include "server/core/time_util.h"

namespace logp {
// Turns training callbacks into job events and checkpoints into files.
class JobManager::Observer : public TrainObserver {
 public:
  Observer(JobManager* manager, std::shared_ptr<ActiveJob> job)
      : manager_(manager), job_(std::move(job)), last_checkpoint_time_(absl::Now()) {}
  void OnStart(int64_t total_steps, int64_t first_step) override {
    last_checkpoint_step_ = first_step;
    absl::MutexLock lock(&manager_->mu_);
    job_->job.set_total_steps(total_steps);
    job_->job.set_step(first_step);
  }
  void OnProgress(const v1::TrainingProgress& p) override {
    if (p.step() <= job_->reported_step) return;  // reported before the restart
    job_->reported_step = p.step();
    v1::JobEvent e;
    *e.mutable_progress() = p;
    manager_->AddEvent(job_, e, [&](v1::Job* j) { j->set_step(p.step()); });
  }
  void OnEpoch(const v1::EpochSummary& s) override {
    if (s.epoch() <= job_->reported_epoch) return;
    job_->reported_epoch = s.epoch();
    job_->reported_step = std::max(job_->reported_step, s.step());
    v1::JobEvent e;
    *e.mutable_epoch_summary() = s;
    manager_->AddEvent(job_, e, [&](v1::Job* j) {
      j->set_step(s.step());
      if (s.is_best()) j->set_best_validation_nll(s.validation_nll());
    });
  }
  // A lost lease stops the run at once, with nothing more written (Cancelled; RunJob then
  // writes nothing either).
  bool StopRequested() override { return job_->cancelled() || job_->lost(); }
  bool SuspendRequested() override { return manager_->stop_training_.load(); }
  bool CheckpointDue(int64_t step) override {
    const auto& o = manager_->options_;
    return (o.checkpoint_interval_steps > 0 &&
            step - last_checkpoint_step_ >= o.checkpoint_interval_steps) ||
           (o.checkpoint_interval_seconds > 0 &&
            absl::Now() - last_checkpoint_time_ >= absl::Seconds(o.checkpoint_interval_seconds));
  }
  absl::Status OnCheckpoint(TrainCheckpoint c) override {
    const absl::Time t0 = absl::Now();
    last_checkpoint_step_ = c.step;
    last_checkpoint_time_ = t0;
    const std::string& id = job_->job.id();  // immutable
    if (job_->lost()) return absl::OkStatus();
    absl::Status st = manager_->checkpoints_->Write(id, c.step, c.bytes);
    manager_->TellCheckpointListener(absl::Now() - t0, st.ok());
    if (!st.ok()) {
      // Training goes on; a later checkpoint (or an older one) serves a restart. The owner is
      // told on the job's stream (without the server's paths).
      LOG(ERROR) << "job " << id << ": checkpoint at step " << c.step << " not written: " << st;
      // One warning per run of failures, not one per attempt.
      if (checkpoints_failing_) return absl::OkStatus();
      checkpoints_failing_ = true;
      int64_t kept;
      {
        absl::MutexLock lock(&manager_->mu_);
        kept = job_->job.checkpoint_step();
      }
      v1::JobEvent e;
      e.mutable_warning()->set_message(absl::StrCat(
          "checkpoint at step ", c.step, " not written: ",
          absl::IsResourceExhausted(st) ? "no space left on device"
                                        : "I/O error (see the server log)",
          "; training goes on, ",
          kept > 0 ? absl::StrCat("a restart resumes from the checkpoint at step ", kept)
                   : "a restart would start from the beginning"));
      manager_->AddEvent(job_, e, nullptr);
      return absl::OkStatus();
    }
    checkpoints_failing_ = false;
    // The checkpoint counts once the job's row names it, in a fenced write: a replica that lost
    // the lease wrote a file nobody will resume from.
    absl::StatusOr<v1::Job> registered =
        manager_->Record(job_, std::nullopt, [&](v1::Job* j) { j->set_checkpoint_step(c.step); });
    if (!registered.ok() && IsLeaseLost(registered.status())) return absl::OkStatus();
    // Otherwise the row names it with the next event (Record keeps it in memory).
    manager_->checkpoints_->Prune(id, c.step);
    LOG(INFO) << "job " << id << ": checkpoint at step " << c.step << " (" << c.bytes.size()
              << " bytes): encoded in " << c.encode_seconds * 1e3 << " ms, written in "
              << absl::ToDoubleMilliseconds(absl::Now() - t0) << " ms";
    return absl::OkStatus();
  }

 private:
  JobManager* manager_;
  std::shared_ptr<ActiveJob> job_;
  int64_t last_checkpoint_step_ = 0;
  absl::Time last_checkpoint_time_;
  bool checkpoints_failing_ = false;  // the last checkpoint was not written
};

JobManager::JobManager(const JobManagerOptions& options, Catalog* catalog, DatasetStore* datasets,
                       ModelStore* models, CheckpointStore* checkpoints)
    : options_(options),
      replica_id_(options.replica_id.empty() ? DefaultReplicaId() : options.replica_id),
      catalog_(catalog),
      datasets_(datasets),
      models_(models),
      checkpoints_(checkpoints) {
  notifier_ = std::thread([this] { NotifierLoop(); });
}

absl::StatusOr<std::unique_ptr<JobManager>> JobManager::Start(const JobManagerOptions& options,
                                                              Catalog* catalog,
                                                              DatasetStore* datasets,
                                                              ModelStore* models,
                                                              CheckpointStore* checkpoints) {
  if (options.training_slots < 1) return absl::InvalidArgumentError("training_slots must be >= 1");
  if (!(options.lease_seconds >= 0.1 && options.lease_seconds <= 86400)) {
    return absl::InvalidArgumentError(
        absl::StrCat("job lease seconds must be in [0.1, 86400], got ", options.lease_seconds));
  }
  std::unique_ptr<JobManager> m(new JobManager(options, catalog, datasets, models, checkpoints));
  // A replica restarted under its stable id takes its jobs back at once: its previous process
  // is gone. (An id of host and pid is never used twice.)
  if (!options.replica_id.empty()) RETURN_IF_ERROR(catalog->ReleaseLeasesOf(options.replica_id));
  // Checkpoints of ended (or unknown) jobs, and when no other process shares the directory,
  // the temporary files of torn writes.
  checkpoints->RemoveAllExcept(
      [catalog](const std::string& id) {
        absl::StatusOr<v1::Job> job = catalog->GetJob(id);
        return !absl::IsNotFound(job.status()) && !(job.ok() && IsFinal(job->state()));
      },
      !catalog->SharedByProcesses());
  const absl::Duration lease = absl::Seconds(options.lease_seconds);
  m->leases_ = std::make_unique<LeaseKeeper>(
      catalog, lease, std::clamp(lease / 10, absl::Milliseconds(50), absl::Seconds(2)));
  catalog->WatchChanges([mgr = m.get()](const std::string& id) { mgr->OnCatalogChange(id); });
  LOG(INFO) << "job manager: replica " << m->replica_id_ << ", " << options.training_slots
            << " training slot(s), job leases of " << absl::FormatDuration(lease);
  // Jobs a previous process (or a replica that died) left RUNNING go back to the queue now, and
  // whenever another replica's lease expires later.
  m->ReapOrphans();
  m->reaper_ = std::thread([mgr = m.get()] { mgr->ReaperLoop(); });
  for (int i = 0; i < options.training_slots; ++i) {
    m->slots_.emplace_back([mgr = m.get()] { mgr->SlotLoop(); });
  }
  return m;
}

JobManager::~JobManager() { Shutdown(); }

void JobManager::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    work_cv_.SignalAll();
  }
  {
    // After shutting_down_ is set, so every listener's next read answers UNAVAILABLE.
    absl::MutexLock lock(&watch_mu_);
    notify_everyone_ = true;
  }
  stop_training_.store(true);
  {
    absl::MutexLock lock(&mu_);
    reaper_cv_.SignalAll();
  }
  for (auto& t : slots_) {
    if (t.joinable()) t.join();
  }
  slots_.clear();
  if (reaper_.joinable()) reaper_.join();
  catalog_->WatchChanges(nullptr);
  {
    absl::MutexLock lock(&watch_mu_);
    stop_notifier_ = true;
  }
  if (notifier_.joinable()) notifier_.join();
}

void JobManager::OnCatalogChange(const std::string& job_id) {
  {
    absl::MutexLock lock(&mu_);
    work_cv_.SignalAll();  // a job may have been queued or released
  }
  absl::MutexLock lock(&watch_mu_);
  if (job_id.empty()) {
    notify_everyone_ = true;
  } else {
    changed_jobs_.insert(job_id);
  }
}

// The job an earlier CreateJob under request.request_id created; nullopt if none;
// ALREADY_EXISTS if that call had another spec.
absl::StatusOr<std::optional<v1::Job>> JobManager::EarlierJob(const CreateRequest& request) {
  absl::StatusOr<CreateRequest> earlier =
      catalog_->GetCreateRequest(request.kind, request.tenant, request.request_id);
  if (absl::IsNotFound(earlier.status())) return std::nullopt;
  if (!earlier.ok()) return earlier.status();
  if (earlier->fingerprint != request.fingerprint) {
    return absl::AlreadyExistsError(absl::StrCat("request_id '", request.request_id,
                                                 "' was used for job ", earlier->resource_id,
                                                 ", whose spec is different"));
  }
  return GetJob(earlier->resource_id);
}
absl::StatusOr<v1::Job> JobManager::CreateJob(const Scope& scope, const v1::JobSpec& raw,
                                              const std::string& request_id) {
  const std::string& tenant = scope.tenant();
  // A retry is answered before validation: the queue may be full or the dataset deleted since.
  std::optional<CreateRequest> request;
  if (!request_id.empty()) {
    request = CreateRequest{"job", request_id, RequestFingerprint(raw), "", tenant};
    ASSIGN_OR_RETURN(std::optional<v1::Job> earlier, EarlierJob(*request));
    if (earlier) return *std::move(earlier);
  }
  // The datasets the spec names (another tenant's are unknown), then its effective values
  // (job_spec.h).
  if (raw.dataset_id().empty()) return absl::InvalidArgumentError("spec.dataset_id is required");
  auto visible_dataset = [&](const std::string& id) -> absl::StatusOr<v1::Dataset> {
    absl::StatusOr<v1::Dataset> ds = datasets_->Get(id);
    if (ds.ok() && !scope.Sees(ds->tenant())) return UnknownIdError("dataset", id);
    return ds;
  };
  ASSIGN_OR_RETURN(const v1::Dataset train, visible_dataset(raw.dataset_id()));
  std::optional<absl::StatusOr<v1::Dataset>> validation;
  if (raw.validation_case() == v1::JobSpec::kValidationDatasetId) {
    validation = visible_dataset(raw.validation_dataset_id());
  }
  ASSIGN_OR_RETURN(const v1::JobSpec spec,
                   ResolveJobSpec(raw, train, validation ? &*validation : nullptr));
  // ResolveJobSpec succeeded, so a validation dataset named was found.
  const int threads = options_.threads_per_slot > 0
                          ? options_.threads_per_slot
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ASSIGN_OR_RETURN(
      const v1::MemoryEstimate memory,
      EstimateJobMemory(spec, train, validation ? &validation->value() : nullptr, threads));
  RETURN_IF_ERROR(CheckJobMemory(memory, options_.max_job_memory_bytes));
  const TenantQuota quota = QuotaOf(options_.quotas, tenant);
  if (quota.stored_bytes) {  // its model would add to what the tenant stores
    ASSIGN_OR_RETURN(const TenantStorage used, catalog_->StoredBy(tenant));
    if (used.total_bytes() >= *quota.stored_bytes) {
      return QuotaExceededError(tenant, "stored_bytes", QuotaBytes(*quota.stored_bytes),
                                QuotaBytes(used.total_bytes()),
                                "no room for the job's model: delete datasets first");
    }
  }
  v1::Job job;
  *job.mutable_memory_estimate() = memory;
  job.set_id(absl::StrCat("job-", RandomHex(16)));
  *job.mutable_spec() = spec;
  job.set_state(v1::JOB_STATE_QUEUED);
  *job.mutable_create_time() = ToProto(absl::Now());
  job.set_tenant(tenant);
  v1::JobEvent queued;
  queued.set_seq(1);
  *queued.mutable_time() = job.create_time();
  queued.mutable_state_change()->set_state(v1::JOB_STATE_QUEUED);
  queued.mutable_state_change()->set_message("queued");
  queued.mutable_state_change()->set_replica_id(replica_id_);
  job.set_last_seq(1);
  // The queue as the catalogue has it (every replica's jobs), checked and extended under
  // create_mu_, so that concurrent calls here cannot overrun the bound (calls on other replicas at
  // the same instant can, by one each).
  absl::MutexLock create_lock(&create_mu_);
  ASSIGN_OR_RETURN(const JobQueue queue, catalog_->ReadQueue());
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("server is shutting down");
  }
  if (queue.queued() >= options_.max_queued) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the job queue is full (", options_.max_queued, " jobs waiting)"));
  }
  if (quota.queued_jobs) {
    auto it = queue.queued_by_tenant.find(OwnerOf(tenant));
    const int64_t queued_jobs = it == queue.queued_by_tenant.end() ? 0 : it->second;
    if (queued_jobs >= *quota.queued_jobs) {
      return QuotaExceededError(tenant, "queued_jobs", absl::StrCat(*quota.queued_jobs),
                                absl::StrCat(queued_jobs));
    }
  }
  if (request) request->resource_id = job.id();
  // The row and its first event in one transaction: a replica may claim it the moment it is
  // there.
  absl::Status inserted =
      catalog_->InsertJobWithEvents(job, {queued}, request ? &*request : nullptr);
  if (inserted.ok()) {
    absl::MutexLock lock(&mu_);
    work_cv_.Signal();
  }
  if (!inserted.ok()) {
    if (request && absl::IsAlreadyExists(inserted)) {
      // A concurrent retry of the same call committed first.
      ASSIGN_OR_RETURN(std::optional<v1::Job> earlier, EarlierJob(*request));
      if (earlier) return *std::move(earlier);
    }
    return inserted;
  }
  LOG(INFO) << "job " << job.id() << " -> JOB_STATE_QUEUED: queued";
  {
    absl::MutexLock lock(&watch_mu_);
    changed_jobs_.insert(job.id());
  }
  return job;
}

absl::StatusOr<v1::Job> JobManager::GetJob(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it != active_.end() && !it->second->leaving.load()) return it->second->job;
  }
  auto job = catalog_->GetJob(id);
  if (absl::IsNotFound(job.status())) return UnknownIdError("job", id);
  return job;
}

absl::StatusOr<Page<v1::Job>> JobManager::ListJobs(const std::string& tenant, int page_size,
                                                   const std::string& page_token) {
  ASSIGN_OR_RETURN(Page<v1::Job> page, catalog_->ListJobs(tenant, page_size, page_token));
  absl::MutexLock lock(&mu_);
  for (auto& j : page.items) {  // live progress of the jobs training here
    auto it = active_.find(j.id());
    if (it != active_.end() && !it->second->leaving.load()) j = it->second->job;
  }
  return page;
}

absl::StatusOr<v1::Job> JobManager::CancelJob(const std::string& id) {
  for (int attempt = 0;; ++attempt) {
    {
      // Training here: its slot stops it at the next step boundary.
      absl::MutexLock lock(&mu_);
      auto it = active_.find(id);
      if (it != active_.end()) {
        it->second->signals->cancel_requested.store(true);
        return it->second->job;
      }
    }
    ASSIGN_OR_RETURN(v1::Job job, GetJob(id));
    if (IsFinal(job.state())) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", id, " has already ended (", v1::JobState_Name(job.state()), ")"));
    }
    // Held by nobody (queued, or its replica is gone): claim it and cancel it now.
    ASSIGN_OR_RETURN(std::optional<JobClaim> claim,
                     catalog_->ClaimJob(id, replica_id_, absl::Seconds(options_.lease_seconds)));
    if (claim) {
      auto active = std::make_shared<ActiveJob>();
      active->job = std::move(claim->job);
      active->lease = claim->lease;
      active->job.set_replica_id(replica_id_);
      active->job.set_attempt(claim->lease.token);
      const bool started = active->job.state() == v1::JOB_STATE_RUNNING;
      absl::Status st = ChangeState(
          active, v1::JOB_STATE_CANCELLED,
          started ? "cancelled by request" : "cancelled before it started", [](v1::Job* j) {
            *j->mutable_end_time() = ToProto(absl::Now());
            j->set_checkpoint_step(0);
          });
      if (st.ok()) {
        checkpoints_->RemoveAll(id);
        return GetJob(id);
      }
      if (!IsLeaseLost(st)) return st;
      continue;  // claimed meanwhile by another replica: ask it
    }
    // Held by another replica (or claimed just now here): its lease keeper tells it.
    RETURN_IF_ERROR(catalog_->RequestCancel(id));
    {
      absl::MutexLock lock(&mu_);
      auto it = active_.find(id);
      if (it != active_.end()) it->second->signals->cancel_requested.store(true);
    }
    if (attempt > 0 || !job.replica_id().empty() || job.state() == v1::JOB_STATE_RUNNING) {
      return GetJob(id);
    }
    // A job claimed between the read and the claim: look once more (it may have ended).
  }
}

absl::StatusOr<EventBatch> JobManager::ReadEvents(const std::string& id, int64_t from_seq,
                                                  int max_events) {
  if (from_seq < 0) return absl::InvalidArgumentError("from_seq must be >= 0");
  if (max_events < 1) return absl::InvalidArgumentError("max_events must be >= 1");
  const int64_t first = std::max<int64_t>(from_seq, 1);
  EventBatch batch;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("server is shutting down");
    auto it = active_.find(id);
    if (it != active_.end()) {
      // Active: its events are all in memory, with contiguous seq numbers. It has not ended (the
      // final event and the removal from active_ happen under one lock).
      const std::vector<v1::JobEvent>& events = it->second->events;
      if (events.empty() || events.back().seq() < first) return batch;
      const int64_t begin = std::max<int64_t>(first - events.front().seq(), 0);
      const int64_t end =
          std::min<int64_t>(begin + max_events, static_cast<int64_t>(events.size()));
      batch.events.assign(events.begin() + begin, events.begin() + end);
      return batch;
    }
  }
  // Ended (its events were persisted before it left active_), unknown, or between its catalogue
  // insert and its entry in active_ (CreateJob): read the catalogue, job first.
  ASSIGN_OR_RETURN(v1::Job job, GetJob(id));
  ASSIGN_OR_RETURN(batch.events, catalog_->ListEvents(id, first));
  if (static_cast<int64_t>(batch.events.size()) > max_events) {
    batch.events.resize(max_events);
  } else {
    batch.ended = IsFinal(job.state());
  }
  return batch;
}

void JobManager::Subscribe(const std::string& job_id, std::weak_ptr<WatchListener> listener) {
  absl::MutexLock lock(&watch_mu_);
  listeners_[job_id].push_back(std::move(listener));
}

void JobManager::Unsubscribe(const std::string& job_id, const WatchListener* listener) {
  absl::MutexLock lock(&watch_mu_);
  auto it = listeners_.find(job_id);
  if (it == listeners_.end()) return;
  auto& list = it->second;
  list.erase(std::remove_if(list.begin(), list.end(),
                            [listener](const std::weak_ptr<WatchListener>& l) {
                              auto alive = l.lock();
                              return !alive || alive.get() == listener;
                            }),
             list.end());
  if (list.empty()) listeners_.erase(it);
}

int JobManager::TEST_ListenerCount(const std::string& job_id) {
  absl::MutexLock lock(&watch_mu_);
  auto it = listeners_.find(job_id);
  return it == listeners_.end() ? 0 : static_cast<int>(it->second.size());
}

void JobManager::NotifierLoop() {
  while (true) {
    std::vector<std::shared_ptr<WatchListener>> to_notify;
    bool stop = false;
    {
      absl::MutexLock lock(&watch_mu_);
      watch_mu_.Await(absl::Condition(
          +[](JobManager* m) {
            return !m->changed_jobs_.empty() || m->notify_everyone_ || m->stop_notifier_;
          },
          this));
      auto collect = [&](std::vector<std::weak_ptr<WatchListener>>* list) {
        // Drops listeners that are gone (a watcher that never unsubscribed).
        auto gone = [&](const std::weak_ptr<WatchListener>& weak) {
          std::shared_ptr<WatchListener> l = weak.lock();
          if (!l) return true;
          to_notify.push_back(std::move(l));
          return false;
        };
        list->erase(std::remove_if(list->begin(), list->end(), gone), list->end());
      };
      if (notify_everyone_) {
        for (auto& [id, list] : listeners_) collect(&list);
        notify_everyone_ = false;
      } else {
        for (const std::string& id : changed_jobs_) {
          auto it = listeners_.find(id);
          if (it != listeners_.end()) collect(&it->second);
        }
      }
      changed_jobs_.clear();
      stop = stop_notifier_;
    }
    for (const auto& l : to_notify) l->OnJobChanged();
    // Dropping the last reference to a finished watcher deletes it here, with no lock held.
    to_notify.clear();
    if (stop) return;
  }
}

std::string JobManager::DatasetInUse(const std::string& dataset_id) {
  // Every replica's queued and running jobs.
  absl::StatusOr<std::vector<v1::Job>> pending =
      catalog_->JobsInStates({v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING});
  if (!pending.ok()) return absl::StrCat("the catalogue cannot tell: ", pending.status().message());
  for (const v1::Job& job : *pending) {
    const auto& s = job.spec();
    if (s.dataset_id() == dataset_id ||
        (s.has_validation_dataset_id() && s.validation_dataset_id() == dataset_id)) {
      return absl::StrCat("job ", job.id(), " is ", v1::JobState_Name(job.state()));
    }
  }
  return "";
}

absl::StatusOr<v1::Job> JobManager::Record(const std::shared_ptr<ActiveJob>& job,
                                           std::optional<v1::JobEvent> event,
                                           const std::function<void(v1::Job*)>& update,
                                           const std::optional<v1::Model>& model,
                                           bool release_lease) {
  absl::MutexLock write_lock(&job->write_mu);
  if (job->lost()) return LeaseLostError(job->lease.job_id, job->lease.token, 0);
  // The update applies to a copy, kept once written (or, for an event that is not the job's
  // last, kept to be written with the next one): a last write that fails leaves the job as it
  // was, and its seq number unused.
  JobWrite write;
  {
    absl::MutexLock lock(&mu_);
    write.job = job->job;
  }
  if (event) {
    event->set_seq(write.job.last_seq() + 1);
    *event->mutable_time() = ToProto(absl::Now());
    write.job.set_last_seq(event->seq());
  }
  if (update) update(&write.job);
  const bool final = IsFinal(write.job.state());
  // While the write that ends the job (or hands it back) is in flight, this replica answers for
  // the job from the catalogue, as every other replica does: the memory would lag behind a commit
  // that others may already have seen.
  if (final || release_lease) job->leaving.store(true);
  write.events = std::move(job->unpersisted);
  job->unpersisted.clear();
  if (event) write.events.push_back(*event);
  write.lease_token = job->lease.token;
  write.model = model;
  write.release_lease = release_lease;
  absl::Status st = catalog_->WriteJob(write);
  // A job's last event must reach the catalogue, or the job would look held or running: retry
  // it for a while (the slot waits).
  for (int i = 0; !st.ok() && !IsLeaseLost(st) && (final || release_lease) && i < 20; ++i) {
    absl::SleepFor(absl::Milliseconds(500));
    st = catalog_->WriteJob(write);
  }
  if (IsLeaseLost(st)) {
    // Another replica holds the job now: what this one had not written is not its to write.
    LOG(WARNING) << "job " << write.job.id() << ": " << st.message()
                 << "; this replica writes nothing more for it";
    job->signals->lost.store(true);
    Forget(job);
    return st;
  }
  const bool keep = st.ok() || !(final || release_lease || model);
  if (!st.ok()) {
    LOG(ERROR) << "job " << write.job.id() << ": cannot persist " << write.events.size()
               << " event(s)" << (keep ? " (kept; written with the next one)" : "") << ": " << st;
    job->unpersisted = std::move(write.events);
    if (!keep && event) job->unpersisted.pop_back();
  }
  if (keep) {
    absl::MutexLock lock(&mu_);
    job->job = write.job;
    if (event) job->events.push_back(*event);
    if (event && event->has_progress()) job->last_progress = event->progress();
    if (event && event->has_epoch_summary()) job->last_epoch = event->epoch_summary();
  }
  if (st.ok() && (final || release_lease)) Forget(job);
  job->leaving.store(false);
  if (keep) {
    // Watchers are told by the notifier thread: the training loop never runs their code.
    absl::MutexLock lock(&watch_mu_);
    changed_jobs_.insert(write.job.id());
  }
  if (!st.ok()) return st;
  return write.job;
}

v1::Job JobManager::AddEvent(const std::shared_ptr<ActiveJob>& job, v1::JobEvent event,
                             const std::function<void(v1::Job*)>& update) {
  Record(job, std::move(event), update).IgnoreError();
  absl::MutexLock lock(&mu_);
  return job->job;
}

absl::Status JobManager::ChangeState(const std::shared_ptr<ActiveJob>& job, v1::JobState state,
                                     const std::string& message,
                                     const std::function<void(v1::Job*)>& update,
                                     const std::optional<v1::Model>& model) {
  v1::JobEvent e;
  e.mutable_state_change()->set_state(state);
  e.mutable_state_change()->set_message(message);
  e.mutable_state_change()->set_replica_id(replica_id_);
  LOG(INFO) << "job " << job->lease.job_id << " -> " << v1::JobState_Name(state)
            << (message.empty() ? "" : ": ") << message;
  const bool release = IsFinal(state) || state == v1::JOB_STATE_QUEUED;
  return Record(
             job, e,
             [&](v1::Job* j) {
               j->set_state(state);
               if (release) j->clear_replica_id();
               if (update) update(j);
             },
             model, release)
      .status();
}

void JobManager::Forget(const std::shared_ptr<ActiveJob>& job) {
  leases_->Drop(job->lease);
  absl::MutexLock lock(&mu_);
  auto it = active_.find(job->lease.job_id);
  if (it != active_.end() && it->second == job) active_.erase(it);
}

void JobManager::RunJob(const std::shared_ptr<ActiveJob>& job) {
  v1::JobSpec spec;
  std::string id;
  std::string tenant;
  {
    absl::MutexLock lock(&mu_);
    spec = job->job.spec();
    id = job->job.id();
    tenant = OwnerOf(job->job.tenant());
  }
  auto finish = [&](v1::JobState state, const std::string& message, const std::string& model_id,
                    const std::string& stop_reason,
                    const std::optional<v1::Model>& model) -> absl::Status {
    absl::Status st = ChangeState(
        job, state, message,
        [&](v1::Job* j) {
          *j->mutable_end_time() = ToProto(absl::Now());
          if (state == v1::JOB_STATE_FAILED) j->set_error(message);
          if (!model_id.empty()) j->set_model_id(model_id);
          j->set_stop_reason(stop_reason);
          j->set_checkpoint_step(0);
        },
        model);
    if (st.ok()) checkpoints_->RemoveAll(id);
    return st;
  };
  std::string stop_reason;
  std::shared_ptr<const Model> trained;
  std::shared_ptr<const ReferenceScores> reference;  // reference_scores.h
  absl::StatusOr<v1::Model> prepared = [&]() -> absl::StatusOr<v1::Model> {
    ASSIGN_OR_RETURN(v1::Dataset ds, datasets_->Get(spec.dataset_id()));
    ASSIGN_OR_RETURN(std::shared_ptr<const RecordMatrix> data, datasets_->Load(spec.dataset_id()));
    // Binary training rows stay bit-packed (as loaded) while the job runs; the trainer
    // unpacks each batch.
    std::shared_ptr<const RecordMatrix> train = data, valid;
    if (spec.has_validation_dataset_id()) {
      ASSIGN_OR_RETURN(valid, datasets_->Load(spec.validation_dataset_id()));
    } else {
      ASSIGN_OR_RETURN(auto split, SplitRecords(*data, spec.validation_fraction(), spec.seed()));
      train = std::make_shared<const RecordMatrix>(std::move(split.first));
      valid = std::make_shared<const RecordMatrix>(std::move(split.second));
    }
    data.reset();
    TrainOptions opts;
    opts.learning_rate = spec.optimizer().learning_rate();
    opts.weight_decay = spec.optimizer().weight_decay();
    opts.batch_size = spec.batch_size();
    opts.epochs = spec.epochs();
    opts.seed = spec.seed();
    opts.progress_interval_seconds = options_.progress_interval_seconds;
    opts.block_products = options_.block_products;
    opts.max_steps = spec.max_steps();
    opts.max_seconds = spec.max_seconds();
    opts.early_stopping_patience = spec.early_stopping_patience();
    // Newest checkpoint first (RunClaimed removed the unregistered ones); one that cannot be
    // read or does not fit is removed and the next older one tried, then a fresh start.
    std::vector<int64_t> steps = checkpoints_->Steps(id);
    absl::StatusOr<TrainResult> result;
    while (true) {
      std::string bytes;
      int64_t from = 0;
      while (!steps.empty() && bytes.empty()) {
        auto read = checkpoints_->Read(id, steps.front());
        if (read.ok()) {
          bytes = std::move(*read);
          from = steps.front();
        } else {
          LOG(WARNING) << "job " << id << ": cannot read checkpoint " << steps.front() << ": "
                       << read.status();
          checkpoints_->Remove(id, steps.front());
          steps.erase(steps.begin());
        }
      }
      opts.resume_from = bytes.empty() ? nullptr : &bytes;
      absl::Status running =
          ChangeState(job, v1::JOB_STATE_RUNNING,
                      from > 0 ? absl::StrCat("resuming from the checkpoint at step ", from) : "",
                      [&](v1::Job* j) {
                        if (!j->has_start_time()) *j->mutable_start_time() = ToProto(absl::Now());
                      });
      if (IsLeaseLost(running)) return running;  // other failures: written with the next event
      Observer observer(this, job);
      result = Train(spec.model(), *train, *valid, opts, &observer);
      if (from > 0 && IsUnusableCheckpoint(result.status()) && !job->lost()) {
        LOG(WARNING) << "job " << id << ": checkpoint at step " << from
                     << " cannot be resumed: " << result.status();
        checkpoints_->Remove(id, from);
        steps.erase(steps.begin());
        continue;
      }
      break;
    }
    RETURN_IF_ERROR(result.status());
    if (job->lost()) return LeaseLostError(id, job->lease.token, 0);
    stop_reason = result->stop_reason;
    v1::Model meta;
    meta.set_job_id(id);
    meta.set_dataset_id(spec.dataset_id());
    *meta.mutable_spec() = spec.model();
    meta.set_kind(ds.kind());
    meta.set_dim(ds.dim());
    meta.set_num_categories(ds.num_categories());
    if (ds.has_image_shape()) *meta.mutable_image_shape() = ds.image_shape();
    meta.set_validation_nll(result->best_validation_nll);
    meta.set_tenant(tenant);
    trained = std::move(result->model);
    ASSIGN_OR_RETURN(
        ReferenceScores scores,
        ComputeReferenceScores(*trained, *valid, spec.seed(), [&] { return job->cancelled(); }));
    reference = std::make_shared<const ReferenceScores>(std::move(scores));
    return models_->Prepare(meta, *trained, reference.get());
  }();
  if (job->lost() || IsLeaseLost(prepared.status())) {
    // Another replica has the job: it trains and publishes it; this one leaves no trace.
    if (prepared.ok()) models_->Discard(prepared->id());
    LOG(WARNING) << "job " << id << ": lease lost; stopped without writing";
    return;
  }
  if (prepared.ok()) {
    // Published exactly once: the model's row, the final state and the lease's end in one fenced
    // transaction.
    absl::Status st =
        finish(v1::JOB_STATE_SUCCEEDED, stop_reason, prepared->id(), stop_reason, *prepared);
    if (st.ok()) {
      models_->Published(prepared->id(), std::move(trained), std::move(reference));
      return;
    }
    if (IsLeaseLost(st)) {
      // Lost before the commit, or lost track of a commit that happened (a connection lost while
      // committing): the job's row says which; its model file stays only if it is published.
      absl::StatusOr<v1::Job> row = catalog_->GetJob(id);
      if (row.ok() && row->model_id() != prepared->id()) models_->Discard(prepared->id());
      return;
    }
    // The job fails with the reason; the file goes once that is written (had the publication
    // committed after all, the lease would be gone and this write refused).
    LOG(WARNING) << "job " << id << ": model " << prepared->id() << " not published: " << st;
    if (finish(v1::JOB_STATE_FAILED, std::string(st.message()), "", "", std::nullopt).ok()) {
      models_->Discard(prepared->id());
    }
    return;
  }
  if (absl::IsAborted(prepared.status())) {
    // Suspended by the server's shutdown after a checkpoint: back to the queue, for this or
    // another replica.
    int64_t step;
    {
      absl::MutexLock lock(&mu_);
      step = job->job.checkpoint_step();
    }
    ChangeState(job, v1::JOB_STATE_QUEUED,
                absl::StrCat("interrupted by server shutdown; resumes from the checkpoint at step ",
                             step, " at the next start"),
                [](v1::Job* j) { j->set_crash_count(0); })  // a graceful stop ends a crash run
        .IgnoreError();
  } else if (absl::IsCancelled(prepared.status())) {
    finish(v1::JOB_STATE_CANCELLED, "cancelled by request", "", "", std::nullopt).IgnoreError();
  } else {
    LOG(WARNING) << "job " << id << " failed: " << prepared.status();
    finish(v1::JOB_STATE_FAILED, std::string(prepared.status().message()), "", "", std::nullopt)
        .IgnoreError();
  }
}

absl::StatusOr<ResolvedModel> JobManager::CheckpointModel(const std::string& id) {
  std::shared_ptr<ActiveJob> active;
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it != active_.end()) active = it->second;
  }
  int64_t step;
  if (!active) {
    // Not training here: the catalogue says what it is, the shared directory has its files.
    ASSIGN_OR_RETURN(v1::Job job, GetJob(id));
    if (job.state() == v1::JOB_STATE_SUCCEEDED) {
      ASSIGN_OR_RETURN(std::shared_ptr<const Model> model, models_->Load(job.model_id()));
      return ResolvedModel{std::move(model), 0};
    }
    if (IsFinal(job.state())) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", id, " ended ", v1::JobState_Name(job.state()), " and has no model"));
    }
    step = job.checkpoint_step();
    if (step == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", id, " has no checkpoint yet (", v1::JobState_Name(job.state()),
                       ", step ", job.step(), "); try again after its first checkpoint"));
    }
    absl::MutexLock lock(&remote_mu_);
    auto cached = remote_probes_.find(id);
    if (cached != remote_probes_.end() && cached->second.checkpoint_step == step) {
      return cached->second;
    }
    ASSIGN_OR_RETURN(std::string bytes, checkpoints_->Read(id, step));
    ASSIGN_OR_RETURN(std::unique_ptr<Model> model, ModelFromCheckpoint(bytes));
    if (remote_probes_.size() >= 8) remote_probes_.erase(remote_probes_.begin());
    ResolvedModel resolved{std::shared_ptr<const Model>(std::move(model)), step};
    remote_probes_[id] = resolved;
    return resolved;
  }
  {
    absl::MutexLock lock(&mu_);
    step = active->job.checkpoint_step();  // the newest checkpoint written (or found at start)
    if (step == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", id, " has no checkpoint yet (", v1::JobState_Name(active->job.state()), ", step ",
          active->job.step(), "); try again after its first checkpoint"));
    }
  }
  absl::MutexLock lock(&active->probe_mu);
  if (active->probe_step == step) return ResolvedModel{active->probe, step};
  auto bytes = checkpoints_->Read(id, step);
  if (!bytes.ok()) {  // pruned by a newer checkpoint just now: take the newest on disk
    const std::vector<int64_t> steps = checkpoints_->Steps(id);
    if (steps.empty()) return bytes.status();
    step = steps.front();
    bytes = checkpoints_->Read(id, step);
    RETURN_IF_ERROR(bytes.status());
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Model> model, ModelFromCheckpoint(*bytes));
  active->probe = std::move(model);
  active->probe_step = step;
  return ResolvedModel{active->probe, active->probe_step};
}

}  // namespace logp
