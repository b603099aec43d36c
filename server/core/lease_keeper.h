// LeaseKeeper: renews the job leases one replica holds, on a thread of its own, and tells each
// job when its lease is lost (another replica claimed it: fenced out) or when a cancel was
// requested through the catalogue (Catalog::RequestCancel, from another replica).
//
// A lease that cannot be renewed for a whole lease duration (the catalogue unreachable, the
// process paused) counts as lost too, so a cut-off replica stops by itself before another may
// claim its jobs; its writes would be refused anyway (fencing).
//
// Thread-safety: all methods may be called concurrently.
#ifndef LOGP_SERVER_CORE_LEASE_KEEPER_H_
#define LOGP_SERVER_CORE_LEASE_KEEPER_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/catalog.h"

namespace logp {

// What the keeper tells a job's trainer; polled at every training step.
struct LeaseSignals {
  std::atomic<bool> lost{false};
  std::atomic<bool> cancel_requested{false};
};

class LeaseKeeper {
 public:
  // Renews every `every` leases of `duration`. `catalog` must outlive the keeper.
  LeaseKeeper(Catalog* catalog, absl::Duration duration, absl::Duration every);
  // Stops renewing (the leases it held expire unless released).
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Keeps `lease` (just claimed) until Drop.
  void Hold(const JobLease& lease, std::shared_ptr<LeaseSignals> signals);
  // Stops renewing `lease` (not a newer lease of the same job held since).
  void Drop(const JobLease& lease);

 private:
  struct Held {
    JobLease lease;
    std::shared_ptr<LeaseSignals> signals;
    absl::Time renewed;  // the claim, then the last renewal that succeeded
  };
  void Loop();

  Catalog* const catalog_;
  const absl::Duration duration_;
  const absl::Duration every_;
  absl::Mutex mu_;
  std::map<std::string, Held> held_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_LEASE_KEEPER_H_
