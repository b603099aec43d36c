// RpcMetrics: logp_rpc_requests_total and logp_rpc_duration_seconds (see server_metrics.h), kept
// by a gRPC server interceptor. Each call is timed from POST_RECV_INITIAL_METADATA to
// PRE_SEND_STATUS, where its status code is read (GetSendStatus); sync, streaming and callback
// methods alike. A call whose interceptor is destroyed without a status having been sent counts
// as CANCELLED.
//
// Labels stay bounded: the method label is one of the methods logpd serves (its three services,
// health, reflection) or "other"; the code label one of gRPC's 17 codes. The series of a
// (method, code) pair is made at its first call, then found without a lock.
//
// Thread-safety: interceptors of any number of calls may run concurrently.
#ifndef LOGP_SERVER_METRICS_RPC_METRICS_H_
#define LOGP_SERVER_METRICS_RPC_METRICS_H_

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace logp {

// The bucket bounds of logp_rpc_duration_seconds: 0.25 ms to 60 s.
const prometheus::Histogram::BucketBoundaries& RpcDurationBuckets();

class RpcMetrics {
 public:
  // Registers the two families with `registry`, which must outlive this object.
  explicit RpcMetrics(prometheus::Registry* registry);

  // The series of one method, made on first use per status code.
  class Method {
   public:
    Method(RpcMetrics* metrics, std::string name) : metrics_(metrics), name_(std::move(name)) {}
    // Counts one call that ended with `code` after `seconds`.
    void Record(grpc::StatusCode code, double seconds);

   private:
    static constexpr int kCodes = 17;  // grpc::StatusCode 0..16
    RpcMetrics* const metrics_;
    const std::string name_;
    std::array<std::atomic<prometheus::Counter*>, kCodes> counters_{};
    std::array<std::atomic<prometheus::Histogram*>, kCodes> durations_{};
  };

  // The series of `method` (a full name, "/package.Service/Method"); "other" for any name that is
  // not a method logpd serves, and for null.
  Method* Find(const char* method);

  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& durations_;
  // Immutable after construction.
  std::map<std::string, std::unique_ptr<Method>, std::less<>> methods_;
  std::unique_ptr<Method> other_;
};

}  // namespace logp

#endif  // LOGP_SERVER_METRICS_RPC_METRICS_H_
