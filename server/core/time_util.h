// Conversions between absl::Time and google.protobuf.Timestamp.
#ifndef LOGP_SERVER_CORE_TIME_UTIL_H_
#define LOGP_SERVER_CORE_TIME_UTIL_H_

#include <google/protobuf/timestamp.pb.h>

#include "absl/time/time.h"

namespace logp {

inline google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t ns = absl::ToUnixNanos(t);
  ts.set_seconds(ns / 1000000000);
  ts.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return ts;
}

}  // namespace logp

#endif  // LOGP_SERVER_CORE_TIME_UTIL_H_
