// WatchJobService: JobService.WatchJob served on gRPC's async API, with one polling thread of its
// own and a small state machine per stream (no thread per watcher).
//
// Why not the callback API: in gRPC 1.51 a server with any callback method starts "nexting"
// threads (CallbackAlternativeCQ) that sleep 100 ms at a time and stall the sync server's next
// call now and then (a single-record Score then takes 100 ms). The async API polls a completion
// queue of ours, blocking, and stalls nothing.
//
// What a stream does, as the callback version did: its request is parsed here (bytes that do not
// parse: INVALID_ARGUMENT), admitted by `admit` (shutdown, credentials, field limits, and whether
// the caller sees the job), then sends the job's history from the request's from_seq followed by
// its live events, and ends OK after the job's final event; CANCELLED when the client goes away;
// UNAVAILABLE once the server shuts down (the job manager's ReadEvents says so). Each stream
// counts in the server's InFlightCalls (kStop) from its admission until its status is sent.
//
// Thread-safe. Lifecycle: construct before the server is built (it registers the method on
// `service`), AddTo the builder, Start after BuildAndStart, Stop after the server's Shutdown.
#ifndef LOGP_SERVER_GRPC_WATCH_JOB_SERVICE_H_
#define LOGP_SERVER_GRPC_WATCH_JOB_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "logp/v1/job_service.pb.h"
#include "server/core/job_manager.h"
#include "server/grpc/checked_service.h"
#include "server/grpc/in_flight_calls.h"

namespace logp {

class WatchJobService {
 public:
  // OK to watch, else the status the stream finishes with (nothing is sent).
  using Admit = std::function<grpc::Status(const grpc::ServerContext&, const v1::WatchJobRequest&)>;

  // Registers WatchJob on `service` (JobService) for the async API. `service`, `jobs` and `calls`
  // must outlive this object.
  WatchJobService(CheckedService* service, JobManager* jobs, InFlightCalls* calls, Admit admit);
  ~WatchJobService();  // Stop()

  // Before BuildAndStart: adds this service's completion queue to `builder`.
  void AddTo(grpc::ServerBuilder* builder);
  // After BuildAndStart: starts the polling thread and accepts streams.
  void Start();
  // After the server's Shutdown (which cancels every stream and pending request): shuts the queue
  // down, drains it and joins the thread. Idempotent; also fine when Start was never called.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Stream;
  friend class Stream;

  // What a completion-queue tag is (a Stream's member).
  struct Tag {
    Stream* stream;
    enum Kind { kRequest, kWrite, kFinish, kDone } kind;
  };

  void Poll();
  // Asks gRPC for the next stream, unless stopped.
  void RequestNext() ABSL_LOCKS_EXCLUDED(mu_);
  // Runs `start` (which starts an operation on the queue) unless stopped; false if stopped.
  bool StartOp(const std::function<void()>& start) ABSL_LOCKS_EXCLUDED(mu_);

  CheckedService* const service_;
  JobManager* const jobs_;
  InFlightCalls* const calls_;
  const Admit admit_;
  int method_index_ = -1;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::thread poller_;

  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;  // no operation starts on cq_ any more
  // Streams whose request failed (the server shut down first): gRPC may still hold their tags
  // (grpc/grpc#10136), so they are kept until the queue is drained.
  std::vector<std::shared_ptr<Stream>> unstarted_;  // used by the polling thread only
};

}  // namespace logp

#endif  // LOGP_SERVER_GRPC_WATCH_JOB_SERVICE_H_
