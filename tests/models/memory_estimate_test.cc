// The training-memory estimate (models/memory_estimate.h) against exact truths and measurements:
// its parameter count equals that of the built model for every family and many shapes, and for
// a few large jobs its total is within a factor of 2 of the peak resident memory that training
// really adds to a fresh process (measured in a child process: VmHWM after resetting it).
#include "models/memory_estimate.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "models/model.h"
#include "models/train.h"
#include "tests/models/test_data.h"

extern char** environ;

namespace logp {
namespace {

v1::ModelSpec Spec(const std::string& text_family, int64_t a = 0, int64_t b = 0, int64_t c = 0) {
  v1::ModelSpec s;
  if (text_family == "made") {
    s.set_family(v1::MODEL_FAMILY_MADE);
    s.mutable_made()->set_hidden_layers(a);
    s.mutable_made()->set_hidden_units(b);
  } else if (text_family == "maf") {
    s.set_family(v1::MODEL_FAMILY_MAF);
    s.mutable_maf()->set_flow_layers(a);
    s.mutable_maf()->set_hidden_units(b);
    s.mutable_maf()->set_hidden_layers(c);
  } else if (text_family == "realnvp") {
    s.set_family(v1::MODEL_FAMILY_REALNVP);
    s.mutable_realnvp()->set_coupling_layers(a);
    s.mutable_realnvp()->set_hidden_units(b);
    s.mutable_realnvp()->set_hidden_layers(c);
  } else if (text_family == "vae") {
    s.set_family(v1::MODEL_FAMILY_VAE);
    s.mutable_vae()->set_latent_dim(a);
    s.mutable_vae()->set_hidden_units(b);
    s.mutable_vae()->set_hidden_layers(c);
  } else if (text_family == "nade") {
    s.set_family(v1::MODEL_FAMILY_NADE);
    s.mutable_nade()->set_hidden_units(a);
  } else if (text_family == "fvsbn") {
    s.set_family(v1::MODEL_FAMILY_FVSBN);
  } else if (text_family == "bernoulli") {
    s.set_family(v1::MODEL_FAMILY_BERNOULLI);
  } else if (text_family == "categorical") {
    s.set_family(v1::MODEL_FAMILY_CATEGORICAL);
  } else if (text_family == "gaussian") {
    s.set_family(v1::MODEL_FAMILY_GAUSSIAN);
  } else if (text_family == "gmm") {
    s.set_family(v1::MODEL_FAMILY_GAUSSIAN_MIXTURE);
    s.mutable_gaussian_mixture()->set_components(a);
    s.mutable_gaussian_mixture()->set_covariance(b ? v1::COVARIANCE_TYPE_FULL
                                                   : v1::COVARIANCE_TYPE_DIAGONAL);
    s.mutable_gaussian_mixture()->set_training(c ? v1::MIXTURE_TRAINING_GRADIENT
                                                 : v1::MIXTURE_TRAINING_EM);
  }
  return s;
}

const DataShape kBinary{v1::DATA_KIND_BINARY, 13, 2};
const DataShape kCategorical{v1::DATA_KIND_CATEGORICAL, 7, 5};
const DataShape kContinuous{v1::DATA_KIND_CONTINUOUS, 9, 0};

TEST(MemoryEstimateTest, ParametersEqualThoseOfTheBuiltModelInEveryFamily) {
  struct Case {
    v1::ModelSpec spec;
    DataShape shape;
  };
  std::vector<Case> cases = {
      {Spec("made", 1, 17), kBinary},
      {Spec("made", 3, 8), kBinary},
      {Spec("made", 2, 11), kCategorical},
      {Spec("made", 1, 6), kContinuous},
      {Spec("maf", 3, 10, 2), kContinuous},
      {Spec("maf", 1, 7, 1), kContinuous},
      {Spec("realnvp", 4, 9, 2), kContinuous},
      {Spec("vae", 3, 12, 2), kBinary},
      {Spec("vae", 2, 5, 1), kContinuous},
      {Spec("nade", 19), kBinary},
      {Spec("fvsbn"), kBinary},
      {Spec("bernoulli"), kBinary},
      {Spec("categorical"), kCategorical},
      {Spec("gaussian"), kContinuous},
      {Spec("gmm", 3, 0, 0), kContinuous},
      {Spec("gmm", 4, 1, 0), kContinuous},
      {Spec("gmm", 2, 1, 1), kContinuous},
  };
  // Variants: direct connections and a mixture conditional (MADE), batch norm (flows),
  // preprocessing (continuous families), defaults (an empty family message).
  Case direct{Spec("made", 2, 9), kBinary};
  direct.spec.mutable_made()->set_direct_connections(true);
  cases.push_back(direct);
  Case mixture{Spec("made", 1, 9), kContinuous};
  mixture.spec.mutable_made()->set_conditional(v1::CONDITIONAL_TYPE_MIXTURE);
  mixture.spec.mutable_made()->set_mixture_components(3);
  cases.push_back(mixture);
  for (const char* f : {"maf", "realnvp"}) {
    Case norm{Spec(f, 3, 8, 1), kContinuous};
    if (norm.spec.has_maf()) norm.spec.mutable_maf()->set_batch_norm(true);
    if (norm.spec.has_realnvp()) norm.spec.mutable_realnvp()->set_batch_norm(true);
    cases.push_back(norm);
  }
  Case pre{Spec("maf", 2, 8, 1), kContinuous};
  pre.spec.mutable_preprocessing()->set_levels(256);
  cases.push_back(pre);
  for (auto family : {v1::MODEL_FAMILY_MADE, v1::MODEL_FAMILY_VAE, v1::MODEL_FAMILY_NADE}) {
    v1::ModelSpec defaults;
    defaults.set_family(family);
    cases.push_back({defaults, kBinary});
  }
  for (bool norm : {true, false}) {
    Case pixel{{}, kBinary};
    pixel.spec.set_family(v1::MODEL_FAMILY_PIXELCNN);
    auto* m = pixel.spec.mutable_pixelcnn();
    m->set_height(1);
    m->set_width(13);
    m->set_channels(6);
    m->set_residual_blocks(2);
    m->set_hidden_units(10);
    m->set_batch_norm(norm);
    cases.push_back(pixel);
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.spec.ShortDebugString());
    auto model = Model::Create(c.spec, c.shape, 1);
    ASSERT_TRUE(model.ok()) << model.status();
    auto est = EstimateTrainingMemory(c.spec, c.shape, TrainingSize{100, 10, 10, 0, 1});
    ASSERT_TRUE(est.ok()) << est.status();
    EXPECT_EQ(est->parameters, (*model)->NumParameters());
    EXPECT_GT(est->parameter_bytes, 4 * est->parameters);
    EXPECT_GT(est->activation_bytes, 0);
  }
}

TEST(MemoryEstimateTest, InvalidSpecIsRefusedLikeValidation) {
  v1::ModelSpec bad = Spec("made", 1, 100000);
  EXPECT_EQ(EstimateTrainingMemory(bad, kBinary, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EstimateTrainingMemory(Spec("maf", 1, 5, 1), kBinary, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(MemoryEstimateTest, GrowsWithBatchSizeAndData) {
  const v1::ModelSpec spec = Spec("made", 1, 500);
  const DataShape shape{v1::DATA_KIND_BINARY, 784, 2};
  auto small = EstimateTrainingMemory(spec, shape, {10000, 100, 600, 0, 1});
  auto big_batch = EstimateTrainingMemory(spec, shape, {10000, 100, 6000, 0, 1});
  ASSERT_TRUE(small.ok() && big_batch.ok());
  EXPECT_EQ(big_batch->parameter_bytes, small->parameter_bytes);
  // 10x the batch: 10x the step's activations (scoring batches of 512 records stay below).
  EXPECT_EQ(big_batch->activation_bytes, 10 * small->activation_bytes);
  EXPECT_EQ(ResidentDataBytes(shape, 900, 100, /*split=*/true), 1000 * 98 + 900 * 98 + 100 * 784);
  EXPECT_EQ(ResidentDataBytes(shape, 900, 100, /*split=*/false), 1000 * 98);
  EXPECT_EQ(HumanBytes(3 << 20), "3.0 MiB");
}

// ---------------------------------------------------------------------------------------------
// Measured peaks. Each job trains in a child process (this binary with --measure=NAME) so that
// one job's freed memory cannot hide the next one's peak.

struct Job {
  std::string name;
  v1::ModelSpec spec;
  DataShape shape;
  int64_t rows;
  int64_t batch;
  int64_t steps;
};

v1::ModelSpec MadeWithDropout() {
  v1::ModelSpec s = Spec("made", 2, 2000);
  s.mutable_regularization()->set_dropout(0.2);
  return s;
}

std::vector<Job> Jobs() {
  return {
      // Parameter-dominated: 4.7M weights with Adam, the best copy and a checkpoint.
      {"made-binary", Spec("made", 1, 3000), {v1::DATA_KIND_BINARY, 784, 2}, 6000, 500, 3},
      // Activation-dominated: five flows on batches of 4,000.
      {"maf", Spec("maf", 5, 1000, 1), {v1::DATA_KIND_CONTINUOUS, 60, 0}, 6000, 4000, 2},
      {"vae-binary", Spec("vae", 32, 1000, 2), {v1::DATA_KIND_BINARY, 784, 2}, 6000, 2000, 2},
      // A pass over all records: EM in double precision with [K, N, D] intermediates.
      {"gmm-full-em", Spec("gmm", 10, 1, 0), {v1::DATA_KIND_CONTINUOUS, 40, 0}, 40000, 100, 2},
      // Data-dominated: a closed form over 60,000 binary records.
      {"bernoulli", Spec("bernoulli"), {v1::DATA_KIND_BINARY, 784, 2}, 60000, 100, 1},
      // Dropout, two hidden layers, Gaussian conditionals.
      {"made-dropout", MadeWithDropout(), {v1::DATA_KIND_CONTINUOUS, 100, 0}, 6000, 2000, 2},
  };
}

RecordMatrix MakeData(const Job& job) {
  if (job.shape.kind == v1::DATA_KIND_BINARY) {
    RecordMatrix m = RandomBinary(job.rows, job.shape.dim, 7);
    PackBits(&m);  // as the dataset store holds binary data
    return m;
  }
  RecordMatrix m = RecordMatrix::Empty(job.shape.kind, job.shape.dim, 0).value();
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0, 1);
  m.f32.resize(job.rows * job.shape.dim);
  for (float& v : m.f32) v = normal(rng);
  m.rows = job.rows;
  return m;
}

int64_t StatusKiB(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(std::strlen(field)));
  }
  return -1;
}

class Checkpointer : public TrainObserver {
 public:
  bool CheckpointDue(int64_t step) override { return step == 1; }
};

// Trains `job` as the job manager would (the whole dataset held while its split parts train,
// one checkpoint written) and prints the peak memory it added and the estimate.
int Measure(const std::string& name) {
  for (const Job& job : Jobs()) {
    if (job.name != name) continue;
    TrainOptions opts;
    opts.batch_size = job.batch;
    opts.epochs = 1;
    opts.max_steps = job.steps;
    opts.seed = 1;
    {
      // Warm-up: thread pools, BLAS buffers and lazily loaded kernels are the process's, not
      // the job's.
      Job tiny = job;
      tiny.rows = 200;
      RecordMatrix small = MakeData(tiny);
      auto parts = SplitRecords(small, 0.1, 1);
      TrainOptions o = opts;
      o.batch_size = 10;
      o.max_steps = 2;
      if (!parts.ok() || !Train(job.spec, parts->first, parts->second, o, nullptr).ok()) return 2;
    }
    const int64_t baseline_kib = StatusKiB("VmRSS:");
    std::ofstream("/proc/self/clear_refs") << "5";  // VmHWM := VmRSS
    int64_t estimate = 0;
    {
      auto data = std::make_shared<const RecordMatrix>(MakeData(job));
      auto parts = SplitRecords(*data, 0.1, 1);
      if (!parts.ok()) return 2;
      TrainingSize size{parts->first.rows, parts->second.rows, job.batch, 0, 1};
      size.compute_threads = 2;
      size.resident_data_bytes =
          ResidentDataBytes(job.shape, parts->first.rows, parts->second.rows, /*split=*/true);
      auto est = EstimateTrainingMemory(job.spec, job.shape, size);
      if (!est.ok()) return 2;
      estimate = est->total_bytes();
      Checkpointer observer;
      auto result = Train(job.spec, parts->first, parts->second, opts, &observer);
      if (!result.ok()) {
        std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
        return 2;
      }
    }
    const int64_t peak_kib = StatusKiB("VmHWM:");
    std::printf("peak_bytes=%lld estimate_bytes=%lld\n",
                static_cast<long long>((peak_kib - baseline_kib) * 1024),
                static_cast<long long>(estimate));
    return 0;
  }
  return 2;
}

// Runs this binary with --measure=NAME; false if it failed.
bool MeasureInChild(const std::string& name, int64_t* peak, int64_t* estimate) {
  int out[2];
  if (pipe(out) != 0) return false;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  std::string self = "/proc/self/exe", arg = "--measure=" + name;
  char* argv[] = {self.data(), arg.data(), nullptr};
  pid_t pid;
  const int rc = posix_spawn(&pid, self.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  if (rc != 0) {
    close(out[0]);
    return false;
  }
  std::string text;
  char buf[256];
  for (ssize_t n; (n = read(out[0], buf, sizeof(buf))) > 0;) text.append(buf, n);
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  long long p = 0, e = 0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
      std::sscanf(text.c_str(), "peak_bytes=%lld estimate_bytes=%lld", &p, &e) != 2) {
    return false;
  }
  *peak = p;
  *estimate = e;
  return true;
}

TEST(MemoryEstimateTest, WithinAFactorOfTwoOfTheMeasuredPeak) {
  for (const Job& job : Jobs()) {
    int64_t peak = 0, estimate = 0;
    ASSERT_TRUE(MeasureInChild(job.name, &peak, &estimate)) << job.name;
    const double ratio = static_cast<double>(estimate) / static_cast<double>(peak);
    std::printf("%-12s measured %-10s estimated %-10s ratio %.2f\n", job.name.c_str(),
                HumanBytes(peak).c_str(), HumanBytes(estimate).c_str(), ratio);
    // Large enough that the job, not allocator noise, is measured.
    EXPECT_GT(peak, int64_t{100} << 20) << job.name;
    EXPECT_GE(ratio, 0.5) << job.name;
    EXPECT_LE(ratio, 2.0) << job.name;
  }
}

}  // namespace
}  // namespace logp

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--measure=", 10) == 0) return logp::Measure(argv[i] + 10);
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
