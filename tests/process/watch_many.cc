// watch_many: opens many WatchJob streams on one job at once and checks what each receives.
//
// Streams use gRPC's client callback API (no thread per stream) and are spread over several
// channels with distinct arguments, so they travel over several connections. Kinds of watcher:
//   - from the start: must receive seq 1, 2, 3, ... up to the job's last_seq, with no gap or
//     repeat, ending with a final state change, then status OK;
//   - from the middle (every --middle_every-th): the same, starting at --middle_seq;
//   - early leavers (every --leave_every-th): receive 1 .. --leave_after, then cancel their
//     stream (status CANCELLED).
// Prints a summary; exits 0 iff every stream behaved.
//
// Usage: watch_many --server=HOST:PORT --job=ID [--watchers=1000] [--channels=10]
//                   [--ready_file=PATH] [--timeout_seconds=120]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "logp/v1/job_service.grpc.pb.h"

ABSL_FLAG(std::string, server, "localhost:50051", "logpd address (host:port)");
ABSL_FLAG(std::string, job, "", "Job to watch");
ABSL_FLAG(int, watchers, 1000, "Streams to open");
ABSL_FLAG(int, channels, 10, "Channels (connections) the streams are spread over");
ABSL_FLAG(int, middle_every, 10, "Every n-th watcher starts at --middle_seq (0: none)");
ABSL_FLAG(int64_t, middle_seq, 5, "First seq asked for by the watchers from the middle");
ABSL_FLAG(int, leave_every, 10, "Every n-th watcher leaves after --leave_after events (0: none)");
ABSL_FLAG(int, leave_after, 3, "Events an early leaver reads before cancelling its stream");
ABSL_FLAG(std::string, ready_file, "",
          "Once every stream has received its first event (or ended), this file is written with "
          "the number of streams still open");
ABSL_FLAG(double, timeout_seconds, 120, "Give up (and fail) after this long");

namespace logp {
namespace {

bool IsFinal(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
}

// Counts streams that have started receiving and streams that have ended.
class Tally {
 public:
  void Started() {
    absl::MutexLock lock(&mu_);
    ++started_;
  }
  void Ended() {
    absl::MutexLock lock(&mu_);
    ++ended_;
  }
  // Waits until `n` streams have started or ended; false on timeout.
  bool WaitStarted(int n, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto cond = [&] {
      mu_.AssertHeld();
      return started_ + ended_ >= n;
    };
    return mu_.AwaitWithDeadline(absl::Condition(&cond), deadline);
  }
  int ended() {
    absl::MutexLock lock(&mu_);
    return ended_;
  }
  bool WaitEnded(int n, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto cond = [&] {
      mu_.AssertHeld();
      return ended_ >= n;
    };
    return mu_.AwaitWithDeadline(absl::Condition(&cond), deadline);
  }

 private:
  absl::Mutex mu_;
  int started_ ABSL_GUARDED_BY(mu_) = 0;
  int ended_ ABSL_GUARDED_BY(mu_) = 0;
};

// One stream. Reactions run one at a time on gRPC's threads; the results are read after OnDone.
class Watcher final : public grpc::ClientReadReactor<v1::JobEvent> {
 public:
  Watcher(const std::string& job, int64_t from_seq, int leave_after, Tally* tally)
      : from_seq_(from_seq), leave_after_(leave_after), tally_(tally) {
    request_.set_id(job);
    request_.set_from_seq(from_seq);
  }

  void Start(v1::JobService::Stub* stub) {
    stub->async()->WatchJob(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended: OnDone follows
    const int64_t expected = std::max<int64_t>(from_seq_, 1) + received_;
    if (event_.seq() != expected && error_.empty()) {
      error_ = absl::StrCat("expected seq ", expected, ", got ", event_.seq());
    }
    if (received_++ == 0) tally_->Started();
    last_seq_ = event_.seq();
    final_state_ = event_.has_state_change() && IsFinal(event_.state_change().state())
                       ? event_.state_change().state()
                       : v1::JOB_STATE_UNSPECIFIED;
    if (leave_after_ > 0 && received_ == leave_after_) {
      context_.TryCancel();
      return;
    }
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& status) override {
    status_ = status;
    tally_->Ended();
  }

  // Empty when the stream behaved, given the job's final last_seq and state.
  std::string Check(int64_t job_last_seq, v1::JobState job_state) const {
    if (!error_.empty()) return error_;
    if (leave_after_ > 0) {
      if (status_.error_code() != grpc::StatusCode::CANCELLED) {
        return absl::StrCat("left early but ended with status ", status_.error_code(), ": ",
                            status_.error_message());
      }
      if (received_ != leave_after_) {
        return absl::StrCat("left early after ", received_, " events, not ", leave_after_);
      }
      return "";
    }
    if (!status_.ok()) {
      return absl::StrCat("status ", status_.error_code(), ": ", status_.error_message());
    }
    if (last_seq_ != job_last_seq) {
      return absl::StrCat("last seq ", last_seq_, ", job's last_seq ", job_last_seq);
    }
    if (final_state_ != job_state) {
      return absl::StrCat("stream did not end with the job's final state change (",
                          v1::JobState_Name(job_state), ")");
    }
    return "";
  }
  int64_t received() const { return received_; }

 private:
  const int64_t from_seq_;
  const int leave_after_;  // 0: read to the end
  Tally* const tally_;
  grpc::ClientContext context_;
  v1::WatchJobRequest request_;
  v1::JobEvent event_;
  int64_t received_ = 0;
  int64_t last_seq_ = 0;
  v1::JobState final_state_ = v1::JOB_STATE_UNSPECIFIED;
  std::string error_;
  grpc::Status status_;
};

int Run() {
  const std::string job = absl::GetFlag(FLAGS_job);
  const int n = absl::GetFlag(FLAGS_watchers);
  const int num_channels = absl::GetFlag(FLAGS_channels);
  const int middle_every = absl::GetFlag(FLAGS_middle_every);
  const int leave_every = absl::GetFlag(FLAGS_leave_every);
  if (job.empty() || n < 1 || num_channels < 1) {
    std::fprintf(stderr, "usage: watch_many --server=HOST:PORT --job=ID [--watchers=N]\n");
    return 2;
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_timeout_seconds));

  std::vector<std::unique_ptr<v1::JobService::Stub>> stubs;
  for (int c = 0; c < num_channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("logp.watch_many.channel", c);  // distinct arguments: a connection of its own
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(-1);
    stubs.push_back(v1::JobService::NewStub(grpc::CreateCustomChannel(
        absl::GetFlag(FLAGS_server), grpc::InsecureChannelCredentials(), args)));
  }

  Tally tally;
  std::vector<std::unique_ptr<Watcher>> watchers;
  enum Kind { kFull, kMiddle, kLeaver };
  std::vector<Kind> kinds;
  for (int i = 0; i < n; ++i) {
    Kind kind = kFull;
    if (leave_every > 0 && i % leave_every == leave_every - 1) {
      kind = kLeaver;
    } else if (middle_every > 0 && i % middle_every == middle_every / 2) {
      kind = kMiddle;
    }
    kinds.push_back(kind);
    watchers.push_back(
        std::make_unique<Watcher>(job, kind == kMiddle ? absl::GetFlag(FLAGS_middle_seq) : 0,
                                  kind == kLeaver ? absl::GetFlag(FLAGS_leave_after) : 0, &tally));
  }
  const absl::Time t0 = absl::Now();
  for (int i = 0; i < n; ++i) watchers[i]->Start(stubs[i % num_channels].get());

  bool ok = true;
  if (tally.WaitStarted(n, deadline)) {
    const int open = n - tally.ended();
    std::printf("all %d streams started after %.2f s; %d open\n", n,
                absl::ToDoubleSeconds(absl::Now() - t0), open);
    std::fflush(stdout);
    if (const std::string f = absl::GetFlag(FLAGS_ready_file); !f.empty()) {
      std::ofstream(f + ".tmp") << open << "\n";
      std::rename((f + ".tmp").c_str(), f.c_str());
    }
  }
  if (!tally.WaitEnded(n, deadline)) {
    std::printf("FAIL: not every stream ended within the timeout; cancelling the rest\n");
    ok = false;
    for (auto& w : watchers) w->Cancel();
    tally.WaitEnded(n, absl::InfiniteFuture());
  }
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - t0);

  // The job's final state, once every stream has ended.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GetJobRequest get;
  get.set_id(job);
  v1::Job final_job;
  const grpc::Status got = stubs[0]->GetJob(&ctx, get, &final_job);
  if (!got.ok()) {
    std::printf("FAIL: GetJob: %s\n", got.error_message().c_str());
    return 1;
  }
  if (!IsFinal(final_job.state())) {
    std::printf("FAIL: job is %s after every stream ended\n",
                v1::JobState_Name(final_job.state()).c_str());
    ok = false;
  }

  int passed[3] = {0, 0, 0}, total[3] = {0, 0, 0}, reported = 0;
  int64_t events = 0;
  for (int i = 0; i < n; ++i) {
    ++total[kinds[i]];
    events += watchers[i]->received();
    const std::string error = watchers[i]->Check(final_job.last_seq(), final_job.state());
    if (error.empty()) {
      ++passed[kinds[i]];
    } else {
      ok = false;
      if (reported++ < 10) std::printf("FAIL: watcher %d: %s\n", i, error.c_str());
    }
  }
  std::printf(
      "job %s: %s, last_seq %lld\n"
      "%d watchers over %d channels, %lld events received in %.2f s\n"
      "  from the start: %d/%d ok\n  from seq %lld: %d/%d ok\n  left after %d events: %d/%d "
      "ok\n",
      job.c_str(), v1::JobState_Name(final_job.state()).c_str(),
      static_cast<long long>(final_job.last_seq()), n, num_channels, static_cast<long long>(events),
      elapsed, passed[kFull], total[kFull], static_cast<long long>(absl::GetFlag(FLAGS_middle_seq)),
      passed[kMiddle], total[kMiddle], absl::GetFlag(FLAGS_leave_after), passed[kLeaver],
      total[kLeaver]);
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace logp

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("watch_many --server=HOST:PORT --job=ID [flags]");
  absl::ParseCommandLine(argc, argv);
  return logp::Run();
}
