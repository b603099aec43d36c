// score_load: a closed-loop load generator for small Score calls (bench/serving.sh). N clients
// each keep one Score call of --records_per_call records in flight, sending the next as soon as
// the last one answers, for --seconds after --warmup_seconds. gRPC's async API: --cq_threads
// threads drive all the clients (a thread per client would spend the 2 vCPUs the server needs
// on context switches). Prints one JSON line: calls/s and records/s over the timed window, and
// latency percentiles (nearest rank) of the calls that started and ended in it.
//
//   score_load --server=HOST:PORT --model=ID [--clients=32] [--channels=0] [--seconds=5]
//
// --channels: TCP connections the clients share round robin (0: one per client, as separate
// client processes would have). Records: --data (IDX, binarized at 127, as logp_bench).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "client/data_files.h"
#include "logp/v1/model_service.grpc.pb.h"
#include "proto/cc/records.h"

ABSL_FLAG(std::string, server, "localhost:50051", "logpd address");
ABSL_FLAG(std::string, model, "", "Model id (or a job id, 'job-...')");
ABSL_FLAG(std::string, data, "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
          "Records to send (IDX; binarized at 127); the first --distinct_records are used");
ABSL_FLAG(int, distinct_records, 1000, "Different requests cycled through");
ABSL_FLAG(int, records_per_call, 1, "Records per Score request");
ABSL_FLAG(int, clients, 32, "Concurrent callers, each with one call in flight");
ABSL_FLAG(int, channels, 0, "TCP connections shared round robin (0: one per client)");
ABSL_FLAG(int, cq_threads, 1, "Threads driving the calls");
ABSL_FLAG(double, seconds, 5, "Timed window");
ABSL_FLAG(double, warmup_seconds, 1, "Untimed load first");
ABSL_FLAG(double, deadline_ms, 0, "Per-call deadline (0: none)");
ABSL_FLAG(std::string, token, "", "Bearer token (default: none)");

namespace logp {
namespace {

using Clock = std::chrono::steady_clock;

struct Call {
  int client = 0;
  Clock::time_point start;
  grpc::ClientContext context;
  v1::ScoreResponse response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::ScoreResponse>> reader;
};

// What one driver thread saw in the timed window.
struct Tally {
  std::vector<double> latency_ms;
  int64_t calls = 0, records = 0;
  std::map<int, int64_t> errors;  // by gRPC code, whole run
  std::string first_error;
};

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return std::nan("");
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size(), std::max<size_t>(rank, 1)) - 1];
}

int Run() {
  const std::string model = absl::GetFlag(FLAGS_model);
  if (model.empty()) {
    std::fprintf(stderr, "--model is required\n");
    return 2;
  }
  const int clients = std::max(1, absl::GetFlag(FLAGS_clients));
  const int per_call = std::max(1, absl::GetFlag(FLAGS_records_per_call));
  ReadOptions read;
  read.kind = v1::DATA_KIND_BINARY;
  read.binarize_threshold = 127;
  read.max_records = static_cast<int64_t>(absl::GetFlag(FLAGS_distinct_records)) * per_call;
  absl::StatusOr<RecordMatrix> data = ReadIdx(absl::GetFlag(FLAGS_data), read);
  if (!data.ok()) {
    std::fprintf(stderr, "%s\n", data.status().ToString().c_str());
    return 2;
  }
  std::vector<v1::ScoreRequest> requests;
  for (int64_t r = 0; r + per_call <= data->rows; r += per_call) {
    v1::ScoreRequest q;
    q.set_model_id(model);
    *q.mutable_records() = Encode(*data, r, r + per_call);
    requests.push_back(std::move(q));
  }
  if (requests.empty()) {
    std::fprintf(stderr, "no records in --data\n");
    return 2;
  }

  const int num_channels = absl::GetFlag(FLAGS_channels) > 0
                               ? std::min(absl::GetFlag(FLAGS_channels), clients)
                               : clients;
  std::vector<std::unique_ptr<v1::ModelService::Stub>> stubs;
  for (int c = 0; c < num_channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("logp.score_load.channel", c);  // distinct arguments: a connection of its own
    args.SetMaxReceiveMessageSize(64 << 20);
    stubs.push_back(v1::ModelService::NewStub(grpc::CreateCustomChannel(
        absl::GetFlag(FLAGS_server), grpc::InsecureChannelCredentials(), args)));
  }
  const std::string token = absl::GetFlag(FLAGS_token);
  const double deadline_ms = absl::GetFlag(FLAGS_deadline_ms);

  const auto t0 = Clock::now();
  const auto timed_start =
      t0 + std::chrono::duration_cast<Clock::duration>(
               std::chrono::duration<double>(absl::GetFlag(FLAGS_warmup_seconds)));
  const auto timed_end =
      timed_start + std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double>(absl::GetFlag(FLAGS_seconds)));

  const int threads = std::max(1, std::min(absl::GetFlag(FLAGS_cq_threads), clients));
  std::vector<Tally> tallies(threads);
  std::vector<std::thread> drivers;
  for (int t = 0; t < threads; ++t) {
    drivers.emplace_back([&, t] {
      Tally& tally = tallies[t];
      grpc::CompletionQueue cq;
      std::vector<size_t> next(clients, 0);
      auto start = [&](int client) {
        auto* call = new Call;
        call->client = client;
        if (!token.empty()) call->context.AddMetadata("authorization", "Bearer " + token);
        if (deadline_ms > 0) {
          call->context.set_deadline(
              std::chrono::system_clock::now() +
              std::chrono::microseconds(static_cast<int64_t>(deadline_ms * 1000)));
        }
        const v1::ScoreRequest& q =
            requests[(static_cast<size_t>(client) * 7919 + next[client]++) % requests.size()];
        call->start = Clock::now();
        call->reader = stubs[client % stubs.size()]->PrepareAsyncScore(&call->context, q, &cq);
        call->reader->StartCall();
        call->reader->Finish(&call->response, &call->status, call);
      };
      int in_flight = 0;
      for (int c = t; c < clients; c += threads, ++in_flight) start(c);
      while (in_flight > 0) {
        void* tag = nullptr;
        bool ok = false;
        if (!cq.Next(&tag, &ok)) break;
        std::unique_ptr<Call> call(static_cast<Call*>(tag));
        --in_flight;
        const auto end = Clock::now();
        if (!call->status.ok()) {
          if (tally.errors[call->status.error_code()]++ == 0 && tally.first_error.empty()) {
            tally.first_error = call->status.error_message();
          }
        } else if (call->start >= timed_start && end <= timed_end) {
          tally.latency_ms.push_back(
              std::chrono::duration<double, std::milli>(end - call->start).count());
          ++tally.calls;
          tally.records += call->response.log_prob_size();
        }
        if (end < timed_end) {
          start(call->client);
          ++in_flight;
        }
      }
      cq.Shutdown();
      void* tag;
      bool ok;
      while (cq.Next(&tag, &ok)) {
      }
    });
  }
  for (auto& d : drivers) d.join();

  Tally all;
  for (Tally& t : tallies) {
    all.latency_ms.insert(all.latency_ms.end(), t.latency_ms.begin(), t.latency_ms.end());
    all.calls += t.calls;
    all.records += t.records;
    for (auto [code, n] : t.errors) all.errors[code] += n;
    if (all.first_error.empty()) all.first_error = t.first_error;
  }
  std::sort(all.latency_ms.begin(), all.latency_ms.end());
  const double seconds = absl::GetFlag(FLAGS_seconds);
  int64_t errors = 0;
  std::vector<std::string> by_code;
  for (auto [code, n] : all.errors) {
    errors += n;
    by_code.push_back(absl::StrFormat("\"%d\": %d", code, n));
  }
  if (!all.first_error.empty()) std::fprintf(stderr, "first error: %s\n", all.first_error.c_str());
  std::printf(
      "{\"mode\": \"score-load\", \"clients\": %d, \"channels\": %d, \"records_per_call\": %d, "
      "\"seconds\": %.3g, \"calls\": %d, \"calls_per_second\": %.6g, \"records_per_second\": "
      "%.6g, \"p50_ms\": %.4g, \"p99_ms\": %.4g, \"p999_ms\": %.4g, \"max_ms\": %.4g, "
      "\"errors\": %d, \"errors_by_code\": {%s}}\n",
      clients, num_channels, per_call, seconds, static_cast<int>(all.calls),
      static_cast<double>(all.calls) / seconds, static_cast<double>(all.records) / seconds,
      Percentile(all.latency_ms, 0.5), Percentile(all.latency_ms, 0.99),
      Percentile(all.latency_ms, 0.999),
      all.latency_ms.empty() ? std::nan("") : all.latency_ms.back(), static_cast<int>(errors),
      absl::StrJoin(by_code, ", ").c_str());
  return all.calls > 0 ? 0 : 1;
}

}  // namespace
}  // namespace logp

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("score_load --server=HOST:PORT --model=ID [--clients=N] ...");
  absl::ParseCommandLine(argc, argv);
  return logp::Run();
}
