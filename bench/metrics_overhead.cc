// metrics_overhead: what the metrics interceptor adds to one call, without the network and the
// process noise of bench/metrics.sh. One process, one Core, two LogpServers on it: one with
// ServerMetrics' interceptor, one without. Calls JobService.GetJob on an unknown id (NOT_FOUND:
// a catalogue lookup, no model) over each server's in-process channel, in blocks of --calls
// sequential calls, alternating the servers block by block (--blocks of each); per block the
// median call time. Prints a markdown table: median of the block medians off and on, and their
// difference in microseconds. Measurement only, never a test.
//
//   metrics_overhead [--blocks=40] [--calls=500]
#include <glog/logging.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/time.h"
#include "logp/v1/job_service.grpc.pb.h"
#include "server/core/core.h"
#include "server/grpc/server.h"
#include "server/metrics/server_metrics.h"

ABSL_FLAG(int, blocks, 40, "Blocks of calls per server");
ABSL_FLAG(int, calls, 500, "Sequential calls per block");

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Median microseconds of `calls` GetJob calls through `stub`.
double Block(logp::v1::JobService::Stub* stub, int calls) {
  std::vector<double> us;
  for (int i = 0; i < calls; ++i) {
    grpc::ClientContext ctx;
    logp::v1::GetJobRequest req;
    req.set_id("job-unknown");
    logp::v1::Job job;
    const auto t0 = std::chrono::steady_clock::now();
    const grpc::Status st = stub->GetJob(&ctx, req, &job);
    us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    CHECK_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
  }
  return Median(us);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  char tmpl[] = "/tmp/logp-metrics-overhead-XXXXXX";
  CHECK(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  logp::CoreOptions options;
  options.data_dir = dir;
  auto core = logp::Core::Open(options);
  CHECK(core.ok()) << core.status();
  auto metrics = std::make_unique<logp::ServerMetrics>(core->get());
  logp::ServerOptions off_options;
  off_options.listen_address = "127.0.0.1:0";
  logp::ServerOptions on_options = off_options;
  on_options.interceptors.push_back([m = metrics.get()] { return m->InterceptorFactory(); });
  auto off = logp::LogpServer::Start(core->get(), off_options);
  auto on = logp::LogpServer::Start(core->get(), on_options);
  CHECK(off.ok() && on.ok());
  auto off_stub = logp::v1::JobService::NewStub((*off)->InProcessChannel());
  auto on_stub = logp::v1::JobService::NewStub((*on)->InProcessChannel());
  const int blocks = absl::GetFlag(FLAGS_blocks), calls = absl::GetFlag(FLAGS_calls);
  Block(off_stub.get(), calls);  // warm-up
  Block(on_stub.get(), calls);
  std::vector<double> off_us, on_us, diff_us;
  for (int b = 0; b < blocks; ++b) {
    double o, n;
    if (b % 2 == 0) {
      o = Block(off_stub.get(), calls);
      n = Block(on_stub.get(), calls);
    } else {
      n = Block(on_stub.get(), calls);
      o = Block(off_stub.get(), calls);
    }
    off_us.push_back(o);
    on_us.push_back(n);
    diff_us.push_back(n - o);
  }
  std::printf("blocks: %d of %d sequential GetJob (NOT_FOUND) calls per server, in-process\n\n",
              blocks, calls);
  std::printf("| measure | metrics off | metrics on | on − off |\n|---|---|---|---|\n");
  std::printf("| GetJob call, median of block medians (µs) | %.1f | %.1f | %+.1f |\n",
              Median(off_us), Median(on_us), Median(diff_us));
  (*on)->Shutdown(absl::Seconds(1));
  (*off)->Shutdown(absl::Seconds(1));
  on->reset();
  off->reset();
  metrics.reset();
  core->reset();
  system(("rm -rf " + dir).c_str());
  return 0;
}
