#include "server/metrics/process_metrics.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace logp {
namespace {

prometheus::MetricFamily Family(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(m);
  return f;
}

// Seconds since the epoch at which the system booted (/proc/stat's btime); -1 if unknown.
double BootTime() {
  std::ifstream in("/proc/stat");
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double t = -1;
      in >> t;
      return t;
    }
    std::getline(in, key);
  }
  return -1;
}

}  // namespace

std::vector<prometheus::MetricFamily> CollectProcessMetrics() {
  std::vector<prometheus::MetricFamily> out;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (ticks > 0 && std::getline(stat, line)) {
    // The fields after the command name, which is in parentheses and may hold spaces: the 3rd
    // field of the file is the state; utime and stime are the 14th and 15th, starttime the 22nd.
    const size_t close = line.rfind(')');
    if (close != std::string::npos) {
      std::istringstream fields(line.substr(close + 1));
      std::string field;
      double utime = -1, stime = -1, start = -1;
      for (int i = 3; fields >> field && i <= 22; ++i) {
        if (i == 14) utime = std::stod(field);
        if (i == 15) stime = std::stod(field);
        if (i == 22) start = std::stod(field);
      }
      if (utime >= 0 && stime >= 0) {
        out.push_back(Family("process_cpu_seconds_total",
                             "Total user and system CPU time spent in seconds.",
                             prometheus::MetricType::Counter, (utime + stime) / ticks));
      }
      if (const double boot = BootTime(); start >= 0 && boot >= 0) {
        out.push_back(Family("process_start_time_seconds",
                             "Start time of the process since unix epoch in seconds.",
                             prometheus::MetricType::Gauge, boot + start / ticks));
      }
    }
  }
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = -1;
  if (statm >> pages >> resident && resident >= 0) {
    out.push_back(Family("process_resident_memory_bytes", "Resident memory size in bytes.",
                         prometheus::MetricType::Gauge,
                         static_cast<double>(resident) * static_cast<double>(getpagesize())));
  }
  return out;
}

}  // namespace logp
