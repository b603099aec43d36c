// InFlightCalls: counts the calls a LogpServer is serving, so that its shutdown can refuse new
// calls and wait for the ones in flight before it closes the connections.
//
// A sync call counts from before its method runs until gRPC has sent its status; a WatchJob
// stream from its start until OnDone.
//
// Thread-safe.
#ifndef LOGP_SERVER_GRPC_IN_FLIGHT_CALLS_H_
#define LOGP_SERVER_GRPC_IN_FLIGHT_CALLS_H_

#include <atomic>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace logp {

// UNAVAILABLE "server is shutting down": what a refused or stopped call answers (the client
// should retry later, or elsewhere).
absl::Status ShuttingDownError();

class InFlightCalls {
 public:
  // What a shutdown does to a call.
  enum class AtShutdown {
    // It may run to its end within the grace period (uploads, catalogue and job calls).
    kFinish,
    // It is told to stop (Score, Evaluate and Sample at their next batch, WatchJob at once; all
    // answer UNAVAILABLE). One that has not ended shortly after waits on a client that does not
    // read, or is in one long batch: closing the connections cancels it.
    kStop,
  };

  void Add(AtShutdown kind) ABSL_LOCKS_EXCLUDED(mu_);
  void Remove(AtShutdown kind) ABSL_LOCKS_EXCLUDED(mu_);

  // From now on stopping() is true: calls that start are refused, kStop calls stop.
  void BeginShutdown() { stopping_.store(true); }
  bool stopping() const { return stopping_.load(); }

  // Waits until no call of `kind` is in flight, or until `deadline`; returns how many still are.
  int WaitUntilEnded(AtShutdown kind, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  int TEST_Count() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  int count_[2] ABSL_GUARDED_BY(mu_) = {0, 0};  // by AtShutdown
};

}  // namespace logp

#endif  // LOGP_SERVER_GRPC_IN_FLIGHT_CALLS_H_
