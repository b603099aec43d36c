#include "server/grpc/in_flight_calls.h"

#include <glog/logging.h>

namespace logp {

absl::Status ShuttingDownError() { return absl::UnavailableError("server is shutting down"); }

void InFlightCalls::Add(AtShutdown kind) {
  absl::MutexLock lock(&mu_);
  ++count_[static_cast<int>(kind)];
}

void InFlightCalls::Remove(AtShutdown kind) {
  absl::MutexLock lock(&mu_);
  int& n = count_[static_cast<int>(kind)];
  CHECK_GT(n, 0) << "a call removed that was not added";
  --n;
}

int InFlightCalls::WaitUntilEnded(AtShutdown kind, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  const int& n = count_[static_cast<int>(kind)];
  auto ended = [&n] { return n == 0; };
  mu_.AwaitWithDeadline(absl::Condition(&ended), deadline);
  return n;
}

int InFlightCalls::TEST_Count() {
  absl::MutexLock lock(&mu_);
  return count_[0] + count_[1];
}

}  // namespace logp
