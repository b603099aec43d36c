#include "server/metrics/rpc_metrics.h"

#include <chrono>
#include <utility>

#include "logp/v1/dataset_service.pb.h"
#include "logp/v1/job_service.pb.h"
#include "logp/v1/model_service.pb.h"

namespace logp {
namespace {

// gRPC's code names, indexed by grpc::StatusCode.
constexpr const char* kCodeNames[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};
static_assert(sizeof(kCodeNames) / sizeof(kCodeNames[0]) == 17);

// Methods served besides logp's own services.
constexpr const char* kOtherServedMethods[] = {
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
};

using Clock = std::chrono::steady_clock;

// One call's interceptor: times it and counts its status.
class RpcInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit RpcInterceptor(RpcMetrics::Method* method) : method_(method), start_(Clock::now()) {}
  ~RpcInterceptor() override {
    if (!recorded_) Record(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      start_ = Clock::now();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) &&
        !recorded_) {
      Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Record(grpc::StatusCode code) {
    recorded_ = true;
    method_->Record(code, std::chrono::duration<double>(Clock::now() - start_).count());
  }

  RpcMetrics::Method* const method_;
  // A call's interception points run one at a time.
  Clock::time_point start_;
  bool recorded_ = false;
};

class RpcInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcInterceptorFactory(RpcMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RpcInterceptor(metrics_->Find(info->method()));
  }

 private:
  RpcMetrics* const metrics_;
};

}  // namespace

const prometheus::Histogram::BucketBoundaries& RpcDurationBuckets() {
  static const auto* const kBuckets = new prometheus::Histogram::BucketBoundaries{
      0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
  return *kBuckets;
}

RpcMetrics::RpcMetrics(prometheus::Registry* registry)
    : requests_(prometheus::BuildCounter()
                    .Name("logp_rpc_requests_total")
                    .Help("gRPC calls finished, by method and status code")
                    .Register(*registry)),
      durations_(prometheus::BuildHistogram()
                     .Name("logp_rpc_duration_seconds")
                     .Help("gRPC call latency, from its initial metadata to its status being "
                           "sent, by method and status code")
                     .Register(*registry)),
      other_(std::make_unique<Method>(this, "other")) {
  for (const google::protobuf::FileDescriptor* file :
       {v1::Dataset::descriptor()->file(), v1::Job::descriptor()->file(),
        v1::Model::descriptor()->file()}) {
    for (int s = 0; s < file->service_count(); ++s) {
      const google::protobuf::ServiceDescriptor* service = file->service(s);
      for (int m = 0; m < service->method_count(); ++m) {
        std::string name = "/" + service->full_name() + "/" + service->method(m)->name();
        methods_.emplace(name, std::make_unique<Method>(this, name));
      }
    }
  }
  for (const char* name : kOtherServedMethods) {
    methods_.emplace(name, std::make_unique<Method>(this, name));
  }
}

RpcMetrics::Method* RpcMetrics::Find(const char* method) {
  if (method == nullptr) return other_.get();
  auto it = methods_.find(std::string_view(method));
  return it == methods_.end() ? other_.get() : it->second.get();
}

void RpcMetrics::Method::Record(grpc::StatusCode code, double seconds) {
  int c = static_cast<int>(code);
  if (c < 0 || c >= kCodes) c = static_cast<int>(grpc::StatusCode::UNKNOWN);
  prometheus::Counter* counter = counters_[c].load(std::memory_order_acquire);
  prometheus::Histogram* duration = durations_[c].load(std::memory_order_acquire);
  if (counter == nullptr || duration == nullptr) {
    // First call with this code: Family::Add is locked, and returns the same series to threads
    // that race here.
    const prometheus::Labels labels = {{"method", name_}, {"code", kCodeNames[c]}};
    counter = &metrics_->requests_.Add(labels);
    duration = &metrics_->durations_.Add(labels, RpcDurationBuckets());
    counters_[c].store(counter, std::memory_order_release);
    durations_[c].store(duration, std::memory_order_release);
  }
  counter->Increment();
  duration->Observe(seconds);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
RpcMetrics::InterceptorFactory() {
  return std::make_unique<RpcInterceptorFactory>(this);
}

}  // namespace logp
