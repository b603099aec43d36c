#include "server/core/call_control.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace logp {

absl::Status CallControl::Check(const char* what) const {
  if (cancelled_ && cancelled_()) {
    return absl::CancelledError(absl::StrCat(what, " stopped: the client cancelled the call"));
  }
  if (deadline_ != absl::InfiniteFuture() && absl::Now() >= deadline_) {
    return absl::DeadlineExceededError(absl::StrCat(what, " stopped: the deadline passed"));
  }
  return absl::OkStatus();
}

StopPoll CallControl::AsStopPoll() const {
  return [this] { return !Check().ok(); };
}

absl::Status CallControl::Explain(const absl::Status& model_status, const char* what) const {
  if (!absl::IsCancelled(model_status)) return model_status;
  absl::Status own = Check(what);
  return own.ok() ? model_status : own;
}

absl::Time CappedDeadline(absl::Time client_deadline, double max_seconds) {
  if (max_seconds <= 0) return client_deadline;
  return std::min(client_deadline, absl::Now() + absl::Seconds(max_seconds));
}

}  // namespace logp
