// ScoringRateLimiter with explicit times: capacity, debt, retry hints, limit changes, threads.
#include "server/auth/rate_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace logp {
namespace {

// Limits a test sets and changes; a tenant without one is unlimited.
class Limits {
 public:
  void Set(const std::string& tenant, std::optional<double> rate) {
    absl::MutexLock lock(&mu_);
    rates_[tenant] = rate;
  }
  QuotaFn Fn() {
    return [this](const std::string& tenant) {
      absl::MutexLock lock(&mu_);
      TenantQuota q;
      auto it = rates_.find(tenant);
      if (it != rates_.end()) q.records_scored_per_second = it->second;
      return q;
    };
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::optional<double>> rates_;
};

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

absl::Time At(int64_t ms) { return kT0 + absl::Milliseconds(ms); }

// The refusal of a request of `records` records.
absl::Status Refused(const std::string& tenant, const std::string& limit, int64_t in_use,
                     const std::string& retry, int64_t records = 1) {
  return absl::ResourceExhaustedError(
      "tenant '" + tenant + "' is at its quota records_scored_per_second: limit " + limit +
      ", in use " + std::to_string(in_use) + ", this request " + std::to_string(records) +
      (records == 1 ? " record" : " records") + ", retry in " + retry);
}

TEST(ScoringRateLimiterTest, NoQuotaFnOrNoLimitAdmitsEverything) {
  ScoringRateLimiter none(nullptr);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(none.Admit("a", 1000000000, kT0).ok());
  Limits limits;
  ScoringRateLimiter unset(limits.Fn());
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(unset.Admit("a", 1000000000, kT0).ok());
}

TEST(ScoringRateLimiterTest, AdmitsWhileTheBalanceIsPositiveThenNamesUseAndRetry) {
  Limits limits;
  limits.Set("team-a", 1000);
  ScoringRateLimiter limiter(limits.Fn());
  EXPECT_TRUE(limiter.Admit("team-a", 600, At(0)).ok());  // balance 400
  EXPECT_TRUE(limiter.Admit("team-a", 600, At(0)).ok());  // balance -200
  EXPECT_EQ(limiter.Admit("team-a", 1, At(0)), Refused("team-a", "1000", 1200, "201ms"));
  // 200 ms later the balance is back at 0: not above it.
  EXPECT_EQ(limiter.Admit("team-a", 1, At(200)), Refused("team-a", "1000", 1000, "1ms"));
  EXPECT_TRUE(limiter.Admit("team-a", 1, At(201)).ok());
}

TEST(ScoringRateLimiterTest, OneLargeRequestIsAdmittedAndTheNextOnesWait) {
  Limits limits;
  limits.Set("t", 100);
  ScoringRateLimiter limiter(limits.Fn());
  EXPECT_TRUE(limiter.Admit("t", 1000, At(0)).ok());  // ten seconds' worth
  EXPECT_EQ(limiter.Admit("t", 1, At(5000)), Refused("t", "100", 500, "4.001s"));
  EXPECT_EQ(limiter.Admit("t", 1, At(9000)), Refused("t", "100", 100, "1ms"));
  EXPECT_TRUE(limiter.Admit("t", 1, At(9001)).ok());
}

TEST(ScoringRateLimiterTest, TheBucketHoldsOneSecondsWorthAtMost) {
  Limits limits;
  limits.Set("t", 1000);
  ScoringRateLimiter limiter(limits.Fn());
  EXPECT_TRUE(limiter.Admit("t", 1, At(0)).ok());
  // 100 s idle refill to 1000, not 100000.
  EXPECT_TRUE(limiter.Admit("t", 1000, At(100000)).ok());
  EXPECT_EQ(limiter.Admit("t", 1, At(100000)), Refused("t", "1000", 1000, "1ms"));
}

TEST(ScoringRateLimiterTest, TheRetryHintIsExact) {
  Limits limits;
  limits.Set("t", 1000);
  ScoringRateLimiter limiter(limits.Fn());
  EXPECT_TRUE(limiter.Admit("t", 2345, At(0)).ok());  // owed 2.345 s
  EXPECT_EQ(limiter.Admit("t", 10, At(0)), Refused("t", "1000", 2345, "1.346s", 10));
  EXPECT_FALSE(limiter.Admit("t", 10, At(1345)).ok());
  EXPECT_TRUE(limiter.Admit("t", 10, At(1346)).ok());
}

TEST(ScoringRateLimiterTest, TenantsHaveTheirOwnBuckets) {
  Limits limits;
  limits.Set("a", 10);
  limits.Set("b", 10);
  ScoringRateLimiter limiter(limits.Fn());
  EXPECT_TRUE(limiter.Admit("a", 100, At(0)).ok());
  EXPECT_FALSE(limiter.Admit("a", 1, At(0)).ok());
  EXPECT_TRUE(limiter.Admit("b", 5, At(0)).ok());
  EXPECT_TRUE(limiter.Admit("c", 1000000, At(0)).ok());  // unlimited
}

TEST(ScoringRateLimiterTest, ZeroRecordsAreAlwaysAdmitted) {
  Limits limits;
  limits.Set("t", 10);
  ScoringRateLimiter limiter(limits.Fn());
  EXPECT_TRUE(limiter.Admit("t", 100, At(0)).ok());
  EXPECT_FALSE(limiter.Admit("t", 1, At(0)).ok());
  EXPECT_TRUE(limiter.Admit("t", 0, At(0)).ok());
  EXPECT_TRUE(limiter.Admit("t", -5, At(0)).ok());
}

TEST(ScoringRateLimiterTest, ALimitOfZeroAdmitsNothing) {
  Limits limits;
  limits.Set("t", 0);
  ScoringRateLimiter limiter(limits.Fn());
  EXPECT_EQ(limiter.Admit("t", 1, At(0)),
            absl::ResourceExhaustedError("tenant 't' is at its quota records_scored_per_second: "
                                         "limit 0, in use 0, this request 1 record, the limit "
                                         "admits no records"));
  EXPECT_FALSE(limiter.Admit("t", 1, At(1000000)).ok());
}

TEST(ScoringRateLimiterTest, ALimitChangeKeepsTheRecordsCounted) {
  Limits limits;
  limits.Set("t", 1000);
  ScoringRateLimiter limiter(limits.Fn());
  EXPECT_TRUE(limiter.Admit("t", 1500, At(0)).ok());
  limits.Set("t", 500);  // the file was re-read
  EXPECT_EQ(limiter.Admit("t", 1, At(0)), Refused("t", "500", 1500, "2.001s"));
  limits.Set("t", 2.5);
  EXPECT_EQ(limiter.Admit("t", 1, At(0)), Refused("t", "2.5", 1500, "9m59.001s"));
  limits.Set("t", std::nullopt);  // limit removed
  EXPECT_TRUE(limiter.Admit("t", 1000000, At(0)).ok());
  limits.Set("t", 1000);  // back, with a fresh bucket
  EXPECT_TRUE(limiter.Admit("t", 1, At(0)).ok());
}

TEST(ScoringRateLimiterTest, ConcurrentRequestsAtOneInstantAdmitExactlyTheCapacity) {
  Limits limits;
  limits.Set("t", 1000);
  ScoringRateLimiter limiter(limits.Fn());
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        if (limiter.Admit("t", 1, At(0)).ok()) ++admitted;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(admitted.load(), 1000);
}

TEST(ScoringRateLimiterTest, ConvenienceOverloadUsesTheClock) {
  Limits limits;
  limits.Set("t", 1);
  ScoringRateLimiter limiter(limits.Fn());
  EXPECT_TRUE(limiter.Admit("t", 1000).ok());  // 1000 s owed: refused for a long while
  EXPECT_EQ(limiter.Admit("t", 1).code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace logp
