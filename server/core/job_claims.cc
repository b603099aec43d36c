// The job manager's claims: the training slots, the fair choice among claimable jobs, taking a
// claimed job on, and the reaper that requeues jobs whose replica stopped renewing their lease.
#include <glog/logging.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "models/compute_threads.h"
#include "proto/cc/status_macros.h"
#include "server/core/active_job.h"
#include "server/core/job_manager.h"
#include "server/core/time_util.h"

namespace logp {
namespace {

// How often a slot with nothing to do looks at the catalogue again (other replicas' jobs, expired
// leases, quotas raised by a reload), and the reaper for expired leases, unless told of news
// sooner.
constexpr absl::Duration kQueuePoll = absl::Seconds(1);

}  // namespace

std::string DefaultReplicaId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') std::strcpy(host, "logpd");
  return absl::StrCat(host, ":", getpid());
}

std::vector<RunningJobProgress> JobManager::RunningJobs() {
  std::vector<RunningJobProgress> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, active] : active_) {
    if (active->leaving.load() || active->job.state() != v1::JOB_STATE_RUNNING) continue;
    RunningJobProgress p;
    p.job_id = id;
    p.tenant = OwnerOf(active->job.tenant());
    p.family = active->job.spec().model().family();
    p.step = active->job.step();
    p.progress = active->last_progress;
    p.epoch = active->last_epoch;
    out.push_back(std::move(p));
  }
  return out;
}

void JobManager::SetCheckpointListener(CheckpointListener listener) {
  absl::MutexLock lock(&listener_mu_);
  checkpoint_listener_ = std::move(listener);
}

void JobManager::TellCheckpointListener(absl::Duration write_time, bool ok) {
  absl::MutexLock lock(&listener_mu_);
  if (checkpoint_listener_) checkpoint_listener_(write_time, ok);
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
  const absl::Duration lease = absl::Seconds(options_.lease_seconds);
  bool catalogue_failing = false;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (shutting_down_) return;
    }
    // Claim-then-commit: the claim is its own short transaction; training happens after it.
    absl::StatusOr<JobQueue> queue = catalog_->ReadQueue();
    std::optional<JobClaim> claim;
    if (queue.ok()) {
      catalogue_failing = false;
      std::string next;
      {
        absl::MutexLock lock(&mu_);
        const v1::Job* job = NextJobLocked(*queue);
        if (job != nullptr) next = job->id();
      }
      if (!next.empty()) {
        absl::StatusOr<std::optional<JobClaim>> claimed =
            catalog_->ClaimJob(next, replica_id_, lease);
        if (claimed.ok()) {
          claim = std::move(*claimed);
          if (!claim) continue;  // another slot or replica was quicker: look again
        } else {
          LOG(WARNING) << "training slot: cannot claim job " << next << ": " << claimed.status();
        }
      }
    } else if (!catalogue_failing) {
      catalogue_failing = true;
      LOG(WARNING) << "training slot: cannot read the job queue (retried): " << queue.status();
    }
    if (!claim) {
      // Told of news (CreateJob here, another replica's write), or looking again anyway.
      absl::MutexLock lock(&mu_);
      if (shutting_down_) return;
      work_cv_.WaitWithTimeout(&mu_, kQueuePoll);
      continue;
    }
    const std::string tenant = OwnerOf(claim->job.tenant());
    {
      absl::MutexLock lock(&mu_);
      last_start_[tenant] = ++starts_;
    }
    RunClaimed(*std::move(claim));
    absl::MutexLock lock(&mu_);
    work_cv_.SignalAll();  // a job of this tenant may wait for its running_jobs quota
  }
}

const v1::Job* JobManager::NextJobLocked(const JobQueue& queue) {
  const v1::Job* best = nullptr;
  int64_t best_turn = 0;
  std::set<std::string> seen;
  // Jobs a crash interrupted first (they had started; a graceful stop clears crash_count), then
  // the others, each group in creation order.
  std::vector<const v1::Job*> order;
  for (const v1::Job& job : queue.claimable) {
    if (job.state() == v1::JOB_STATE_RUNNING || job.crash_count() > 0) order.push_back(&job);
  }
  for (const v1::Job& job : queue.claimable) {
    if (!(job.state() == v1::JOB_STATE_RUNNING || job.crash_count() > 0)) order.push_back(&job);
  }
  for (const v1::Job* candidate : order) {
    const v1::Job& job = *candidate;
    const std::string tenant = OwnerOf(job.tenant());
    if (!seen.insert(tenant).second) continue;  // FIFO within a tenant: only its first
    const TenantQuota quota = QuotaOf(options_.quotas, tenant);
    if (quota.running_jobs) {
      auto it = queue.leased_by_tenant.find(tenant);
      if (it != queue.leased_by_tenant.end() && it->second >= *quota.running_jobs) continue;
    }
    auto last = last_start_.find(tenant);
    const int64_t turn = last == last_start_.end() ? 0 : last->second;
    if (best == nullptr || turn < best_turn) {
      best = &job;
      best_turn = turn;
    }
  }
  return best;
}

std::shared_ptr<JobManager::ActiveJob> JobManager::Adopt(JobClaim claim) {
  auto active = std::make_shared<ActiveJob>();
  active->lease = claim.lease;
  if (claim.cancel_requested) active->signals->cancel_requested.store(true);
  const std::string id = claim.lease.job_id;
  absl::StatusOr<std::vector<v1::JobEvent>> events = catalog_->ListEvents(id, 1);
  if (!events.ok()) {
    // Its lease expires and this or another replica claims it again.
    LOG(WARNING) << "job " << id
                 << ": cannot read its events (claimed again later): " << events.status();
    return nullptr;
  }
  // The events this replica continues from are the stored ones, all of them.
  active->events = *std::move(events);
  const int64_t last_seq = active->events.empty() ? 0 : active->events.back().seq();
  for (const auto& e : active->events) {
    if (e.has_progress()) {
      active->reported_step = std::max(active->reported_step, e.progress().step());
    }
    if (e.has_epoch_summary()) {
      active->reported_epoch = std::max<int64_t>(active->reported_epoch, e.epoch_summary().epoch());
      active->reported_step = std::max(active->reported_step, e.epoch_summary().step());
    }
  }
  // The checkpoint the row names is the newest that counts; newer files are from a replica that
  // lost its lease, or died, before naming them.
  const int64_t registered = claim.job.checkpoint_step();
  int64_t resume_step = 0;
  for (const int64_t step : checkpoints_->Steps(id)) {
    if (step > registered) {
      LOG(INFO) << "job " << id << ": removing checkpoint at step " << step << ", never registered";
      checkpoints_->Remove(id, step);
    } else if (resume_step == 0) {
      resume_step = step;
    }
  }
  active->previous_owner = claim.previous_owner;
  active->job = std::move(claim.job);
  active->job.set_last_seq(std::max(active->job.last_seq(), last_seq));
  active->job.set_checkpoint_step(resume_step);
  active->job.set_replica_id(replica_id_);
  active->job.set_attempt(claim.lease.token);
  {
    absl::MutexLock lock(&mu_);
    active_[id] = active;
  }
  leases_->Hold(claim.lease, active->signals);
  return active;
}

bool JobManager::RequeueOrphan(const std::shared_ptr<ActiveJob>& active, bool release) {
  const std::string& id = active->lease.job_id;
  int64_t resume_step;
  int32_t crashes;
  {
    absl::MutexLock lock(&mu_);
    resume_step = active->job.checkpoint_step();
    // One more crash in a row unless it checkpointed since the last one.
    crashes = active->job.crash_count() > 0 && active->job.crash_checkpoint_step() == resume_step
                  ? active->job.crash_count() + 1
                  : 1;
  }
  if (active->cancelled()) {
    checkpoints_->RemoveAll(id);
    ChangeState(active, v1::JOB_STATE_CANCELLED, "cancelled by request", [](v1::Job* j) {
      *j->mutable_end_time() = ToProto(absl::Now());
      j->set_checkpoint_step(0);
    }).IgnoreError();
    return false;
  }
  if (options_.max_job_crashes > 0 && crashes >= options_.max_job_crashes) {
    const std::string error = absl::StrCat(
        "interrupted by ", crashes,
        " crashes in a row: the server died while this job trained (killed, out of memory?), "
        "each time before a newer checkpoint; not resumed again");
    LOG(WARNING) << "job " << id << ": " << error;
    absl::Status st = ChangeState(active, v1::JOB_STATE_FAILED, error, [&](v1::Job* j) {
      *j->mutable_end_time() = ToProto(absl::Now());
      j->set_error(error);
      j->set_crash_count(crashes);
      j->set_crash_checkpoint_step(resume_step);
      j->set_checkpoint_step(0);
    });
    if (st.ok()) checkpoints_->RemoveAll(id);
    return false;
  }
  const std::string who =
      active->previous_owner.empty() || active->previous_owner == replica_id_
          ? "a server restart"
          : absl::StrCat("replica ", active->previous_owner,
                         " stopped renewing its lease (killed, paused or cut off)");
  v1::JobEvent e;
  e.mutable_state_change()->set_state(v1::JOB_STATE_QUEUED);
  e.mutable_state_change()->set_message(
      resume_step > 0
          ? absl::StrCat("requeued after ", who, "; resumes from the checkpoint at step ",
                         resume_step)
          : absl::StrCat("requeued after ", who, "; no checkpoint yet, training starts over"));
  e.mutable_state_change()->set_replica_id(replica_id_);
  LOG(INFO) << "job " << id << " -> JOB_STATE_QUEUED: " << e.state_change().message();
  absl::Status st = Record(
                        active, e,
                        [&](v1::Job* j) {
                          j->set_state(v1::JOB_STATE_QUEUED);
                          if (release) j->clear_replica_id();
                          j->set_step(resume_step);
                          j->set_crash_count(crashes);
                          j->set_crash_checkpoint_step(resume_step);
                        },
                        std::nullopt, release)
                        .status();
  if (!st.ok()) Forget(active);  // lost, or its lease expires and it is claimed again later
  return st.ok();
}

void JobManager::ReapOrphans() {
  absl::StatusOr<JobQueue> queue = catalog_->ReadQueue();
  if (!queue.ok()) return;  // the slots say it
  for (const v1::Job& job : queue->claimable) {
    if (job.state() != v1::JOB_STATE_RUNNING) continue;
    absl::StatusOr<std::optional<JobClaim>> claim =
        catalog_->ClaimJob(job.id(), replica_id_, absl::Seconds(options_.lease_seconds));
    if (!claim.ok() || !*claim) continue;
    std::shared_ptr<ActiveJob> active = Adopt(**std::move(claim));
    if (active) RequeueOrphan(active, /*release=*/true);
  }
}

void JobManager::ReaperLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (shutting_down_) return;
      reaper_cv_.WaitWithTimeout(&mu_, kQueuePoll);
      if (shutting_down_) return;
    }
    ReapOrphans();
  }
}

void JobManager::RunClaimed(JobClaim claim) {
  const bool was_running = claim.job.state() == v1::JOB_STATE_RUNNING;
  std::shared_ptr<ActiveJob> active = Adopt(std::move(claim));
  if (!active) return;
  if (was_running && !RequeueOrphan(active, /*release=*/false)) return;
  if (active->cancelled()) {
    checkpoints_->RemoveAll(active->lease.job_id);
    ChangeState(active, v1::JOB_STATE_CANCELLED, "cancelled before it started", [](v1::Job* j) {
      *j->mutable_end_time() = ToProto(absl::Now());
      j->set_checkpoint_step(0);
    }).IgnoreError();
    return;
  }
  RunJob(active);
  // Whatever happened, this replica is done with it (its final write forgot it already).
  Forget(active);
}

}  // namespace logp
