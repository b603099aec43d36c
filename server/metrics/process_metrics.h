// The standard process metrics of Prometheus's client libraries, from /proc/self (Linux):
// process_cpu_seconds_total, process_resident_memory_bytes, process_start_time_seconds.
#ifndef LOGP_SERVER_METRICS_PROCESS_METRICS_H_
#define LOGP_SERVER_METRICS_PROCESS_METRICS_H_

#include <prometheus/metric_family.h>

#include <vector>

namespace logp {

// The families that could be read now (none of them when /proc/self cannot be read).
std::vector<prometheus::MetricFamily> CollectProcessMetrics();

}  // namespace logp

#endif  // LOGP_SERVER_METRICS_PROCESS_METRICS_H_
