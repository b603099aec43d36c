#include "server/grpc/protobuf_log.h"

#include <glog/logging.h>
#include <google/protobuf/stubs/logging.h>

#include <string>

#include "absl/base/call_once.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace logp {
namespace {

struct Limiter {
  absl::Mutex mu;
  absl::Time window_start ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  int written_in_window ABSL_GUARDED_BY(mu) = 0;
  int64_t suppressed_in_window ABSL_GUARDED_BY(mu) = 0;
  ProtobufLogCounts totals ABSL_GUARDED_BY(mu);
};

Limiter& GetLimiter() {
  static Limiter* limiter = new Limiter();
  return *limiter;
}

google::LogSeverity ToGlog(google::protobuf::LogLevel level) {
  switch (level) {
    case google::protobuf::LOGLEVEL_INFO:
      return google::GLOG_INFO;
    case google::protobuf::LOGLEVEL_WARNING:
      return google::GLOG_WARNING;
    default:  // ERROR and FATAL (libprotobuf aborts after a FATAL line itself)
      return google::GLOG_ERROR;
  }
}

void HandleProtobufLog(google::protobuf::LogLevel level, const char* filename, int line,
                       const std::string& message) {
  Limiter& l = GetLimiter();
  int64_t suppressed_before = 0;
  {
    absl::MutexLock lock(&l.mu);
    const absl::Time now = absl::Now();
    if (now - l.window_start >= absl::Minutes(1)) {
      suppressed_before = l.suppressed_in_window;
      l.window_start = now;
      l.written_in_window = 0;
      l.suppressed_in_window = 0;
    }
    if (level != google::protobuf::LOGLEVEL_FATAL &&
        l.written_in_window >= kProtobufLogLinesPerMinute) {
      ++l.suppressed_in_window;
      ++l.totals.suppressed;
      return;
    }
    ++l.written_in_window;
    ++l.totals.written;
  }
  if (suppressed_before > 0) {
    LOG(WARNING) << "suppressed " << suppressed_before << " libprotobuf log lines (at most "
                 << kProtobufLogLinesPerMinute << " a minute)";
  }
  google::LogMessage(filename, line, ToGlog(level)).stream() << "libprotobuf: " << message;
}

}  // namespace

void RouteProtobufLogToGlog() {
  static absl::once_flag once;
  absl::call_once(once, [] { google::protobuf::SetLogHandler(&HandleProtobufLog); });
}

ProtobufLogCounts TEST_ProtobufLogCounts() {
  Limiter& l = GetLimiter();
  absl::MutexLock lock(&l.mu);
  return l.totals;
}

}  // namespace logp
