// ServerMetrics: logpd's Prometheus metrics, rendered by Scrape in the text exposition format
// 0.0.4 (what an HTTP server answers at /metrics). Counters and histograms are updated as things
// happen (RPCs through InterceptorFactory's interceptors, checkpoint writes through the job
// manager's CheckpointListener); gauges are computed at each scrape from the catalogue, the job
// manager, the model store and /proc/self.
//
// The metrics (labels in braces):
//   logp_rpc_requests_total{method,code}         counter   gRPC calls finished, by full method
//       name ("/logp.v1.ModelService/Score"; "other" for a method the server does not serve) and
//       status code name ("OK", "NOT_FOUND", ...). A call the client cancelled before the server
//       sent a status counts as CANCELLED.
//   logp_rpc_duration_seconds{method,code}       histogram from the call's initial metadata to its
//       status being sent (a stream: its whole life); buckets 0.25 ms to 60 s.
//   logp_job_queue_depth                         gauge     QUEUED jobs (every replica's).
//   logp_jobs{state,tenant}                      gauge     jobs in the catalogue by state
//       ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED") and owning tenant.
//   logp_job_step{job,tenant,family}             gauge     optimiser steps done, of each job
//       training on this replica ("family": e.g. "MODEL_FAMILY_MADE"). The series of a job
//       disappears when it stops training here, so the job id label stays bounded by the slots.
//   logp_job_samples_per_second{job,tenant,family} gauge   training records per second over the
//       job's newest progress interval.
//   logp_job_train_nll{job,tenant,family}        gauge     mean training NLL (nats per record)
//       over the newest progress interval.
//   logp_job_validation_nll{job,tenant,family}   gauge     validation NLL (nats per record) at the
//       end of the newest epoch; absent before the first epoch ends.
//   logp_checkpoint_write_duration_seconds       histogram time to write one checkpoint file
//       (temporary file, fsync, rename) on this replica, successful or not; buckets 1 ms to 60 s.
//   logp_checkpoint_write_failures_total         counter   checkpoint files not written.
//   logp_stored_bytes{tenant,kind}               gauge     stored bytes of the tenant's datasets
//       (kind "dataset") and models (kind "model"); their sum is what the stored_bytes quota
//       counts.
//   logp_models_loaded                           gauge     published models in the scoring cache.
//   process_cpu_seconds_total                    counter   user + system CPU time of logpd.
//   process_resident_memory_bytes                gauge     resident set size of logpd.
//   process_start_time_seconds                   gauge     process start, seconds since the epoch.
// Families whose source cannot be read at a scrape (the catalogue failing) are left out of it
// and the failure is logged.
//
// Cost: an RPC pays one lock-free lookup, one counter increment and one histogram observation
// (bench/metrics.sh measures it on Score). A scrape lists the catalogue's jobs, datasets and
// models (pages of 1000).
//
// Thread-safety: Scrape and the interceptors may run concurrently from any thread.
// Lifetime: `core` must outlive the ServerMetrics, and the ServerMetrics every server that uses
// its interceptor factories.
#ifndef LOGP_SERVER_METRICS_SERVER_METRICS_H_
#define LOGP_SERVER_METRICS_SERVER_METRICS_H_

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

#include "server/core/core.h"
#include "server/metrics/rpc_metrics.h"

namespace logp {

class ServerMetrics {
 public:
  // Registers a checkpoint listener with core->jobs() (removed by the destructor).
  explicit ServerMetrics(Core* core);
  ~ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // Every metric, in the Prometheus text format 0.0.4
  // (Content-Type: text/plain; version=0.0.4; charset=utf-8).
  std::string Scrape();

  // A factory of the interceptors that count and time RPCs, for ServerOptions::interceptors.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

  // The registry of the counters and histograms, for metrics other parts of logpd add (the HTTP
  // server's own); their names must not clash with the ones above.
  prometheus::Registry& registry() { return *registry_; }

 private:
  std::vector<prometheus::MetricFamily> CollectCatalog();
  std::vector<prometheus::MetricFamily> CollectRunningJobs();
  std::vector<prometheus::MetricFamily> CollectModelCache();

  Core* const core_;
  const std::shared_ptr<prometheus::Registry> registry_;
  RpcMetrics rpc_;
  prometheus::Histogram& checkpoint_write_seconds_;
  prometheus::Counter& checkpoint_write_failures_;
};

}  // namespace logp

#endif  // LOGP_SERVER_METRICS_SERVER_METRICS_H_
