// The records_scored_per_second quota: how many records a tenant may score per second (Score and
// Evaluate; the adapters call Admit before scoring).
#ifndef LOGP_SERVER_AUTH_RATE_LIMITER_H_
#define LOGP_SERVER_AUTH_RATE_LIMITER_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/quota.h"

namespace logp {

// A token bucket per tenant. With a limit of R records per second the bucket holds at most R
// (one second's worth; a new bucket is full) and refills continuously at R per second. A request
// of n records is admitted when the bucket's balance is above 0, and then takes n from it: the
// balance may go negative, so one request larger than R is admitted, and the next ones wait
// until the refill has paid the debt back.
//
// A refused request takes nothing and is RESOURCE_EXHAUSTED (QuotaExceededError)
//   "tenant 'T' is at its quota records_scored_per_second: limit R, in use U, this request N
//   records, retry in D"
// where U is the number of records the bucket still counts, R minus its balance (R plus the
// debt), rounded to an integer: the records admitted that the refill has not yet paid back.
// D (absl::FormatDuration, whole milliseconds, e.g. "301ms") is the wait after which the same
// request is admitted, if no other is admitted meanwhile ("1 record" for N = 1). A limit of 0
// refuses every request with "...: limit 0, in use 0, this request N records, the limit admits
// no records".
//
// A request of 0 records is always admitted. A change of the tenant's limit keeps the records
// the bucket counts. Thread-safe.
class ScoringRateLimiter {
 public:
  // `quotas` gives a tenant's limit (records_scored_per_second) at each call; unset, or a null
  // `quotas`, is no limit.
  explicit ScoringRateLimiter(QuotaFn quotas) : quotas_(std::move(quotas)) {}

  // Admits or refuses `records` records scored for `tenant` at time `now`.
  absl::Status Admit(const std::string& tenant, int64_t records, absl::Time now);
  absl::Status Admit(const std::string& tenant, int64_t records) {
    return Admit(tenant, records, absl::Now());
  }

 private:
  // The bucket as a time: at `full_at` the refill will have paid back every record admitted
  // (the balance is then R); the records it counts at `now` are R * (full_at - now).
  struct Bucket {
    absl::Time full_at = absl::InfinitePast();
    double rate = 0;
  };

  const QuotaFn quotas_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace logp

#endif  // LOGP_SERVER_AUTH_RATE_LIMITER_H_
