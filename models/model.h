// Model: the torch-free face of the model zoo. A Model is an immutable, trained density model
// over records of one kind and dimension; it scores (exact log p(x) in nats) and samples.
// Training a model is models/train.h.
//
// Thread-safety: all const methods may be called concurrently. LibTorch's c10::Error never
// escapes: it becomes an absl::Status.
#ifndef LOGP_MODELS_MODEL_H_
#define LOGP_MODELS_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "logp/v1/job_service.pb.h"
#include "logp/v1/model_service.pb.h"
#include "proto/cc/records.h"

namespace logp {

class DensityNet;  // models/density_net.h

// What a model is trained on and scores.
struct DataShape {
  v1::DataKind kind = v1::DATA_KIND_UNSPECIFIED;
  int64_t dim = 0;
  int32_t num_categories = 0;
};

// The effective spec of a model of `raw` over data of `shape`: unset hyper-parameters take their
// defaults (e.g. MADE: 1 hidden layer of 500 units, natural order), then every field is checked.
// The one place specs are defaulted and validated. INVALID_ARGUMENT naming the field for an
// unknown family or a bad hyper-parameter; FAILED_PRECONDITION naming family and kind when the
// family cannot model `shape.kind`.
absl::StatusOr<v1::ModelSpec> ResolveModelSpec(const v1::ModelSpec& raw, const DataShape& shape);

// Polled between batches of scoring work and between the passes of sampling (every dimension of a
// per-dimension sampler; every group of 64-record chunks of the incremental samplers of binary
// MADE, NADE and FVSBN): true stops the call with CANCELLED. Called on the calling thread.
using StopPoll = std::function<bool()>;

// How to score families without an exact likelihood (the VAE); exact families ignore it.
struct ScoreOptions {
  // < 0: the model's default; 0: the ELBO; k >= 1: the importance-weighted estimate with k
  // samples.
  int importance_samples = -1;
  // Seed of the importance samples.
  uint64_t seed = 0;
  // Optional: polled between batches of 512 records (and between importance-sample chunks).
  StopPoll stop;
};

// Per-record scores and how they were obtained.
struct Scores {
  std::vector<double> log_prob;
  // Monte Carlo scores (the VAE's ESTIMATE and LOWER_BOUND): per-record standard error; empty
  // for exact scores.
  std::vector<double> standard_error;
  v1::ScoreKind kind = v1::SCORE_KIND_EXACT;
  int importance_samples = 0;
};

class Model {
 public:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // A freshly initialised (untrained) model of ResolveModelSpec(spec, shape) (its errors
  // otherwise); `seed` fixes initialisation.
  static absl::StatusOr<std::unique_ptr<Model>> Create(const v1::ModelSpec& spec,
                                                       const DataShape& shape, uint64_t seed);
  // Reads what Serialize wrote. INVALID_ARGUMENT (DATA_LOSS for corrupt bytes) on failure.
  static absl::StatusOr<std::unique_ptr<Model>> Deserialize(const std::string& bytes);
  // Spec, shape and weights as bytes (the caller stores them durably).
  absl::StatusOr<std::string> Serialize() const;
  // Appends what Serialize returns to *out, without an intermediate copy.
  absl::Status SerializeTo(std::string* out) const;

  // log p(x) in nats for every row of `records`, which must have the model's kind, dim and
  // categories (INVALID_ARGUMENT otherwise). Finite or -inf for every finite record, never NaN
  // or +inf (continuous records that overflow the net's float arithmetic score -inf).
  absl::StatusOr<std::vector<double>> LogProb(const RecordMatrix& records) const;
  // Scores with their kind (exact, lower bound or estimate); INVALID_ARGUMENT as LogProb, or for
  // importance_samples over 10000; CANCELLED when options.stop said stop.
  absl::StatusOr<Scores> Score(const RecordMatrix& records, const ScoreOptions& options) const;
  // `n` independent samples; equal seeds give equal samples (on one machine). CANCELLED when
  // `stop` (optional) said stop; it is polled at least every few tens of milliseconds of
  // sampling at D = 784 (see StopPoll).
  absl::StatusOr<RecordMatrix> Sample(int64_t n, uint64_t seed,
                                      const StopPoll& stop = nullptr) const;

  // --- per-dimension explanations (models/explain.cc) ---
  // The chain-rule terms of log p(x): for every row of `records` (checked as in LogProb) and
  // every data dimension d, log p(x_d | x_<d) in nats, "<d" meaning the dimensions before d in
  // FactorOrder() (none when it is empty: the dimensions are independent under the model).
  // N x D row-major; each row sums to LogProb's value within rounding. Continuous terms that
  // overflow are -inf, never NaN. Computed in batches of kEvalBatchRows, polling `stop` between
  // them (CANCELLED). FAILED_PRECONDITION naming the family when it has no such decomposition
  // (MAF, RealNVP, the VAE, a MADE ensemble of several masks).
  absl::StatusOr<std::vector<double>> PerDimensionLogProb(const RecordMatrix& records,
                                                          const StopPoll& stop = nullptr) const;
  // The order of that factorisation: order[i] is the data dimension that comes i-th; empty when
  // the dimensions are independent under the model or it has no decomposition.
  std::vector<int64_t> FactorOrder() const;

  const v1::ModelSpec& spec() const;
  const DataShape& shape() const;
  int64_t NumParameters() const;
  // The kind of the model's default scores.
  v1::ScoreKind score_kind() const;

  // Matrix-product FLOPs per record of one training step of this model's architecture on its
  // family's hand-written path (TrainOptions::block_products as given); 0 if it has none.
  // For benchmarks.
  double TrainingFlopsPerRecord(bool block_products) const;

 private:
  friend DensityNet& NetOf(const Model& model);
  std::unique_ptr<Impl> impl_;
};

}  // namespace logp

#endif  // LOGP_MODELS_MODEL_H_
