#include "server/core/lease_table.h"

namespace logp {

bool LeaseTable::Held(const std::string& job_id, absl::Time now) const {
  return !HolderOf(job_id, now).empty();
}

std::string LeaseTable::HolderOf(const std::string& job_id, absl::Time now) const {
  auto it = leases_.find(job_id);
  if (it == leases_.end() || it->second.expires <= now) return "";
  return it->second.owner;
}

JobClaim LeaseTable::Claim(const std::string& job_id, const std::string& owner, absl::Time now,
                           absl::Duration duration) {
  Entry& e = leases_[job_id];
  JobClaim claim;
  claim.previous_owner = e.owner;
  e.owner = owner;
  e.expires = now + duration;
  ++e.token;
  claim.lease = JobLease{job_id, owner, e.token};
  claim.cancel_requested = e.cancel_requested;
  return claim;
}

absl::Status LeaseTable::Check(const std::string& job_id, int64_t token) const {
  auto it = leases_.find(job_id);
  const int64_t held = it == leases_.end() || it->second.owner.empty() ? 0 : it->second.token;
  if (held != token) return LeaseLostError(job_id, token, held);
  return absl::OkStatus();
}

absl::StatusOr<bool> LeaseTable::Renew(const JobLease& lease, absl::Time now,
                                       absl::Duration duration) {
  if (absl::Status st = Check(lease.job_id, lease.token); !st.ok()) return st;
  Entry& e = leases_[lease.job_id];
  e.expires = now + duration;
  return e.cancel_requested;
}

void LeaseTable::Release(const std::string& job_id, int64_t token) {
  auto it = leases_.find(job_id);
  if (it == leases_.end() || it->second.token != token) return;
  it->second.owner.clear();
  it->second.expires = absl::InfinitePast();
}

void LeaseTable::ReleaseOf(const std::string& owner) {
  for (auto& [id, e] : leases_) {
    if (e.owner == owner) {
      e.owner.clear();
      e.expires = absl::InfinitePast();
    }
  }
}

}  // namespace logp
