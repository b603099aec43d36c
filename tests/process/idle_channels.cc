// idle_channels: holds connected, idle channels to logpd until it is killed.
//
// Each channel has a connection of its own, makes one ListJobs call (so the connection is up and
// has served a call), then stays idle. An idle gRPC client reads from its connections only when
// its channel's backup poller runs (GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS, 5 s by default),
// so it notices a server's GOAWAY, and closes the connection, only then: a server must not wait
// for that. Run with a long interval, it never closes them by itself.
//
// Usage: idle_channels --server=HOST:PORT [--channels=20] [--ready_file=PATH]
// Writes the ready file once every channel has made its call; exits 1 if one cannot.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "logp/v1/job_service.grpc.pb.h"

ABSL_FLAG(std::string, server, "localhost:50051", "logpd address (host:port)");
ABSL_FLAG(int, channels, 20, "Channels (connections) to hold");
ABSL_FLAG(std::string, ready_file, "", "Written once every channel has made its call");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("idle_channels --server=HOST:PORT [--channels=N]");
  absl::ParseCommandLine(argc, argv);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int c = 0; c < absl::GetFlag(FLAGS_channels); ++c) {
    grpc::ChannelArguments args;
    args.SetInt("logp.idle_channels.channel", c);  // distinct arguments: a connection of its own
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channels.push_back(grpc::CreateCustomChannel(absl::GetFlag(FLAGS_server),
                                                 grpc::InsecureChannelCredentials(), args));
    auto stub = logp::v1::JobService::NewStub(channels.back());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    logp::v1::ListJobsResponse response;
    const grpc::Status s = stub->ListJobs(&ctx, logp::v1::ListJobsRequest(), &response);
    if (!s.ok()) {
      std::fprintf(stderr, "channel %d: ListJobs: %s\n", c, s.error_message().c_str());
      return 1;
    }
  }
  if (const std::string f = absl::GetFlag(FLAGS_ready_file); !f.empty()) {
    std::ofstream(f + ".tmp") << channels.size() << "\n";
    std::rename((f + ".tmp").c_str(), f.c_str());
  }
  std::printf("%zu channels idle\n", channels.size());
  std::fflush(stdout);
  while (true) std::this_thread::sleep_for(std::chrono::hours(1));
}
