#include "server/core/lease_keeper.h"

#include <glog/logging.h>

#include <vector>

#include "absl/time/clock.h"

namespace logp {

LeaseKeeper::LeaseKeeper(Catalog* catalog, absl::Duration duration, absl::Duration every)
    : catalog_(catalog), duration_(duration), every_(every) {
  thread_ = std::thread([this] { Loop(); });
}

LeaseKeeper::~LeaseKeeper() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void LeaseKeeper::Hold(const JobLease& lease, std::shared_ptr<LeaseSignals> signals) {
  absl::MutexLock lock(&mu_);
  held_[lease.job_id] = Held{lease, std::move(signals), absl::Now()};
}

void LeaseKeeper::Drop(const JobLease& lease) {
  absl::MutexLock lock(&mu_);
  auto it = held_.find(lease.job_id);
  if (it != held_.end() && it->second.lease.token == lease.token) held_.erase(it);
}

void LeaseKeeper::Loop() {
  auto stopping = [this] { return stop_; };
  while (true) {
    std::vector<Held> due;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping), every_);
      if (stop_) return;
      for (const auto& [id, h] : held_) due.push_back(h);
    }
    // Renewed with no lock held: a slow catalogue delays Hold and Drop by nothing.
    for (Held& h : due) {
      const absl::Time start = absl::Now();
      absl::StatusOr<bool> cancel = catalog_->RenewLease(h.lease, duration_);
      if (cancel.ok()) {
        if (*cancel) h.signals->cancel_requested.store(true);
        absl::MutexLock lock(&mu_);
        auto it = held_.find(h.lease.job_id);
        if (it != held_.end() && it->second.lease.token == h.lease.token) {
          it->second.renewed = start;
        }
        continue;
      }
      if (IsLeaseLost(cancel.status())) {
        LOG(WARNING) << "job " << h.lease.job_id << ": " << cancel.status().message()
                     << "; this replica stops training it and writes nothing more for it";
        h.signals->lost.store(true);
      } else if (absl::Now() - h.renewed >= duration_) {
        LOG(WARNING) << "job " << h.lease.job_id << ": lease not renewed for "
                     << absl::FormatDuration(absl::Now() - h.renewed) << " (" << cancel.status()
                     << "); another replica may claim it, so this one stops training it";
        h.signals->lost.store(true);
      } else {
        LOG(WARNING) << "job " << h.lease.job_id
                     << ": lease renewal failed (retried): " << cancel.status();
      }
    }
  }
}

}  // namespace logp
