// libprotobuf's log lines, rate-limited into glog.
//
// libprotobuf writes a line straight to stderr for every string field that is not UTF-8 in a
// message it parses: without a limit, any client could fill the server's log at will.
#ifndef LOGP_SERVER_GRPC_PROTOBUF_LOG_H_
#define LOGP_SERVER_GRPC_PROTOBUF_LOG_H_

#include <cstdint>

namespace logp {

// libprotobuf lines written per minute; later ones in the same minute are counted, and the
// count is logged with the first line of a later minute.
inline constexpr int kProtobufLogLinesPerMinute = 10;

// Routes libprotobuf's log (every level, process-wide) into glog at most
// kProtobufLogLinesPerMinute lines a minute; FATAL lines are always written. Idempotent and
// thread-safe; LogpServer::Start calls it.
void RouteProtobufLogToGlog();

struct ProtobufLogCounts {
  int64_t written = 0;     // lines passed on to glog
  int64_t suppressed = 0;  // lines dropped by the limit
};
// Totals since the process started (for tests).
ProtobufLogCounts TEST_ProtobufLogCounts();

}  // namespace logp

#endif  // LOGP_SERVER_GRPC_PROTOBUF_LOG_H_
