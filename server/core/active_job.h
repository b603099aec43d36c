// JobManager::ActiveJob: a job this replica holds the lease of, shared by the files of the job
// manager (job_manager.cc: events, training, probes; job_claims.cc: claims, the reaper, the
// slots). Internal to them.
#ifndef LOGP_SERVER_CORE_ACTIVE_JOB_H_
#define LOGP_SERVER_CORE_ACTIVE_JOB_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "logp/v1/job_service.pb.h"
#include "models/model.h"
#include "server/core/catalog.h"
#include "server/core/job_manager.h"
#include "server/core/lease_keeper.h"

namespace logp {

inline bool IsFinal(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
}

struct JobManager::ActiveJob {
  // Serialises the persistence of this job's events; taken before mu_, never inside it.
  absl::Mutex write_mu;
  // Events the catalogue refused (full disk, I/O error), oldest first: written again, in order,
  // with the next event, so that the stored history has no gap once the catalogue recovers.
  std::vector<v1::JobEvent> unpersisted ABSL_GUARDED_BY(write_mu);
  // Protected by JobManager::mu_.
  v1::Job job;
  std::vector<v1::JobEvent> events;  // contiguous seq numbers
  // The newest progress and epoch summary recorded here (for RunningJobs); empty until then.
  std::optional<v1::TrainingProgress> last_progress;
  std::optional<v1::EpochSummary> last_epoch;
  // The lease this replica holds, and who held the one before; immutable once claimed.
  JobLease lease;
  std::string previous_owner;
  // Set by the keeper: lease lost (another replica took the job over), cancel requested
  // elsewhere. cancel_requested also by CancelJob here.
  std::shared_ptr<LeaseSignals> signals = std::make_shared<LeaseSignals>();
  // A write that ends the job here (final, or back to the queue) is in flight (Record).
  std::atomic<bool> leaving{false};
  // The last step and epoch this job reported (before a restart too): a resumed run re-trains
  // the steps after its checkpoint without reporting them twice. Training thread only.
  int64_t reported_step = 0;
  int64_t reported_epoch = 0;
  // The model of the newest checkpoint, loaded on demand for Score / Sample on a running job.
  absl::Mutex probe_mu;
  std::shared_ptr<const Model> probe ABSL_GUARDED_BY(probe_mu);
  int64_t probe_step ABSL_GUARDED_BY(probe_mu) = -1;

  bool lost() const { return signals->lost.load(); }
  bool cancelled() const { return signals->cancel_requested.load(); }
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_ACTIVE_JOB_H_
