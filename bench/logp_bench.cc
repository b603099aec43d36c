// logp_bench: the measurements of scripts/bench.sh that need C++ (LibTorch in one process, or
// liblogp_client over the network). Each invocation prints one JSON object on stdout.
//
//   logp_bench matmul-peak --threads=T [--n=2048] [--repeats=7]
//       fp32 GFLOP/s of at::mm on n x n matrices (2 n^3 FLOPs each), median of the repeats.
//   logp_bench train-flops --model_file=PATH
//       matrix-product FLOPs per record of one training step of that model's architecture, with
//       masked blocks skipped (logpd's default) and dense (logpd --block_products=false).
//   logp_bench score-inprocess --model_file=PATH --data=IDX.gz --batch=B --threads=T [--seconds=S]
//       records/s of Model::LogProb in this process, B records per call.
//   logp_bench score-client --server=ADDR --model=ID --data=IDX.gz --batch=B [--seconds=S]
//       records/s of Score through liblogp_client (Client::ScoreAll, one request of B records
//       per call).
//       --clients=C: C callers at once on one channel (a --server list: round robin)
//   logp_bench latency --server=ADDR --model=ID --data=IDX.gz [--n=1000]
//       single-record Score latency (ms): p50, p99, p99.9, max, and the calls over 10 and 50 ms,
//       over n sequential calls after a warm-up;
//       LOGP_TRACE_SLOW=1 prints each call over 10 ms with its time to stderr.
//   score-client and latency connect like logpctl: --tls, --tls_ca_file, --tls_cert_file,
//   --tls_key_file, --tls_server_name, --token (default $LOGP_TOKEN); see connection_flags.h.
//
// Data files are read like logpctl reads them (IDX, binarized: value > 127 is 1); records are
// cut into batches before timing. Rates are medians over windows of at least --window seconds,
// cycling through the batches until --seconds have passed and --min_windows windows are done.
//
// --threads sets LibTorch's intra-op threads. OpenBLAS (which LibTorch calls for fp32 matmuls on
// Debian) keeps its own pool that this does not limit; OPENBLAS_NUM_THREADS does.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "client/connection_flags.h"
#include "client/data_files.h"
#include "models/compute_threads.h"
#include "models/model.h"
#include "proto/cc/status_macros.h"
#include "server/core/file_system.h"

ABSL_FLAG(int, threads, 1, "LibTorch intra-op threads (matmul-peak, score-inprocess)");
ABSL_FLAG(int, n, 0, "matmul-peak: matrix size (default 2048); latency: calls (default 1000)");
ABSL_FLAG(int, repeats, 7, "matmul-peak: timed multiplications");
ABSL_FLAG(std::string, model_file, "", "score-inprocess: a model file (what Serialize wrote)");
ABSL_FLAG(std::string, data, "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
          "Records to score (IDX; binarized at 127)");
ABSL_FLAG(int64_t, max_records, 0, "Read at most this many records (0: all)");
ABSL_FLAG(int64_t, batch, 1000, "Records per LogProb call / Score request");
ABSL_FLAG(double, seconds, 3.0, "Least time spent measuring a rate");
ABSL_FLAG(double, window, 0.5, "Least seconds per rate window");
ABSL_FLAG(int, min_windows, 3, "Least rate windows");
ABSL_FLAG(std::string, server, "localhost:50051", "logpd address (score-client, latency)");
ABSL_FLAG(std::string, model, "", "Model id, or a job id (score-client, latency)");
ABSL_FLAG(int, warmup, 20, "latency: untimed calls first");
ABSL_FLAG(int, clients, 1,
          "score-client: concurrent callers on one channel (a --server list spreads them round "
          "robin over the servers)");

namespace logp {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double Median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// Nearest-rank percentile (q in (0, 1]) of a sorted vector.
double Percentile(const std::vector<double>& sorted, double q) {
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size(), std::max<size_t>(rank, 1)) - 1];
}

// A flat JSON object, printed in insertion order.
class JsonLine {
 public:
  JsonLine& Add(const std::string& key, double v) {
    fields_.push_back(absl::StrFormat("\"%s\": %.6g", key, v));
    return *this;
  }
  JsonLine& Add(const std::string& key, int64_t v) {
    fields_.push_back(absl::StrFormat("\"%s\": %d", key, v));
    return *this;
  }
  JsonLine& Add(const std::string& key, const std::string& v) {
    fields_.push_back(absl::StrFormat("\"%s\": \"%s\"", key, v));
    return *this;
  }
  void Print() const { std::printf("{%s}\n", absl::StrJoin(fields_, ", ").c_str()); }

 private:
  std::vector<std::string> fields_;
};

JsonLine Common(const std::string& mode) {
  const char* blas = std::getenv("OPENBLAS_NUM_THREADS");
  JsonLine j;
  j.Add("mode", mode).Add("openblas_num_threads", std::string(blas ? blas : "unset"));
  return j;
}

// The data file's records, binarized at 127, cut into batches of `batch` rows (the last may be
// shorter).
absl::StatusOr<std::vector<RecordMatrix>> LoadBatches(int64_t batch, int64_t* total) {
  if (batch < 1) return absl::InvalidArgumentError("--batch must be >= 1");
  ReadOptions options;
  options.kind = v1::DATA_KIND_BINARY;
  options.binarize_threshold = 127;
  options.max_records = absl::GetFlag(FLAGS_max_records);
  ASSIGN_OR_RETURN(RecordMatrix all, ReadIdx(absl::GetFlag(FLAGS_data), options));
  *total = all.rows;
  std::vector<RecordMatrix> batches;
  for (int64_t b = 0; b < all.rows; b += batch) {
    ASSIGN_OR_RETURN(RecordMatrix m, RecordMatrix::Empty(all.kind, all.cols, all.num_categories));
    const int64_t e = std::min(all.rows, b + batch);
    m.Reserve(e - b);
    for (int64_t r = b; r < e; ++r) m.AppendRow(all, r);
    batches.push_back(std::move(m));
  }
  return batches;
}

struct Rate {
  double records_per_second = 0;  // median over windows
  double overall = 0;             // all records / all time
  int64_t windows = 0;
  int64_t records = 0;
};

// Calls `step(i)` for i = 0, 1, 2, ... (it returns the records it handled, or an error) in
// windows of at least --window seconds, until --seconds have passed and --min_windows windows
// are complete.
absl::StatusOr<Rate> MeasureRate(const std::function<absl::StatusOr<int64_t>(int64_t)>& step) {
  const double least = absl::GetFlag(FLAGS_seconds), window = absl::GetFlag(FLAGS_window);
  const int min_windows = absl::GetFlag(FLAGS_min_windows);
  std::vector<double> rates;
  Rate r;
  const auto start = Clock::now();
  auto w_start = start;
  int64_t w_records = 0;
  for (int64_t i = 0;; ++i) {
    ASSIGN_OR_RETURN(int64_t n, step(i));
    w_records += n;
    r.records += n;
    const double w = SecondsSince(w_start);
    if (w >= window) {
      rates.push_back(static_cast<double>(w_records) / w);
      w_start = Clock::now();
      w_records = 0;
      if (static_cast<int>(rates.size()) >= min_windows && SecondsSince(start) >= least) break;
    }
  }
  r.records_per_second = Median(rates);
  r.overall = static_cast<double>(r.records) / SecondsSince(start);
  r.windows = static_cast<int64_t>(rates.size());
  return r;
}

absl::Status MatmulPeak() {
  const int threads = absl::GetFlag(FLAGS_threads);
  SetComputeThreads(threads);
  const int64_t n = absl::GetFlag(FLAGS_n) > 0 ? absl::GetFlag(FLAGS_n) : 2048;
  const int repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  try {
    at::Tensor a = at::randn({n, n}), b = at::randn({n, n});
    at::mm(a, b);  // warm-up: thread pools, page faults
    std::vector<double> gflops;
    for (int i = 0; i < repeats; ++i) {
      const auto t0 = Clock::now();
      at::Tensor c = at::mm(a, b);
      gflops.push_back(2.0 * n * n * n / SecondsSince(t0) / 1e9);
    }
    Common("matmul-peak")
        .Add("n", n)
        .Add("repeats", static_cast<int64_t>(repeats))
        .Add("threads", static_cast<int64_t>(at::get_num_threads()))
        .Add("gflops_per_second", Median(gflops))
        .Add("gflops_per_second_max", *std::max_element(gflops.begin(), gflops.end()))
        .Print();
  } catch (const std::exception& e) {
    return absl::InternalError(e.what());
  }
  return absl::OkStatus();
}

// A model file as logpd's model store writes it: the LOGPSUM1 checksum frame around
// Model::Serialize's bytes (files older than frames start with LOGPMDL1 and are read as they are).
absl::StatusOr<std::unique_ptr<Model>> ReadModelFile() {
  const std::string path = absl::GetFlag(FLAGS_model_file);
  ASSIGN_OR_RETURN(std::string bytes,
                   ReadChecksummedFile(FileSystem::Default(), path,
                                       absl::StrCat("--model_file '", path, "'"), {"LOGPMDL1"}));
  return Model::Deserialize(bytes);
}

absl::Status TrainFlops() {
  ASSIGN_OR_RETURN(std::unique_ptr<Model> model, ReadModelFile());
  Common("train-flops")
      .Add("flops_per_record_blocks", model->TrainingFlopsPerRecord(true))
      .Add("flops_per_record_dense", model->TrainingFlopsPerRecord(false))
      .Print();
  return absl::OkStatus();
}

absl::Status ScoreInProcess() {
  SetComputeThreads(absl::GetFlag(FLAGS_threads));
  ASSIGN_OR_RETURN(std::unique_ptr<Model> model, ReadModelFile());
  const int64_t batch = absl::GetFlag(FLAGS_batch);
  int64_t total = 0;
  ASSIGN_OR_RETURN(std::vector<RecordMatrix> batches, LoadBatches(batch, &total));
  double sum = 0;
  int64_t scored = 0;
  ASSIGN_OR_RETURN(Rate rate, MeasureRate([&](int64_t i) -> absl::StatusOr<int64_t> {
                     const RecordMatrix& m = batches[i % batches.size()];
                     ASSIGN_OR_RETURN(std::vector<double> lp, model->LogProb(m));
                     for (double v : lp) sum += v;
                     scored += m.rows;
                     return m.rows;
                   }));
  Common("score-inprocess")
      .Add("batch", batch)
      .Add("threads", static_cast<int64_t>(at::get_num_threads()))
      .Add("records", total)
      .Add("records_per_second", rate.records_per_second)
      .Add("records_per_second_overall", rate.overall)
      .Add("windows", rate.windows)
      .Add("mean_log_prob", sum / static_cast<double>(scored))
      .Print();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Client>> ConnectFromFlags() {
  if (absl::GetFlag(FLAGS_model).empty()) return absl::InvalidArgumentError("--model is required");
  return Client::Connect(absl::GetFlag(FLAGS_server), ConnectionOptionsFromFlags());
}

// score-client with C callers at once for --seconds: records scored over the time taken.
absl::Status ScoreConcurrently(Client* client, const std::string& model,
                               const std::vector<RecordMatrix>& batches, int64_t batch,
                               int64_t total, int clients) {
  std::atomic<int64_t> records{0};
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  absl::Status failed;
  std::vector<std::thread> callers;
  const absl::Time t0 = absl::Now();
  for (int c = 0; c < clients; ++c) {
    callers.emplace_back([&, c] {
      for (size_t i = c; !stop.load(); ++i) {
        const RecordMatrix& m = batches[i % batches.size()];
        absl::StatusOr<v1::ScoreResponse> r = client->ScoreAll(model, m, ScoringOptions{}, batch);
        if (!r.ok()) {
          absl::MutexLock lock(&mu);
          failed = r.status();
          stop.store(true);
          return;
        }
        records += m.rows;
      }
    });
  }
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_seconds)));
  stop.store(true);
  for (auto& t : callers) t.join();
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - t0);
  RETURN_IF_ERROR(failed);
  Common("score-client")
      .Add("batch", batch)
      .Add("clients", static_cast<int64_t>(clients))
      .Add("records", total)
      .Add("records_per_second", static_cast<double>(records.load()) / elapsed)
      .Print();
  return absl::OkStatus();
}

absl::Status ScoreClient() {
  ASSIGN_OR_RETURN(std::unique_ptr<Client> client, ConnectFromFlags());
  const std::string model = absl::GetFlag(FLAGS_model);
  const int64_t batch = absl::GetFlag(FLAGS_batch);
  int64_t total = 0;
  ASSIGN_OR_RETURN(std::vector<RecordMatrix> batches, LoadBatches(batch, &total));
  // One untimed request: connection setup and the server's model load.
  RETURN_IF_ERROR(client->ScoreAll(model, batches[0], ScoringOptions{}, batch).status());
  const int clients = absl::GetFlag(FLAGS_clients);
  if (clients > 1) return ScoreConcurrently(client.get(), model, batches, batch, total, clients);
  double sum = 0;
  int64_t scored = 0;
  ASSIGN_OR_RETURN(Rate rate, MeasureRate([&](int64_t i) -> absl::StatusOr<int64_t> {
                     const RecordMatrix& m = batches[i % batches.size()];
                     ASSIGN_OR_RETURN(v1::ScoreResponse r,
                                      client->ScoreAll(model, m, ScoringOptions{}, batch));
                     for (double v : r.log_prob()) sum += v;
                     scored += m.rows;
                     return m.rows;
                   }));
  Common("score-client")
      .Add("batch", batch)
      .Add("records", total)
      .Add("records_per_second", rate.records_per_second)
      .Add("records_per_second_overall", rate.overall)
      .Add("windows", rate.windows)
      .Add("mean_log_prob", sum / static_cast<double>(scored))
      .Print();
  return absl::OkStatus();
}

absl::Status Latency() {
  ASSIGN_OR_RETURN(std::unique_ptr<Client> client, ConnectFromFlags());
  const std::string model = absl::GetFlag(FLAGS_model);
  const int n = absl::GetFlag(FLAGS_n) > 0 ? absl::GetFlag(FLAGS_n) : 1000;
  int64_t total = 0;
  ASSIGN_OR_RETURN(std::vector<RecordMatrix> records, LoadBatches(1, &total));
  std::vector<double> ms;
  const int warmup = std::max(0, absl::GetFlag(FLAGS_warmup));
  for (int i = 0; i < warmup + n; ++i) {
    const auto t0 = Clock::now();
    RETURN_IF_ERROR(
        client->ScoreAll(model, records[i % records.size()], ScoringOptions{}, 1).status());
    if (i >= warmup) ms.push_back(1e3 * SecondsSince(t0));
    if (getenv("LOGP_TRACE_SLOW") && i >= warmup && ms.back() > 10) {
      std::fprintf(stderr, "slow call %d: %.1f ms at %.3f\n", i, ms.back(),
                   std::chrono::duration<double>(Clock::now().time_since_epoch()).count());
    }
  }
  std::sort(ms.begin(), ms.end());
  double mean = 0;
  for (double v : ms) mean += v / static_cast<double>(ms.size());
  Common("latency")
      .Add("calls", static_cast<int64_t>(n))
      .Add("p50_ms", Percentile(ms, 0.5))
      .Add("p99_ms", Percentile(ms, 0.99))
      .Add("p999_ms", Percentile(ms, 0.999))
      .Add("max_ms", ms.back())
      .Add("over_10ms",
           static_cast<int64_t>(ms.end() - std::upper_bound(ms.begin(), ms.end(), 10.0)))
      .Add("over_50ms",
           static_cast<int64_t>(ms.end() - std::upper_bound(ms.begin(), ms.end(), 50.0)))
      .Add("mean_ms", mean)
      .Print();
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "logp_bench matmul-peak|train-flops|score-inprocess|score-client|latency [flags]; see "
      "bench/"
      "logp_bench.cc");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::fprintf(stderr, "usage: %s\n", absl::ProgramUsageMessage().data());
    return 2;
  }
  const std::string mode = args[1];
  absl::Status st;
  if (mode == "matmul-peak") {
    st = MatmulPeak();
  } else if (mode == "train-flops") {
    st = TrainFlops();
  } else if (mode == "score-inprocess") {
    st = ScoreInProcess();
  } else if (mode == "score-client") {
    st = ScoreClient();
  } else if (mode == "latency") {
    st = Latency();
  } else {
    std::fprintf(stderr, "unknown mode '%s'\nusage: %s\n", mode.c_str(),
                 absl::ProgramUsageMessage().data());
    return 2;
  }
  if (!st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace logp

int main(int argc, char** argv) { return logp::Main(argc, argv); }
