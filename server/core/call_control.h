// CallControl: when a request must stop. The gRPC-free view of a call's deadline (the client's,
// capped by the server's limit) and of its cancellation, which the core polls between batches.
//
// Thread-safety: const methods may be called from any thread; `cancelled` must allow that.
#ifndef LOGP_SERVER_CORE_CALL_CONTROL_H_
#define LOGP_SERVER_CORE_CALL_CONTROL_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "models/model.h"

namespace logp {

class CallControl {
 public:
  // No deadline, never cancelled.
  CallControl() = default;
  // `cancelled` (may be null) says whether the client has gone away.
  CallControl(absl::Time deadline, std::function<bool()> cancelled)
      : deadline_(deadline), cancelled_(std::move(cancelled)) {}

  // OK while the call may go on; CANCELLED once the client cancelled; DEADLINE_EXCEEDED once the
  // deadline has passed. `what` names the work in the message ("scoring").
  absl::Status Check(const char* what = "the call") const;
  // A poll for models/ (true: stop), for Model::Score and Model::Sample.
  StopPoll AsStopPoll() const;
  // When the model layer stopped (CANCELLED) because of this call, the call's own status;
  // any other status as it is.
  absl::Status Explain(const absl::Status& model_status, const char* what) const;

  absl::Time deadline() const { return deadline_; }

 private:
  absl::Time deadline_ = absl::InfiniteFuture();
  std::function<bool()> cancelled_;
};

// The deadline a call runs under: the client's (InfiniteFuture() if it set none), or at most
// `max_seconds` from now when max_seconds > 0.
absl::Time CappedDeadline(absl::Time client_deadline, double max_seconds);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_CALL_CONTROL_H_
