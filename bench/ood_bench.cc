// ood_bench: the out-of-distribution benchmark of issue 15 on Fashion-MNIST, with the models
// library directly (models/model.h, models/train.h; no server). Classes 0-4 (T-shirt, trouser,
// pullover, dress, coat) are in-distribution, classes 5-9 (sandal, shirt, sneaker, bag, ankle
// boot) out. Images are binarised (pixel > 127) as bench/zoo_fmnist.sh does.
//
// The training images of classes 0-4 are split three ways (seeded): train (80%), validation (10%,
// early stopping and best weights) and reference (10%, never seen by training: its scores are
// the held-out scores of the conformal/typicality machinery). Each model scores the reference
// and the test images of both class groups; the test records of each group, shuffled, are cut
// into disjoint batches of 1, 10 and 100, and each batch gets three OOD scores (high = OOD):
//   raw          -mean log p(x) of the batch under the model;
//   llr          -mean [log p(x) - log p_bg(x)], the likelihood ratio against a background
//                model fitted to the same training records: the independent-Bernoulli family,
//                and a small MADE (1 x --small_hidden units);
//   typicality   |mean NLL of the batch - mean NLL of the reference| (Nalisnick et al. 2019).
// AUROC (analytics Auroc) of each score, in-batches as negatives, out-batches as positives; then
// TypicalityTest at alpha = 0.05 with the reference scores: the share of in-batches it rejects
// (type I error) and of out-batches (power).
//
//   ood_bench [--made_epochs=10 --made_hidden=500 --small_hidden=20 --vae_epochs=10
//   --vae_hidden=500
//              --vae_latent=32 --vae_k=10 --threads=2 --draws=1000 --seed=1]
//
// The VAE scores the importance-weighted estimate with --vae_k samples (an ESTIMATE: a
// stochastic lower bound), the others exact log-likelihoods.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "analytics/statistics.h"
#include "client/data_files.h"
#include "models/compute_threads.h"
#include "models/model.h"
#include "models/train.h"
#include "proto/cc/status_macros.h"

ABSL_FLAG(std::string, data_dir, "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX files.");
ABSL_FLAG(int, made_epochs, 10, "MADE training epochs.");
ABSL_FLAG(int, made_hidden, 500, "MADE hidden units (one hidden layer).");
ABSL_FLAG(int, small_hidden, 20, "Hidden units of the small MADE, the second background model.");
ABSL_FLAG(int, vae_epochs, 10, "VAE training epochs.");
ABSL_FLAG(int, vae_hidden, 500, "VAE hidden units (one hidden layer in encoder and decoder).");
ABSL_FLAG(int, vae_latent, 32, "VAE latent dimension.");
ABSL_FLAG(int, vae_k, 10, "Importance samples of the VAE's scores.");
ABSL_FLAG(int, threads, 2, "LibTorch / BLAS threads.");
ABSL_FLAG(int, draws, 1000, "Bootstrap draws of the typicality test.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the splits, shuffles, training and the bootstrap.");

namespace logp {
namespace {

struct Split {
  RecordMatrix train, validation, reference, test_in, test_out;
};

absl::StatusOr<RecordMatrix> Rows(const RecordMatrix& all, const std::vector<int64_t>& rows) {
  ASSIGN_OR_RETURN(RecordMatrix out, RecordMatrix::Empty(all.kind, all.cols, all.num_categories));
  out.Reserve(static_cast<int64_t>(rows.size()));
  for (int64_t r : rows) out.AppendRow(all, r);
  return out;
}

absl::StatusOr<Split> LoadSplit(const std::string& dir, uint64_t seed) {
  ReadOptions images;
  images.kind = v1::DATA_KIND_BINARY;
  images.binarize_threshold = 127;
  ReadOptions labels;
  labels.kind = v1::DATA_KIND_CONTINUOUS;
  ASSIGN_OR_RETURN(RecordMatrix train_x, ReadIdx(dir + "/train-images-idx3-ubyte.gz", images));
  ASSIGN_OR_RETURN(RecordMatrix train_y, ReadIdx(dir + "/train-labels-idx1-ubyte.gz", labels));
  ASSIGN_OR_RETURN(RecordMatrix test_x, ReadIdx(dir + "/t10k-images-idx3-ubyte.gz", images));
  ASSIGN_OR_RETURN(RecordMatrix test_y, ReadIdx(dir + "/t10k-labels-idx1-ubyte.gz", labels));
  std::mt19937_64 rng(seed);
  std::vector<int64_t> in_train, test_in, test_out;
  for (int64_t r = 0; r < train_y.rows; ++r) {
    if (train_y.At(r, 0) < 5) in_train.push_back(r);
  }
  for (int64_t r = 0; r < test_y.rows; ++r) (test_y.At(r, 0) < 5 ? test_in : test_out).push_back(r);
  std::shuffle(in_train.begin(), in_train.end(), rng);
  std::shuffle(test_in.begin(), test_in.end(), rng);
  std::shuffle(test_out.begin(), test_out.end(), rng);
  const size_t n = in_train.size(), n_valid = n / 10, n_ref = n / 10;
  Split s;
  auto part = [&](size_t from, size_t to) {
    return Rows(train_x, std::vector<int64_t>(in_train.begin() + from, in_train.begin() + to));
  };
  ASSIGN_OR_RETURN(s.reference, part(0, n_ref));
  ASSIGN_OR_RETURN(s.validation, part(n_ref, n_ref + n_valid));
  ASSIGN_OR_RETURN(s.train, part(n_ref + n_valid, n));
  ASSIGN_OR_RETURN(s.test_in, Rows(test_x, test_in));
  ASSIGN_OR_RETURN(s.test_out, Rows(test_x, test_out));
  return s;
}

struct Scored {
  std::string name;
  std::string settings;
  double train_seconds = 0;
  std::vector<double> reference, in, out;  // log p per record
};

absl::StatusOr<Scored> TrainAndScore(const std::string& name, const std::string& settings,
                                     const v1::ModelSpec& spec, int epochs, int importance_samples,
                                     const Split& s, uint64_t seed) {
  TrainOptions options;
  options.epochs = epochs;
  options.batch_size = 100;
  options.learning_rate = 1e-3;
  options.seed = seed;
  options.progress_interval_seconds = 1e9;
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(TrainResult trained, Train(spec, s.train, s.validation, options, nullptr));
  Scored out;
  out.name = name;
  out.settings = settings;
  out.train_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ScoreOptions score;
  score.importance_samples = importance_samples;
  score.seed = seed;
  for (auto [data, into] :
       {std::pair{&s.reference, &out.reference}, {&s.test_in, &out.in}, {&s.test_out, &out.out}}) {
    ASSIGN_OR_RETURN(Scores scores, trained.model->Score(*data, score));
    *into = std::move(scores.log_prob);
  }
  return out;
}

// Means of consecutive disjoint batches of `size` (a trailing partial batch is dropped).
std::vector<std::vector<double>> Batches(const std::vector<double>& v, size_t size) {
  std::vector<std::vector<double>> out;
  for (size_t b = 0; b + size <= v.size(); b += size)
    out.emplace_back(v.begin() + b, v.begin() + b + size);
  return out;
}

double Mean(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

std::vector<double> Difference(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

struct Row {
  double auroc_raw = 0, auroc_typical = 0, type1 = 0, power = 0;
  std::vector<double> auroc_llr;  // per background; -1 where it does not apply
  size_t batches_in = 0, batches_out = 0;
};

// `backgrounds[i]` null: no ratio against it.
Row Evaluate(const Scored& m, const std::vector<const Scored*>& backgrounds, size_t batch,
             int draws, uint64_t seed) {
  Row row;
  const auto in = Batches(m.in, batch), out = Batches(m.out, batch);
  row.batches_in = in.size();
  row.batches_out = out.size();
  const double entropy = -Mean(m.reference);
  std::vector<double> raw_in, raw_out, typ_in, typ_out;
  int rejected_in = 0, rejected_out = 0;
  uint64_t test_seed = seed;
  for (auto [batches, raw, typ, rejected] : {std::tuple{&in, &raw_in, &typ_in, &rejected_in},
                                             {&out, &raw_out, &typ_out, &rejected_out}}) {
    for (const std::vector<double>& b : *batches) {
      const double nll = -Mean(b);
      raw->push_back(nll);
      typ->push_back(std::fabs(nll - entropy));
      const TypicalityDecision d = TypicalityTest(m.reference, b, 0.05, draws, ++test_seed);
      if (!d.typical) ++*rejected;
    }
  }
  row.auroc_raw = Auroc(raw_in, raw_out);
  row.auroc_typical = Auroc(typ_in, typ_out);
  row.type1 = in.empty() ? 0 : static_cast<double>(rejected_in) / in.size();
  row.power = out.empty() ? 0 : static_cast<double>(rejected_out) / out.size();
  for (const Scored* background : backgrounds) {
    if (background == nullptr) {
      row.auroc_llr.push_back(-1);
      continue;
    }
    std::vector<double> llr_in, llr_out;
    for (const auto& b : Batches(Difference(m.in, background->in), batch)) {
      llr_in.push_back(-Mean(b));
    }
    for (const auto& b : Batches(Difference(m.out, background->out), batch)) {
      llr_out.push_back(-Mean(b));
    }
    row.auroc_llr.push_back(Auroc(llr_in, llr_out));
  }
  return row;
}

int Main() {
  SetComputeThreads(absl::GetFlag(FLAGS_threads));
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  absl::StatusOr<Split> split = LoadSplit(absl::GetFlag(FLAGS_data_dir), seed);
  if (!split.ok()) {
    std::fprintf(stderr, "ood_bench: %s\n", split.status().ToString().c_str());
    return 1;
  }
  const Split& s = *split;
  std::printf(
      "Fashion-MNIST binarised (pixel > 127), D = 784. In: classes 0-4; out: classes 5-9.\n");
  std::printf(
      "train %lld, validation %lld, reference (held out) %lld; test in %lld, test out %lld\n\n",
      (long long)s.train.rows, (long long)s.validation.rows, (long long)s.reference.rows,
      (long long)s.test_in.rows, (long long)s.test_out.rows);

  std::vector<Scored> models;
  auto add = [&](absl::StatusOr<Scored> m) {
    if (!m.ok()) {
      std::fprintf(stderr, "ood_bench: %s\n", m.status().ToString().c_str());
      return false;
    }
    std::fprintf(stderr, "trained %s in %.0f s\n", m->name.c_str(), m->train_seconds);
    models.push_back(*std::move(m));
    return true;
  };
  v1::ModelSpec bernoulli;
  bernoulli.set_family(v1::MODEL_FAMILY_BERNOULLI);
  bernoulli.mutable_bernoulli()->set_pseudo_count(0.5);
  if (!add(TrainAndScore("bernoulli", "pseudo_count 0.5 (closed form)", bernoulli, 1, -1, s,
                         seed))) {
    return 1;
  }
  v1::ModelSpec small;
  small.set_family(v1::MODEL_FAMILY_MADE);
  small.mutable_made()->set_hidden_layers(1);
  small.mutable_made()->set_hidden_units(absl::GetFlag(FLAGS_small_hidden));
  if (!add(TrainAndScore(
          absl::StrFormat("made-%d", absl::GetFlag(FLAGS_small_hidden)),
          absl::StrFormat("1 x %d hidden, %d epochs, Adam 1e-3, batch 100 (the small background)",
                          absl::GetFlag(FLAGS_small_hidden), absl::GetFlag(FLAGS_made_epochs)),
          small, absl::GetFlag(FLAGS_made_epochs), -1, s, seed))) {
    return 1;
  }
  v1::ModelSpec made;
  made.set_family(v1::MODEL_FAMILY_MADE);
  made.mutable_made()->set_hidden_layers(1);
  made.mutable_made()->set_hidden_units(absl::GetFlag(FLAGS_made_hidden));
  if (!add(TrainAndScore(
          "made",
          absl::StrFormat("1 x %d hidden, %d epochs, Adam 1e-3, batch 100",
                          absl::GetFlag(FLAGS_made_hidden), absl::GetFlag(FLAGS_made_epochs)),
          made, absl::GetFlag(FLAGS_made_epochs), -1, s, seed))) {
    return 1;
  }
  v1::ModelSpec vae;
  vae.set_family(v1::MODEL_FAMILY_VAE);
  vae.mutable_vae()->set_latent_dim(absl::GetFlag(FLAGS_vae_latent));
  vae.mutable_vae()->set_hidden_layers(1);
  vae.mutable_vae()->set_hidden_units(absl::GetFlag(FLAGS_vae_hidden));
  if (!add(TrainAndScore(
          "vae",
          absl::StrFormat("latent %d, 1 x %d hidden, %d epochs, Adam 1e-3, batch 100; IWAE k = %d",
                          absl::GetFlag(FLAGS_vae_latent), absl::GetFlag(FLAGS_vae_hidden),
                          absl::GetFlag(FLAGS_vae_epochs), absl::GetFlag(FLAGS_vae_k)),
          vae, absl::GetFlag(FLAGS_vae_epochs), absl::GetFlag(FLAGS_vae_k), s, seed))) {
    return 1;
  }

  std::printf(
      "| model | settings | train s | mean NLL reference | mean NLL test in | mean NLL test out "
      "|\n");
  std::printf("|---|---|---:|---:|---:|---:|\n");
  for (const Scored& m : models) {
    std::printf("| %s | %s | %.0f | %.1f | %.1f | %.1f |\n", m.name.c_str(), m.settings.c_str(),
                m.train_seconds, -Mean(m.reference), -Mean(m.in), -Mean(m.out));
  }
  std::printf(
      "\n| model | batch | batches in/out | AUROC raw | AUROC LLR vs bernoulli | AUROC LLR vs %s | "
      "AUROC typicality | typicality test type I (alpha 0.05) | power |\n",
      models[1].name.c_str());
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  const int draws = absl::GetFlag(FLAGS_draws);
  for (size_t i = 0; i < models.size(); ++i) {
    const Scored& m = models[i];
    // Backgrounds: the Bernoulli and the small MADE, for the models after them.
    const std::vector<const Scored*> backgrounds = {i > 0 ? &models[0] : nullptr,
                                                    i > 1 ? &models[1] : nullptr};
    for (size_t batch : {1, 10, 100}) {
      const Row r = Evaluate(m, backgrounds, batch, draws, seed * 1000 + batch);
      std::string llr;
      for (double a : r.auroc_llr) {
        absl::StrAppend(&llr, a < 0 ? "-" : absl::StrFormat("%.3f", a), " | ");
      }
      std::printf("| %s | %zu | %zu/%zu | %.3f | %s%.3f | %.3f | %.3f |\n", m.name.c_str(), batch,
                  r.batches_in, r.batches_out, r.auroc_raw, llr.c_str(), r.auroc_typical, r.type1,
                  r.power);
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
