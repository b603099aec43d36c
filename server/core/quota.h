// Per-tenant quotas the core enforces (the file that sets them is read by server/auth/quotas.h).
#ifndef LOGP_SERVER_CORE_QUOTA_H_
#define LOGP_SERVER_CORE_QUOTA_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace logp {

// Limits of one tenant; an unset limit is no limit.
struct TenantQuota {
  // Bytes of the tenant's stored datasets and models (their stored_bytes).
  std::optional<int64_t> stored_bytes;
  // Datasets the tenant has stored.
  std::optional<int64_t> datasets;
  // Jobs of the tenant waiting in the queue (CreateJob is refused beyond it).
  std::optional<int64_t> queued_jobs;
  // Jobs of the tenant training at the same time (the scheduler starts no more; the others wait
  // in the queue).
  std::optional<int64_t> running_jobs;
  // Records a tenant may score per second (Score and Evaluate), enforced by the adapters.
  std::optional<double> records_scored_per_second;
};

// The quota of a tenant, current at the time of the call (the file behind it may be re-read).
// Must be thread-safe. Null: no quotas.
using QuotaFn = std::function<TenantQuota(const std::string& tenant)>;

// RESOURCE_EXHAUSTED naming the quota, its limit and the tenant's use, e.g. "tenant 'team-a' is
// at its quota datasets: limit 3, in use 3". `asked`, if not empty, says what the refused
// request would have added ("this upload 1.2 MiB").
inline absl::Status QuotaExceededError(const std::string& tenant, const std::string& quota,
                                       const std::string& limit, const std::string& in_use,
                                       const std::string& asked = "") {
  return absl::ResourceExhaustedError(absl::StrCat("tenant '", tenant, "' is at its quota ", quota,
                                                   ": limit ", limit, ", in use ", in_use,
                                                   asked.empty() ? "" : ", ", asked));
}

// Bytes as quota messages write them: "10485760 bytes (10.0 MiB)".
inline std::string QuotaBytes(int64_t bytes) {
  const char* const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " bytes");
  return absl::StrFormat("%d bytes (%.1f %s)", bytes, value, units[unit]);
}

// The quota of `tenant` from `quotas` (none when null).
inline TenantQuota QuotaOf(const QuotaFn& quotas, const std::string& tenant) {
  return quotas ? quotas(tenant) : TenantQuota{};
}

}  // namespace logp

#endif  // LOGP_SERVER_CORE_QUOTA_H_
