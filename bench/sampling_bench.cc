// sampling_bench: sequential sampling of the binary autoregressive families in this process
// (bench/sampling.sh; issue 16, item 4). For each family at D = 784 (Fashion-MNIST's size),
// H = --hidden, freshly initialised with seed 1 (sampling cost does not depend on training):
// seconds for Model::Sample(--n) (the incremental samplers, models/families/ar_sampling.h),
// median of --runs, against the per-dimension reference sampler of before (ReferenceSample) on
// --old_n records, median of --old_runs, scaled to --n per record. Prints rows of the bench
// table (| measure | logp | reference | ratio | target | met? |) and, with --profile, where the
// time of the MADE sampler goes (timers).
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "models/density_net.h"
#include "models/families/ar_sampling.h"
#include "models/families/fvsbn.h"
#include "models/families/made.h"
#include "models/families/nade.h"
#include "models/model.h"

ABSL_FLAG(int64_t, n, 10000, "samples per timed call");
ABSL_FLAG(int64_t, old_n, 1000, "samples per call of the reference sampler");
ABSL_FLAG(int, runs, 3, "timed calls of the fast sampler (median)");
ABSL_FLAG(int, old_runs, 1, "timed calls of the reference sampler (median)");
ABSL_FLAG(int, threads, 1, "LibTorch intra-op threads");
ABSL_FLAG(int64_t, hidden, 500, "hidden units (MADE, NADE)");
ABSL_FLAG(std::string, families, "made,made2,nade,fvsbn",
          "made (1 hidden layer), made2 (2 hidden layers, direct connections), nade, fvsbn");
ABSL_FLAG(bool, profile, false, "print the MADE sampler's time split to stderr");

namespace logp {
namespace {

constexpr int64_t kDim = 784;

double Seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

v1::ModelSpec Spec(const std::string& family, int64_t hidden) {
  v1::ModelSpec s;
  if (family == "nade") {
    s.set_family(v1::MODEL_FAMILY_NADE);
    s.mutable_nade()->set_hidden_units(hidden);
  } else if (family == "fvsbn") {
    s.set_family(v1::MODEL_FAMILY_FVSBN);
  } else {
    s.set_family(v1::MODEL_FAMILY_MADE);
    s.mutable_made()->set_hidden_units(hidden);
    s.mutable_made()->set_hidden_layers(family == "made2" ? 2 : 1);
    s.mutable_made()->set_direct_connections(family == "made2");
  }
  return s;
}

std::string Label(const std::string& family, int64_t hidden) {
  if (family == "nade") return absl::StrFormat("NADE %d", hidden);
  if (family == "fvsbn") return "FVSBN";
  if (family == "made2") return absl::StrFormat("MADE 2x%d + direct", hidden);
  return absl::StrFormat("MADE 1x%d", hidden);
}

torch::Tensor ReferenceSample(DensityNet& net, int64_t n, at::Generator& gen) {
  if (auto* m = dynamic_cast<MadeImpl*>(&net)) return m->ReferenceSample(n, gen);
  if (auto* m = dynamic_cast<NadeImpl*>(&net)) return m->ReferenceSample(n, gen);
  return dynamic_cast<FvsbnImpl&>(net).ReferenceSample(n, gen);
}

void Profile(MadeImpl& made, int64_t n) {
  c10::InferenceMode guard;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  MadeSamplingWeights w;
  const double prep = Seconds([&] { w = MadeSamplingWeightsOf(made); });
  torch::Tensor u;
  const double draw = Seconds([&] { u = torch::rand({n, kDim}, gen); });
  torch::Tensor x = torch::empty({n, kDim});
  const double loop =
      Seconds([&] { SampleMadeBinary(w, n, u.data_ptr<float>(), x.data_ptr<float>()); });
  const double ones = x.mean().item<double>();
  // Multiply-adds per record: every output reads the hidden units below its degree, every
  // sampled one updates the hidden units above it (together about H per position).
  const double macs = static_cast<double>(n) * kDim * made.degrees(0).hidden[0].size();
  std::fprintf(stderr,
               "profile MADE, %lld samples, 1 thread: weights to sampling coordinates %.3f s, "
               "uniforms %.3f s, sampling loop %.3f s (%.1f GFLOP/s on ~%.2g multiply-adds; "
               "fraction of ones %.2f)\n",
               static_cast<long long>(n), prep, draw, loop, 2 * macs / loop / 1e9, macs, ones);
}

int Main() {
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  const int64_t n = absl::GetFlag(FLAGS_n), old_n = absl::GetFlag(FLAGS_old_n);
  const int64_t hidden = absl::GetFlag(FLAGS_hidden);
  std::vector<std::string> families;
  for (std::string f, s = absl::GetFlag(FLAGS_families) + ","; !s.empty();
       s.erase(0, f.size() + 1)) {
    f = s.substr(0, s.find(','));
    if (!f.empty()) families.push_back(f);
  }
  for (const std::string& family : families) {
    auto model = Model::Create(Spec(family, hidden), {v1::DATA_KIND_BINARY, kDim, 2}, 1);
    if (!model.ok()) {
      std::fprintf(stderr, "%s: %s\n", family.c_str(), model.status().ToString().c_str());
      return 1;
    }
    std::vector<double> fast, old;
    for (int r = 0; r < absl::GetFlag(FLAGS_runs); ++r) {
      fast.push_back(Seconds([&] { (*model)->Sample(n, 100 + r).value(); }));
    }
    for (int r = 0; r < absl::GetFlag(FLAGS_old_runs) && old_n > 0; ++r) {
      c10::InferenceMode guard;
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(200 + r);
      old.push_back(Seconds([&] { ReferenceSample(NetOf(**model), old_n, gen); }));
    }
    const double t = Median(fast);
    const bool target = family != "made2";
    std::string ref = "—", ratio = "—";
    if (!old.empty()) {
      const double scaled = Median(old) * static_cast<double>(n) / static_cast<double>(old_n);
      ref = absl::StrFormat("old path %.2f s (%.2f s for %d, scaled)", scaled, Median(old), old_n);
      ratio = absl::StrFormat("%.0f×", scaled / t);
    }
    std::printf("| sample %s %s, %d thread%s | %.3f s | %s | %s | %s | %s |\n",
                absl::StrFormat("%d", n).c_str(), Label(family, hidden).c_str(),
                absl::GetFlag(FLAGS_threads), absl::GetFlag(FLAGS_threads) == 1 ? "" : "s", t,
                ref.c_str(), ratio.c_str(), target ? "≤ 1 s" : "—",
                target ? (t <= 1.0 ? "yes" : "**no**") : "—");
    std::fflush(stdout);
    if (family == "made" && absl::GetFlag(FLAGS_profile)) {
      at::set_num_threads(1);
      Profile(dynamic_cast<MadeImpl&>(NetOf(**model)), n);
      at::set_num_threads(absl::GetFlag(FLAGS_threads));
    }
  }
  return 0;
}

}  // namespace
}  // namespace logp

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return logp::Main();
}
