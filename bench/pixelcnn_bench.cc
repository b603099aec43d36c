// pixelcnn_bench: the PixelCNN family in this process (bench/pixelcnn.sh; issue 16, item 6), at
// 28 x 28 with the default architecture unless flags say otherwise, freshly initialised (cost
// does not depend on the weights):
//   train   training samples/s of Adam steps at --batch on random binary images (median of ~1 s
//           windows over --seconds), as the trainer runs them (Loss, backward, step);
//   sample  seconds for --n samples with the cached sampler (median of --runs), against the
//           full-forward-pass-per-pixel sampler on --old_n samples scaled per record, and the
//           seconds of one scoring pass over --n records (the least any sampler can cost: every
//           pixel's activations computed once).
// --profile prints torch's autograd profiler table of a few training steps to stderr.
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "models/compute_threads.h"
#include "models/density_net.h"
#include "models/families/pixelcnn.h"
#include "models/malloc_tuning.h"
#include "models/model.h"

ABSL_FLAG(int, threads, 2, "compute threads, as logpd's --compute_threads");
ABSL_FLAG(int64_t, batch, 64, "train: records per step");
ABSL_FLAG(double, seconds, 10, "train: least seconds measured");
ABSL_FLAG(int, channels, 48, "residual channels");
ABSL_FLAG(int, blocks, 10, "residual blocks");
ABSL_FLAG(int, hidden, 1248, "head units");
ABSL_FLAG(bool, batch_norm, true, "batch norm in the blocks");
ABSL_FLAG(int64_t, n, 1000, "sample: samples per timed call");
ABSL_FLAG(int64_t, old_n, 10, "sample: samples of the per-pixel reference sampler (0: skip)");
ABSL_FLAG(int, runs, 3, "sample: timed calls (median)");
ABSL_FLAG(bool, profile, false, "train: print the autograd profiler's table to stderr");

namespace logp {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::unique_ptr<Model> Make() {
  v1::ModelSpec spec;
  spec.set_family(v1::MODEL_FAMILY_PIXELCNN);
  auto* m = spec.mutable_pixelcnn();
  m->set_channels(absl::GetFlag(FLAGS_channels));
  m->set_residual_blocks(absl::GetFlag(FLAGS_blocks));
  m->set_hidden_units(absl::GetFlag(FLAGS_hidden));
  m->set_batch_norm(absl::GetFlag(FLAGS_batch_norm));
  auto model = Model::Create(spec, {v1::DATA_KIND_BINARY, 784, 2}, 1);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", std::string(model.status().message()).c_str());
    std::exit(2);
  }
  return std::move(*model);
}

void Train() {
  auto model = Make();
  DensityNet& net = NetOf(*model);
  net.train();
  const int64_t b = absl::GetFlag(FLAGS_batch);
  auto data = torch::rand({16, b, 784}).lt(0.3).to(torch::kFloat);
  torch::optim::Adam opt(net.parameters(), torch::optim::AdamOptions(1e-3));
  int64_t i = 0;
  auto step = [&] {
    opt.zero_grad();
    net.Loss(data[i++ % 16]).backward();
    opt.step();
  };
  for (int w = 0; w < 2; ++w) step();
  std::vector<double> rates;
  const auto start = Clock::now();
  while (Since(start) < absl::GetFlag(FLAGS_seconds) || rates.size() < 3) {
    const auto t = Clock::now();
    int64_t steps = 0;
    while (Since(t) < 1.0 || steps == 0) {
      step();
      ++steps;
    }
    rates.push_back(steps * b / Since(t));
  }
  std::printf("| pixelcnn train, batch %lld, %d threads, %lld parameters | %.1f samples/s |\n",
              static_cast<long long>(b), at::get_num_threads(),
              static_cast<long long>(model->NumParameters()), Median(rates));
  if (absl::GetFlag(FLAGS_profile)) {
    torch::autograd::profiler::RecordProfile guard(std::cerr);
    for (int k = 0; k < 3; ++k) step();
  }
}

void Sample() {
  auto model = Make();
  auto& net = dynamic_cast<PixelCnnImpl&>(NetOf(*model));
  net.eval();
  torch::NoGradGuard no_grad;
  const int64_t n = absl::GetFlag(FLAGS_n), old_n = absl::GetFlag(FLAGS_old_n);
  at::Generator gen = at::detail::createCPUGenerator(1);
  std::vector<double> secs;
  for (int r = 0; r < absl::GetFlag(FLAGS_runs); ++r) {
    const auto t = Clock::now();
    net.Sample(n, gen);
    secs.push_back(Since(t));
  }
  auto x = torch::rand({n, 784}).lt(0.3).to(torch::kFloat);
  const auto t = Clock::now();
  for (int64_t s = 0; s < n; s += kEvalBatchRows) {
    net.LogProb(x.narrow(0, s, std::min(kEvalBatchRows, n - s)));
  }
  const double pass = Since(t);
  double old = 0;
  if (old_n > 0) {
    const auto t0 = Clock::now();
    net.ReferenceSampleWithUniforms(torch::rand({old_n, 784}));
    old = Since(t0) * n / old_n;
  }
  std::printf(
      "| pixelcnn %lld samples, %d threads | cached %.2f s | per-pixel passes %s | one "
      "scoring pass %.2f s |\n",
      static_cast<long long>(n), at::get_num_threads(), Median(secs),
      old_n > 0 ? absl::StrFormat("%.0f s (from %lld)", old, (long long)old_n).c_str() : "-", pass);
}

}  // namespace
}  // namespace logp

int main(int argc, char** argv) {
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  logp::KeepTrainingBlocksInHeap();  // as logpd does
  // As logpd sizes its threads (the cap on OpenMP threads lifts with OMP_WAIT_POLICY=passive).
  logp::SetComputeThreads(absl::GetFlag(FLAGS_threads));
  const std::string mode = args.size() > 1 ? args[1] : "";
  if (mode == "train") {
    logp::Train();
  } else if (mode == "sample") {
    logp::Sample();
  } else {
    std::fprintf(stderr, "usage: pixelcnn_bench train|sample [--flags]\n");
    return 2;
  }
  return 0;
}
