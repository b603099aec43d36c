// nade_bench: NADE's training and scoring throughput in process, the hand-written pass
// (models/families/nade_kernels.h) against the previous path (autograd through the recurrence
// for training, the recurrence for scoring), in paired rounds. Prints one JSON line per
// measurement: {"measure": "train"|"score", "path": "kernels"|"autograd", "records_per_second"}.
//   nade_bench [--data=IDX.gz] [--records=N] [--hidden=500] [--batch=100] [--score_batch=1000]
//              [--threads=1] [--seconds=S] [--rounds=R]
// Data: the first N records of the file, binarized at 127. Training steps include the Adam
// update (FusedAdam, as the trainer); scoring runs in eval mode without gradients.
#include <absl/flags/flag.h>
#include <absl/flags/parse.h>

#include <chrono>
#include <cstdio>
#include <functional>

#include "client/data_files.h"
#include "models/compute_threads.h"
#include "models/density_net.h"
#include "models/families/nade.h"
#include "models/fused_adam.h"
#include "models/model.h"

ABSL_FLAG(std::string, data, "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
          "IDX images, binarized at 127");
ABSL_FLAG(int64_t, records, 5000, "records read from --data");
ABSL_FLAG(int64_t, hidden, 500, "NADE hidden units");
ABSL_FLAG(int64_t, batch, 100, "training batch");
ABSL_FLAG(int64_t, score_batch, 1000, "scoring batch");
ABSL_FLAG(int, threads, 1, "LibTorch intra-op threads");
ABSL_FLAG(double, seconds, 3, "time per measurement (at least two steps)");
ABSL_FLAG(int, rounds, 3, "paired rounds (kernels, then autograd)");

namespace logp {
namespace {

using Clock = std::chrono::steady_clock;

// Records per second of `step(i)` (returning its records) over at least --seconds and 2 calls,
// after one untimed call.
double Rate(const std::function<int64_t(int64_t)>& step) {
  step(0);
  const auto start = Clock::now();
  int64_t records = 0, i = 1;
  double elapsed = 0;
  while (i < 3 || elapsed < absl::GetFlag(FLAGS_seconds)) {
    records += step(i++);
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  }
  return static_cast<double>(records) / elapsed;
}

void Print(const char* measure, const char* path, double rate) {
  std::printf("{\"measure\": \"%s\", \"path\": \"%s\", \"records_per_second\": %.6g}\n", measure,
              path, rate);
  std::fflush(stdout);
}

int Run() {
  SetComputeThreads(absl::GetFlag(FLAGS_threads));
  ReadOptions options;
  options.kind = v1::DATA_KIND_BINARY;
  options.binarize_threshold = 127;
  options.max_records = absl::GetFlag(FLAGS_records);
  auto data = ReadIdx(absl::GetFlag(FLAGS_data), options);
  if (!data.ok()) {
    std::fprintf(stderr, "%s\n", data.status().ToString().c_str());
    return 1;
  }
  const torch::Tensor x = RecordsToTensor(*data);
  const int64_t n = x.size(0), dim = x.size(1);
  v1::ModelSpec spec;
  spec.set_family(v1::MODEL_FAMILY_NADE);
  spec.mutable_nade()->set_hidden_units(absl::GetFlag(FLAGS_hidden));
  spec.mutable_nade()->set_order(v1::VARIABLE_ORDER_NATURAL);
  auto model = Model::Create(spec, {v1::DATA_KIND_BINARY, dim, 2}, 1);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  auto& nade = dynamic_cast<NadeImpl&>(NetOf(**model));
  const int64_t batch = absl::GetFlag(FLAGS_batch), score_batch = absl::GetFlag(FLAGS_score_batch);
  FusedAdam opt(nade.parameters(), torch::optim::AdamOptions(1e-3));
  auto train_step = [&](int64_t i) {
    const int64_t b = (i * batch) % std::max<int64_t>(1, n - batch + 1);
    const torch::Tensor xb = x.slice(0, b, b + batch);
    torch::Tensor loss = nade.LossAndGradients(xb);
    if (!loss.defined()) {
      for (auto& p : nade.parameters()) p.mutable_grad().reset();
      loss = nade.Loss(xb);
      loss.backward();
    }
    opt.step();
    return xb.size(0);
  };
  auto score_step = [&](int64_t i) {
    const int64_t b = (i * score_batch) % std::max<int64_t>(1, n - score_batch + 1);
    const torch::Tensor xb = x.slice(0, b, b + score_batch);
    torch::InferenceMode guard;
    return nade.LogProb(xb).size(0);
  };
  for (int r = 0; r < absl::GetFlag(FLAGS_rounds); ++r) {
    for (const bool kernels : {true, false}) {
      nade.set_use_kernels(kernels);
      const char* path = kernels ? "kernels" : "autograd";
      nade.train();
      Print("train", path, Rate(train_step));
      nade.eval();
      Print("score", path, Rate(score_step));
    }
  }
  return 0;
}

}  // namespace
}  // namespace logp

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return logp::Run();
}
