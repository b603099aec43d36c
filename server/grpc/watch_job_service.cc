#include "server/grpc/watch_job_service.h"

#include <glog/logging.h>

#include <deque>
#include <string>
#include <utility>

#include "server/grpc/server.h"

namespace logp {

// One WatchJob stream. History comes from the job manager's ReadEvents; the manager's notifier
// thread calls OnJobChanged when there is news; the completion queue's thread delivers the ends
// of its operations (OnEvent).
//
// At most one thread "pumps" the stream at a time (pumping_): it reads a batch, writes it one
// event at a time (one write in flight; the next starts when the write's tag returns), and when
// it has nothing to send it hands the pump back unless news arrived meanwhile (news_), so no
// notification is lost. A slow reader only delays its own pump: its events wait in the job's
// history. The stream owns itself (self_) from its request until both its status has been sent
// (or could not be: the server stopped) and gRPC has said the call is done; the notifier holds it
// only through a weak_ptr, so a late notification never touches a deleted stream.
class WatchJobService::Stream final : public WatchListener,
                                      public std::enable_shared_from_this<Stream> {
 public:
  // Events read per ReadEvents call.
  static constexpr int kBatch = 64;

  explicit Stream(WatchJobService* owner) : owner_(owner), writer_(&ctx_) {
    ctx_.AsyncNotifyWhenDone(&done_tag_);  // before the request, as gRPC requires
  }

  // Hands this stream's request to gRPC (under the owner's lock, not stopped).
  void Request(std::shared_ptr<Stream> self) {
    self_ = std::move(self);
    owner_->service_->RequestServerStreaming(owner_->method_index_, &ctx_, &request_bytes_,
                                             &writer_, owner_->cq_.get(), &request_tag_);
  }

  // The end of one of this stream's operations; may delete the stream.
  void OnEvent(Tag::Kind kind, bool ok) {
    switch (kind) {
      case Tag::kRequest:
        if (!ok) {  // the server shut down before a call came
          owner_->unstarted_.push_back(std::move(self_));
          return;
        }
        owner_->RequestNext();
        Begin();
        return;
      case Tag::kWrite:
        OnWriteDone(ok);
        return;
      case Tag::kFinish:
        Completed(Tag::kFinish);
        return;
      case Tag::kDone: {
        absl::MutexLock lock(&mu_);
        cancelled_ = true;  // if the status was sent, nothing pumps any more anyway
      }
        // Holds the stream: Completed below may release self_ while Pump runs.
        std::shared_ptr<Stream> keep = shared_from_this();
        Pump(/*news=*/false);
        keep->Completed(Tag::kDone);
        return;
    }
  }

  void OnJobChanged() override { Pump(/*news=*/true); }

 private:
  // The call has come: parse, admit, then subscribe and pump, or finish at once.
  void Begin() {
    owner_->calls_->Add(InFlightCalls::AtShutdown::kStop);
    grpc::Status admitted;
    if (!ParseMessage(&request_bytes_, &request_)) {
      admitted = UnparsableRequest(v1::WatchJobRequest::descriptor());
    } else {
      admitted = owner_->admit_(ctx_, request_);
    }
    next_seq_ = request_.from_seq();
    if (!admitted.ok()) {
      {
        absl::MutexLock lock(&mu_);
        pumping_ = true;  // forever: nothing is sent but the status
      }
      Finish(admitted);
      return;
    }
    subscribed_ = true;
    owner_->jobs_->Subscribe(request_.id(), weak_from_this());
    Pump(/*news=*/true);
  }

  void OnWriteDone(bool ok) {
    if (!ok) {  // the stream is broken: the client went away, or the server stopped
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "watch stream broken"));
      return;
    }
    Run();  // still the pump's owner
  }

  // Becomes the pump's owner and runs it, unless another thread owns it (that thread then sees
  // the news).
  void Pump(bool news) {
    {
      absl::MutexLock lock(&mu_);
      if (news) news_ = true;
      if (pumping_) return;
      pumping_ = true;
    }
    Run();
  }

  // Runs as the pump's owner until it starts a write, finishes the stream (the pump is then
  // never released) or has nothing to send (the pump is released).
  void Run() {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (cancelled_) break;
        if (pending_.empty()) news_ = false;  // the read below sees everything up to now
      }
      if (pending_.empty() && !ended_) {
        absl::StatusOr<EventBatch> batch =
            owner_->jobs_->ReadEvents(request_.id(), next_seq_, kBatch);
        if (!batch.ok()) {
          Finish(ToGrpcStatus(batch.status()));
          return;
        }
        ended_ = batch->ended;
        if (!batch->events.empty()) next_seq_ = batch->events.back().seq() + 1;
        for (auto& e : batch->events) pending_.push_back(std::move(e));
      }
      if (!pending_.empty()) {
        writing_ = std::move(pending_.front());
        pending_.pop_front();
        if (!owner_->StartOp([this] { writer_.Write(writing_, &write_tag_); })) {
          OnWriteDone(false);
        }
        return;
      }
      if (ended_) {
        Finish(grpc::Status::OK);
        return;
      }
      absl::MutexLock lock(&mu_);
      if (!news_ && !cancelled_) {
        pumping_ = false;
        return;
      }
    }
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled by the client"));
  }

  // Sends the status (the pump's owner, once); may delete the stream.
  void Finish(grpc::Status status) {
    if (!owner_->StartOp([this, &status] { writer_.Finish(status, &finish_tag_); })) {
      Completed(Tag::kFinish);  // stopped: the server has cancelled the call already
    }
  }

  // Records that the status went out (kFinish) or that gRPC is done with the call (kDone); after
  // both, releases the stream (which may delete it).
  void Completed(Tag::Kind kind) {
    {
      absl::MutexLock lock(&mu_);
      (kind == Tag::kFinish ? finished_ : done_) = true;
      if (!finished_ || !done_) return;
    }
    if (subscribed_) owner_->jobs_->Unsubscribe(request_.id(), this);
    owner_->calls_->Remove(InFlightCalls::AtShutdown::kStop);
    std::shared_ptr<Stream> last = std::move(self_);  // may delete this on return
  }

  WatchJobService* const owner_;
  grpc::ServerContext ctx_;
  grpc::ByteBuffer request_bytes_;
  grpc::ServerAsyncWriter<v1::JobEvent> writer_;
  Tag request_tag_{this, Tag::kRequest};
  Tag write_tag_{this, Tag::kWrite};
  Tag finish_tag_{this, Tag::kFinish};
  Tag done_tag_{this, Tag::kDone};
  std::shared_ptr<Stream> self_;  // from Request until released by Completed

  // Set by Begin, before anything else may run.
  v1::WatchJobRequest request_;
  bool subscribed_ = false;

  absl::Mutex mu_;
  bool pumping_ ABSL_GUARDED_BY(mu_) = false;  // a thread owns the pump (forever once finished)
  bool news_ ABSL_GUARDED_BY(mu_) = false;     // notified since the pump's last read
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // the status was sent (or cannot be)
  bool done_ ABSL_GUARDED_BY(mu_) = false;      // gRPC is done with the call

  // Used only by the pump's owner.
  int64_t next_seq_ = 0;
  bool ended_ = false;
  std::deque<v1::JobEvent> pending_;
  v1::JobEvent writing_;  // the write in flight
};

WatchJobService::WatchJobService(CheckedService* service, JobManager* jobs, InFlightCalls* calls,
                                 Admit admit)
    : service_(service), jobs_(jobs), calls_(calls), admit_(std::move(admit)) {
  method_index_ = service_->AsyncServerStreaming("WatchJob", v1::WatchJobRequest::descriptor());
}

WatchJobService::~WatchJobService() { Stop(); }

void WatchJobService::AddTo(grpc::ServerBuilder* builder) {
  cq_ = builder->AddCompletionQueue(/*is_frequently_polled=*/true);
}

void WatchJobService::Start() {
  CHECK(cq_ != nullptr) << "WatchJobService::Start before AddTo";
  RequestNext();
  poller_ = std::thread([this] { Poll(); });
}

void WatchJobService::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    if (cq_ == nullptr) return;
    cq_->Shutdown();
  }
  if (poller_.joinable()) {
    poller_.join();
  } else {
    Poll();  // drains the queue
  }
  unstarted_.clear();
}

void WatchJobService::Poll() {
  void* tag = nullptr;
  bool ok = false;
  while (cq_->Next(&tag, &ok)) {
    const Tag* t = static_cast<const Tag*>(tag);
    t->stream->OnEvent(t->kind, ok);
  }
}

void WatchJobService::RequestNext() {
  auto stream = std::make_shared<Stream>(this);
  absl::MutexLock lock(&mu_);
  if (stopped_) return;
  stream->Request(stream);
}

bool WatchJobService::StartOp(const std::function<void()>& start) {
  absl::MutexLock lock(&mu_);
  if (stopped_) return false;
  start();
  return true;
}

}  // namespace logp
