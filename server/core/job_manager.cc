#include "server/core/job_manager.h"

#include <glog/logging.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "models/compute_threads.h"
#include "models/model.h"
#include "models/train.h"
#include "proto/cc/status_macros.h"
#include "server/core/files.h"
#include "server/core/job_memory.h"
#include "server/core/job_spec.h"
#include "server/core/time_util.h"

namespace logp {
namespace {

bool IsFinal(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
}

}  // namespace

struct JobManager::ActiveJob {
  // Serialises the persistence of this job's events; taken before mu_, never inside it.
  absl::Mutex write_mu;
  // Events the catalogue refused (full disk, I/O error), oldest first: written again, in order,
  // with the next event, so that the stored history has no gap once the catalogue recovers.
  std::vector<v1::JobEvent> unpersisted ABSL_GUARDED_BY(write_mu);
  // Protected by JobManager::mu_.
  v1::Job job;
  std::vector<v1::JobEvent> events;  // contiguous seq numbers
  std::atomic<bool> cancel_requested{false};
  // The last step and epoch this job reported (before a restart too): a resumed run re-trains
  // the steps after its checkpoint without reporting them twice. Training thread only.
  int64_t reported_step = 0;
  int64_t reported_epoch = 0;
  // The model of the newest checkpoint, loaded on demand for Score / Sample on a running job.
  absl::Mutex probe_mu;
  std::shared_ptr<const Model> probe ABSL_GUARDED_BY(probe_mu);
  int64_t probe_step ABSL_GUARDED_BY(probe_mu) = -1;
};

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
  bool StopRequested() override { return job_->cancel_requested.load(); }
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
    absl::Status st = manager_->checkpoints_->Write(id, c.step, c.bytes);
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
    LOG(INFO) << "job " << id << ": checkpoint at step " << c.step << " (" << c.bytes.size()
              << " bytes): encoded in " << c.encode_seconds * 1e3 << " ms, written in "
              << absl::ToDoubleMilliseconds(absl::Now() - t0) << " ms";
    absl::MutexLock lock(&manager_->mu_);
    job_->job.set_checkpoint_step(c.step);
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
  std::unique_ptr<JobManager> m(new JobManager(options, catalog, datasets, models, checkpoints));
  ASSIGN_OR_RETURN(auto pending,
                   catalog->JobsInStates({v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING}));
  std::set<std::string> pending_ids;
  for (const auto& job : pending) pending_ids.insert(job.id());
  checkpoints->RemoveAllExcept(pending_ids);
  // Jobs that were running first (they had started), then the queue in creation order.
  std::stable_partition(pending.begin(), pending.end(),
                        [](const v1::Job& j) { return j.state() == v1::JOB_STATE_RUNNING; });
  for (auto& job : pending) {
    auto active = std::make_shared<ActiveJob>();
    ASSIGN_OR_RETURN(active->events, catalog->ListEvents(job.id(), 1));
    for (const auto& e : active->events) {
      if (e.has_progress())
        active->reported_step = std::max(active->reported_step, e.progress().step());
      if (e.has_epoch_summary()) {
        active->reported_epoch =
            std::max<int64_t>(active->reported_epoch, e.epoch_summary().epoch());
        active->reported_step = std::max(active->reported_step, e.epoch_summary().step());
      }
    }
    const bool was_running = job.state() == v1::JOB_STATE_RUNNING;
    const std::vector<int64_t> steps = checkpoints->Steps(job.id());
    const int64_t resume_step = steps.empty() ? 0 : steps.front();
    // A job the server died under: one more crash in a row unless it checkpointed since the
    // last one.
    int32_t crashes = 0;
    if (was_running) {
      crashes = job.crash_count() > 0 && job.crash_checkpoint_step() == resume_step
                    ? job.crash_count() + 1
                    : 1;
    }
    active->job = std::move(job);
    active->job.set_checkpoint_step(resume_step);  // what is on disk, whatever the row said
    const bool give_up = options.max_job_crashes > 0 && crashes >= options.max_job_crashes;
    {
      absl::MutexLock lock(&m->mu_);
      m->active_[active->job.id()] = active;
      if (!give_up) m->queue_.push_back(active->job.id());
    }
    if (give_up) {
      const std::string error = absl::StrCat(
          "interrupted by ", crashes,
          " crashes in a row: the server died while this job trained (killed, out of memory?), "
          "each time before a newer checkpoint; not resumed again");
      LOG(WARNING) << "job " << active->job.id() << ": " << error;
      checkpoints->RemoveAll(active->job.id());
      m->ChangeState(active, v1::JOB_STATE_FAILED, error, [&](v1::Job* j) {
        *j->mutable_end_time() = ToProto(absl::Now());
        j->set_error(error);
        j->set_crash_count(crashes);
        j->set_crash_checkpoint_step(resume_step);
        j->set_checkpoint_step(0);
      });
      continue;
    }
    if (was_running) {
      m->ChangeState(active, v1::JOB_STATE_QUEUED,
                     resume_step > 0
                         ? absl::StrCat("requeued after a server restart; resumes from the "
                                        "checkpoint at step ",
                                        resume_step)
                         : "requeued after a server restart; no checkpoint yet, training starts "
                           "over",
                     [&](v1::Job* j) {
                       j->set_step(resume_step);
                       j->set_checkpoint_step(resume_step);
                       j->set_crash_count(crashes);
                       j->set_crash_checkpoint_step(resume_step);
                     });
    }
    LOG(INFO) << "recovered job " << active->job.id() << " into the queue";
  }
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
  for (auto& t : slots_) {
    if (t.joinable()) t.join();
  }
  slots_.clear();
  {
    absl::MutexLock lock(&watch_mu_);
    stop_notifier_ = true;
  }
  if (notifier_.joinable()) notifier_.join();
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
  auto active = std::make_shared<ActiveJob>();
  v1::Job& job = active->job;
  *job.mutable_memory_estimate() = memory;
  job.set_id(absl::StrCat("job-", RandomHex(16)));
  *job.mutable_spec() = spec;
  job.set_state(v1::JOB_STATE_QUEUED);
  *job.mutable_create_time() = ToProto(absl::Now());
  job.set_tenant(tenant);
  const v1::Job initial = job;
  {
    // Reserve a queue place before writing, so concurrent calls cannot overrun the bound, and
    // register the job at once: GetJob, CancelJob and DatasetInUse see it while it is written.
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("server is shutting down");
    if (static_cast<int>(queue_.size()) + reserved_places_ >= options_.max_queued) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the job queue is full (", options_.max_queued, " jobs waiting)"));
    }
    if (quota.queued_jobs) {
      const int64_t queued = QueuedOfLocked(tenant) + reserved_by_tenant_[tenant];
      if (queued >= *quota.queued_jobs) {
        return QuotaExceededError(tenant, "queued_jobs", absl::StrCat(*quota.queued_jobs),
                                  absl::StrCat(queued));
      }
    }
    ++reserved_places_;
    ++reserved_by_tenant_[tenant];
    active_[initial.id()] = active;
  }
  if (request) request->resource_id = initial.id();
  absl::Status inserted =
      request ? catalog_->InsertJobForRequest(initial, *request) : catalog_->InsertJob(initial);
  if (!inserted.ok()) {
    {
      absl::MutexLock lock(&mu_);
      --reserved_places_;
      --reserved_by_tenant_[tenant];
      active_.erase(initial.id());
    }
    if (request && absl::IsAlreadyExists(inserted)) {
      // A concurrent retry of the same call committed first.
      ASSIGN_OR_RETURN(std::optional<v1::Job> earlier, EarlierJob(*request));
      if (earlier) return *std::move(earlier);
    }
    return inserted;
  }
  // A CancelJob that came in meanwhile set cancel_requested: the slot cancels it before it runs.
  v1::Job out = ChangeState(active, v1::JOB_STATE_QUEUED, "queued");
  absl::MutexLock lock(&mu_);
  --reserved_places_;
  --reserved_by_tenant_[tenant];
  queue_.push_back(initial.id());
  work_cv_.Signal();
  return out;
}

absl::StatusOr<v1::Job> JobManager::GetJob(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it != active_.end()) return it->second->job;
  }
  auto job = catalog_->GetJob(id);
  if (absl::IsNotFound(job.status())) return UnknownIdError("job", id);
  return job;
}

absl::StatusOr<Page<v1::Job>> JobManager::ListJobs(const std::string& tenant, int page_size,
                                                   const std::string& page_token) {
  ASSIGN_OR_RETURN(Page<v1::Job> page, catalog_->ListJobs(tenant, page_size, page_token));
  absl::MutexLock lock(&mu_);
  for (auto& j : page.items) {  // live progress of active jobs
    auto it = active_.find(j.id());
    if (it != active_.end()) j = it->second->job;
  }
  return page;
}

absl::StatusOr<v1::Job> JobManager::CancelJob(const std::string& id) {
  std::shared_ptr<ActiveJob> active;
  bool was_queued = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it != active_.end()) {
      active = it->second;
      active->cancel_requested.store(true);
      auto q = std::find(queue_.begin(), queue_.end(), id);
      if (q != queue_.end()) {
        queue_.erase(q);
        was_queued = true;
      }
    }
  }
  if (!active) {
    ASSIGN_OR_RETURN(v1::Job job, GetJob(id));
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " has already ended (", v1::JobState_Name(job.state()), ")"));
  }
  if (was_queued) {
    return ChangeState(active, v1::JOB_STATE_CANCELLED, "cancelled before it started",
                       [](v1::Job* j) { *j->mutable_end_time() = ToProto(absl::Now()); });
  }
  absl::MutexLock lock(&mu_);
  return active->job;
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
  absl::MutexLock lock(&mu_);
  for (const auto& [id, job] : active_) {
    const auto& s = job->job.spec();
    if (s.dataset_id() == dataset_id ||
        (s.has_validation_dataset_id() && s.validation_dataset_id() == dataset_id)) {
      return absl::StrCat("job ", id, " is ", v1::JobState_Name(job->job.state()));
    }
  }
  return "";
}

v1::Job JobManager::AddEvent(const std::shared_ptr<ActiveJob>& job, v1::JobEvent event,
                             const std::function<void(v1::Job*)>& update) {
  absl::MutexLock write_lock(&job->write_mu);
  v1::Job snapshot;
  {
    absl::MutexLock lock(&mu_);
    event.set_seq(job->job.last_seq() + 1);
    *event.mutable_time() = ToProto(absl::Now());
    job->job.set_last_seq(event.seq());
    if (update) update(&job->job);
    snapshot = job->job;
  }
  std::vector<v1::JobEvent> batch = std::move(job->unpersisted);
  job->unpersisted.clear();
  batch.push_back(event);
  absl::Status st = catalog_->AppendEvents(snapshot, batch);
  // A job's last event must reach the catalogue, or a restart would take it for running: retry
  // it for a while (the slot waits).
  for (int i = 0; !st.ok() && IsFinal(snapshot.state()) && i < 20; ++i) {
    absl::SleepFor(absl::Milliseconds(500));
    st = catalog_->AppendEvents(snapshot, batch);
  }
  if (!st.ok()) {
    LOG(ERROR) << "job " << snapshot.id() << ": cannot persist " << batch.size()
               << " event(s) (kept; written with the next one): " << st;
    job->unpersisted = std::move(batch);
  }
  {
    absl::MutexLock lock(&mu_);
    job->events.push_back(std::move(event));
    if (IsFinal(snapshot.state())) active_.erase(snapshot.id());
  }
  // Watchers are told by the notifier thread: the training loop never runs their code.
  absl::MutexLock lock(&watch_mu_);
  changed_jobs_.insert(snapshot.id());
  return snapshot;
}

v1::Job JobManager::ChangeState(const std::shared_ptr<ActiveJob>& job, v1::JobState state,
                                const std::string& message,
                                const std::function<void(v1::Job*)>& update) {
  v1::JobEvent e;
  e.mutable_state_change()->set_state(state);
  e.mutable_state_change()->set_message(message);
  LOG(INFO) << "job " << job->job.id() << " -> " << v1::JobState_Name(state)
            << (message.empty() ? "" : ": ") << message;
  return AddEvent(job, e, [&](v1::Job* j) {
    j->set_state(state);
    if (update) update(j);
  });
}

void JobManager::SlotLoop() {
  if (options_.threads_per_slot > 0) SetComputeThreads(options_.threads_per_slot);
  if (options_.training_nice != 0) {
    const auto tid = static_cast<id_t>(syscall(SYS_gettid));
    if (setpriority(PRIO_PROCESS, tid, options_.training_nice) != 0) {
      LOG(WARNING) << "training slot: cannot set nice " << options_.training_nice << ": "
                   << std::strerror(errno);
    }
  }
  while (true) {
    std::shared_ptr<ActiveJob> job;
    std::string tenant;
    {
      absl::MutexLock lock(&mu_);
      std::deque<std::string>::iterator next;
      while (!shutting_down_ && (next = NextJobLocked()) == queue_.end()) {
        // Queued jobs may all wait for their tenants' running_jobs quota, which a reload of the
        // quotas can raise: look again now and then.
        if (queue_.empty()) {
          work_cv_.Wait(&mu_);
        } else {
          work_cv_.WaitWithTimeout(&mu_, absl::Seconds(1));
        }
      }
      if (shutting_down_) return;
      job = active_[*next];
      queue_.erase(next);
      tenant = OwnerOf(job->job.tenant());
      ++running_by_tenant_[tenant];
      last_start_[tenant] = ++starts_;
    }
    if (job->cancel_requested.load()) {
      ChangeState(job, v1::JOB_STATE_CANCELLED, "cancelled before it started",
                  [](v1::Job* j) { *j->mutable_end_time() = ToProto(absl::Now()); });
    } else {
      RunJob(job);
    }
    absl::MutexLock lock(&mu_);
    --running_by_tenant_[tenant];
    work_cv_.SignalAll();  // a job of this tenant may wait for its running_jobs quota
  }
}

int64_t JobManager::QueuedOfLocked(const std::string& tenant) {
  int64_t n = 0;
  for (const std::string& id : queue_) {
    if (OwnerOf(active_[id]->job.tenant()) == tenant) ++n;
  }
  return n;
}

std::deque<std::string>::iterator JobManager::NextJobLocked() {
  auto best = queue_.end();
  int64_t best_turn = 0;
  std::set<std::string> seen;
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    const std::string tenant = OwnerOf(active_[*it]->job.tenant());
    if (!seen.insert(tenant).second) continue;  // FIFO within a tenant: only its oldest
    const TenantQuota quota = QuotaOf(options_.quotas, tenant);
    if (quota.running_jobs && running_by_tenant_[tenant] >= *quota.running_jobs) continue;
    auto last = last_start_.find(tenant);
    const int64_t turn = last == last_start_.end() ? 0 : last->second;
    if (best == queue_.end() || turn < best_turn) {
      best = it;
      best_turn = turn;
    }
  }
  return best;
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
                    const std::string& stop_reason) {
    checkpoints_->RemoveAll(id);
    ChangeState(job, state, message, [&](v1::Job* j) {
      *j->mutable_end_time() = ToProto(absl::Now());
      if (state == v1::JOB_STATE_FAILED) j->set_error(message);
      if (!model_id.empty()) j->set_model_id(model_id);
      j->set_stop_reason(stop_reason);
      j->set_checkpoint_step(0);
    });
  };
  std::string stop_reason;
  absl::StatusOr<v1::Model> published = [&]() -> absl::StatusOr<v1::Model> {
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
    // Newest checkpoint first; one that cannot be read or does not fit is removed and the next
    // older one tried, then a fresh start.
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
      ChangeState(job, v1::JOB_STATE_RUNNING,
                  from > 0 ? absl::StrCat("resuming from the checkpoint at step ", from) : "",
                  [&](v1::Job* j) {
                    if (!j->has_start_time()) *j->mutable_start_time() = ToProto(absl::Now());
                  });
      Observer observer(this, job);
      result = Train(spec.model(), *train, *valid, opts, &observer);
      if (from > 0 && IsUnusableCheckpoint(result.status())) {
        LOG(WARNING) << "job " << id << ": checkpoint at step " << from
                     << " cannot be resumed: " << result.status();
        checkpoints_->Remove(id, from);
        steps.erase(steps.begin());
        continue;
      }
      break;
    }
    RETURN_IF_ERROR(result.status());
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
    return models_->Publish(meta, std::shared_ptr<const Model>(std::move(result->model)));
  }();
  if (published.ok()) {
    finish(v1::JOB_STATE_SUCCEEDED, stop_reason, published->id(), stop_reason);
  } else if (absl::IsAborted(published.status())) {
    // Suspended by the server's shutdown after a checkpoint.
    int64_t step;
    {
      absl::MutexLock lock(&mu_);
      step = job->job.checkpoint_step();
    }
    ChangeState(job, v1::JOB_STATE_QUEUED,
                absl::StrCat("interrupted by server shutdown; resumes from the checkpoint at step ",
                             step, " at the next start"),
                [](v1::Job* j) { j->set_crash_count(0); });  // a graceful stop ends a crash run
  } else if (absl::IsCancelled(published.status())) {
    finish(v1::JOB_STATE_CANCELLED, "cancelled by request", "", "");
  } else {
    LOG(WARNING) << "job " << id << " failed: " << published.status();
    finish(v1::JOB_STATE_FAILED, std::string(published.status().message()), "", "");
  }
}

absl::StatusOr<ResolvedModel> JobManager::CheckpointModel(const std::string& id) {
  std::shared_ptr<ActiveJob> active;
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it != active_.end()) active = it->second;
  }
  if (!active) {
    ASSIGN_OR_RETURN(v1::Job job, GetJob(id));
    if (job.state() != v1::JOB_STATE_SUCCEEDED) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", id, " ended ", v1::JobState_Name(job.state()), " and has no model"));
    }
    ASSIGN_OR_RETURN(std::shared_ptr<const Model> model, models_->Load(job.model_id()));
    return ResolvedModel{std::move(model), 0};
  }
  int64_t step;
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
