#include "server/auth/rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/auth/quotas.h"
#include "server/core/quota.h"

namespace logp {

absl::Status ScoringRateLimiter::Admit(const std::string& tenant, int64_t records, absl::Time now) {
  if (records <= 0) return absl::OkStatus();
  // Outside the lock: the quota may come from a file that is being re-read.
  const std::optional<double> limit =
      quotas_ ? quotas_(tenant).records_scored_per_second : std::nullopt;

  absl::MutexLock lock(&mu_);
  if (!limit.has_value()) {
    buckets_.erase(tenant);
    return absl::OkStatus();
  }
  const double rate = *limit;
  const std::string limit_text = absl::StrFormat("%.15g", rate);
  const std::string asked =
      absl::StrCat("this request ", records, records == 1 ? " record" : " records");
  if (rate <= 0) {
    return QuotaExceededError(tenant, kQuotaRecordsScoredPerSecond, limit_text, "0",
                              absl::StrCat(asked, ", the limit admits no records"));
  }

  Bucket& bucket = buckets_[tenant];
  // A new limit keeps the records counted: R_old * (full_at - now) = R_new * (full_at' - now).
  if (bucket.rate != rate && bucket.rate > 0 && bucket.full_at > now) {
    bucket.full_at = now + (bucket.full_at - now) * (bucket.rate / rate);
  }
  bucket.rate = rate;

  // The time the refill needs to pay back what the bucket counts; the balance is above 0 while
  // that is under one second.
  const absl::Duration owed = std::max(bucket.full_at - now, absl::ZeroDuration());
  if (owed < absl::Seconds(1)) {
    bucket.full_at = now + owed + absl::Seconds(static_cast<double>(records) / rate);
    return absl::OkStatus();
  }
  const int64_t in_use = std::llround(rate * absl::ToDoubleSeconds(owed));
  // The first whole millisecond at which `owed` is under one second.
  const absl::Duration retry =
      absl::Ceil(owed - absl::Seconds(1) + absl::Nanoseconds(1), absl::Milliseconds(1));
  return QuotaExceededError(tenant, kQuotaRecordsScoredPerSecond, limit_text, absl::StrCat(in_use),
                            absl::StrCat(asked, ", retry in ", absl::FormatDuration(retry)));
}

}  // namespace logp
