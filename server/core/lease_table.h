// LeaseTable: job leases kept in the process, for the catalogues that serve one process (SQLite,
// in memory). Same rules as the PostgreSQL catalogue's job_leases table (see Catalog): a claim
// takes a job no live lease holds and gets the next fencing token; a renewal or a fenced write
// succeeds only while its token still holds the job. A restart finds no lease: every job left
// RUNNING is claimable at once.
//
// Not thread-safe: its catalogue calls it under its own lock, in the same critical section as
// the rows it guards, so a fenced write and a claim never interleave.
#ifndef LOGP_SERVER_CORE_LEASE_TABLE_H_
#define LOGP_SERVER_CORE_LEASE_TABLE_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/core/catalog.h"

namespace logp {

class LeaseTable {
 public:
  // Whether a lease that has not expired holds the job at `now`.
  bool Held(const std::string& job_id, absl::Time now) const;
  // Who holds the job's live lease ("" if none).
  std::string HolderOf(const std::string& job_id, absl::Time now) const;
  // Takes the lease of a job Held() said is free, until `now + duration`.
  JobClaim Claim(const std::string& job_id, const std::string& owner, absl::Time now,
                 absl::Duration duration);
  // OK while `token` holds the job; LeaseLostError otherwise.
  absl::Status Check(const std::string& job_id, int64_t token) const;
  // Extends a held lease; returns whether a cancel was requested.
  absl::StatusOr<bool> Renew(const JobLease& lease, absl::Time now, absl::Duration duration);
  // Ends the lease if `token` holds it.
  void Release(const std::string& job_id, int64_t token);
  void ReleaseOf(const std::string& owner);
  void RequestCancel(const std::string& job_id) { leases_[job_id].cancel_requested = true; }

 private:
  struct Entry {
    std::string owner;  // empty: released
    int64_t token = 0;  // of the last claim
    absl::Time expires = absl::InfinitePast();
    bool cancel_requested = false;
  };
  std::map<std::string, Entry> leases_;
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_LEASE_TABLE_H_
