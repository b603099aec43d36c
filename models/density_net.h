// DensityNet: the LibTorch interface every model family implements, and the registry of
// families. Internal to models/ and its tests; the rest of logp sees only models/model.h.
//
// Conventions: a net takes float [B, D] batches of values as uploaded (binary 0/1, categorical
// 0..K-1 as floats, continuous floats) and returns log-likelihoods in nats per record.
#ifndef LOGP_MODELS_DENSITY_NET_H_
#define LOGP_MODELS_DENSITY_NET_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "logp/v1/job_service.pb.h"
#include "logp/v1/model_service.pb.h"
#include "models/memory_estimate.h"
#include "models/model.h"

namespace logp {

// Scores of a batch and how they were obtained.
struct ScoreBatch {
  torch::Tensor log_prob;        // [B] double or float
  torch::Tensor standard_error;  // [B] for ESTIMATE scores; undefined otherwise
  v1::ScoreKind kind = v1::SCORE_KIND_EXACT;
  int importance_samples = 0;
};

class DensityNet : public torch::nn::Module {
 public:
  enum class Fit { kGradient, kClosedForm, kEm };

  // The family's log-likelihood of each record, [B]; differentiable. Exact for exact families;
  // the ELBO for the VAE.
  virtual torch::Tensor LogProb(const torch::Tensor& x) = 0;
  // Mean training loss of a batch: the mean NLL unless the family trains on something else
  // (the VAE: the mean negative ELBO). Called in train() mode.
  virtual torch::Tensor Loss(const torch::Tensor& x) { return -LogProb(x).mean(); }
  // Optional fast path of a gradient step: Loss(x) as a double scalar tensor, with the gradient
  // of that loss stored in every parameter's grad() (already masked, as after MaskGradients),
  // computed by hand instead of by autograd. An undefined tensor, with nothing touched, when the
  // net has no such path for its configuration: the trainer then runs Loss and backward. Tests
  // check each implementation against autograd.
  virtual torch::Tensor LossAndGradients(const torch::Tensor& x) { return torch::Tensor(); }
  // Matrix-product FLOPs per record that LossAndGradients executes with SetBlockProducts(b) (for
  // benchmarks); 0 when the net has no such path.
  virtual double TrainingFlopsPerRecord(bool block_products) const { return 0; }
  // Whether LossAndGradients may skip masked blocks of its matrix products (default true).
  virtual void SetBlockProducts(bool on) {}
  // Scores for serving (eval mode, no gradients): LogProb labelled EXACT unless overridden.
  virtual ScoreBatch Score(const torch::Tensor& x, const ScoreOptions& options) {
    return ScoreBatch{LogProb(x), torch::Tensor(), v1::SCORE_KIND_EXACT, 0};
  }
  // [n, D] float samples drawn with `gen`, in the same value convention as the input.
  virtual torch::Tensor Sample(int64_t n, at::Generator& gen) = 0;

  // Analytics (models/explain.cc, models/conditional.cc). Each has a default meaning "this family
  // cannot": the callers answer FAILED_PRECONDITION.
  //
  // The chain-rule terms of LogProb: [B, D] double whose column d is log p(x_d | x_<d) for data
  // dimension d, "<d" meaning the dimensions before d in FactorOrder() (all of them are independent
  // when FactorOrder() is empty); each row sums to LogProb(x) (within rounding). Eval mode, no
  // gradients. Undefined for a family without such a decomposition (flows, the VAE).
  virtual torch::Tensor PerDimensionLogProb(const torch::Tensor& x) { return torch::Tensor(); }
  // The order of PerDimensionLogProb's factorisation: order[i] is the data dimension that comes
  // i-th. Empty when the dimensions are independent under the model (or there is no
  // decomposition).
  virtual std::vector<int64_t> FactorOrder() const { return {}; }

  // Conditionals (models/conditional.cc): closed forms and latent-variable estimators. In each,
  // `observed` is a [D] bool mask of the observed dimensions and the values of x in the others are
  // ignored (they must be finite). Each default (an undefined tensor) means "this family has
  // none". Eval mode, no gradients.
  //
  // Closed-form log p(x_observed) per record, [B] double.
  virtual torch::Tensor MarginalLogProb(const torch::Tensor& x, const torch::Tensor& observed) {
    return torch::Tensor();
  }
  // `n` exact draws from p(x_missing | x_observed) per record, with the observed values kept:
  // [B, n, D] float, drawn with `gen`.
  virtual torch::Tensor ConditionalSample(const torch::Tensor& x, const torch::Tensor& observed,
                                          int64_t n, at::Generator& gen) {
    return torch::Tensor();
  }
  // E[x | x_observed] per record (the observed values kept), [B, D] double.
  virtual torch::Tensor ConditionalMean(const torch::Tensor& x, const torch::Tensor& observed) {
    return torch::Tensor();
  }
  // Latent-variable families (the VAE): k importance draws z_i from a proposal of known density
  // and their log weights log p(x_observed, z_i) - log q(z_i), [k, B] double, so that
  // log mean_i exp(w_i) estimates log p(x_observed) (consistently in k, unbiased in p). *z, if
  // not null, receives the draws [k, B, latent].
  virtual torch::Tensor LatentLogWeights(const torch::Tensor& x, const torch::Tensor& observed,
                                         int64_t k, at::Generator& gen, torch::Tensor* z) {
    return torch::Tensor();
  }
  // One draw of x ~ p(x | z) for each z of [M, latent], [M, D] float (latent families only).
  virtual torch::Tensor DecodeSample(const torch::Tensor& z, at::Generator& gen) {
    return torch::Tensor();
  }

  // How Train fits the family: Adam on Loss (default), a closed form, or EM (one EM step over
  // the whole training set per epoch).
  virtual Fit fit() const { return Fit::kGradient; }
  virtual void FitClosedForm(const torch::Tensor& x) {}
  virtual void EmStep(const torch::Tensor& x) {}
  // Called before gradient step `step` (0-based), e.g. to switch MADE's mask.
  virtual void BeforeStep(int64_t step) {}
  // Nets whose connectivity is a fixed mask may keep the mask folded into their weights (masked
  // weights exactly 0, no mask product per step). FoldMasks zeroes the masked weights (after
  // construction and after loading weights: idempotent); MaskGradients zeroes their gradients
  // after each backward pass, so that Adam (and weight decay) leave them at 0. Called on every
  // DensityNet in a module tree through ForEachDensityNet.
  virtual void FoldMasks() {}
  virtual void MaskGradients() {}
};

// Training noise: every random draw made while training (dropout, dequantisation noise, the VAE's
// eps, ...) comes from the calling thread's noise generator, never from torch's process-wide
// one, so that jobs training side by side cannot disturb each other's draws. The trainer installs
// its job's generator with a NoiseScope for the whole run (and checkpoints it); with no scope
// installed (tests that call Loss directly) draws come from torch's default generator.
at::Generator& NoiseGenerator();

// Installs `gen` as this thread's noise generator until destroyed (scopes nest).
class NoiseScope {
 public:
  explicit NoiseScope(at::Generator* gen);
  ~NoiseScope();
  NoiseScope(const NoiseScope&) = delete;
  NoiseScope& operator=(const NoiseScope&) = delete;

 private:
  at::Generator* previous_;
};

// Inverted dropout with keep probability 1 - p drawn from NoiseGenerator(): the same draws and
// arithmetic as torch's CPU dropout (a Bernoulli(1 - p) mask divided by 1 - p), identity when
// not training or p == 0.
torch::Tensor Dropout(const torch::Tensor& h, double p, bool training);
// The mask Dropout multiplies by, [rows, cols] float.
torch::Tensor DropoutNoise(int64_t rows, int64_t cols, double p);

// Stopping long passes: Model::Score and Model::Sample install the call's StopPoll with a
// StopScope; loops inside a net (sequential sampling per dimension, importance-sample chunks)
// call PollStop() between their passes, which throws CallStopped when the poll says stop (the
// Model method turns it into CANCELLED). No poll installed: PollStop() does nothing.
struct CallStopped : std::runtime_error {
  CallStopped() : std::runtime_error("call stopped") {}
};
void PollStop();
class StopScope {
 public:
  explicit StopScope(const StopPoll* poll);
  ~StopScope();
  StopScope(const StopScope&) = delete;
  StopScope& operator=(const StopScope&) = delete;

 private:
  const StopPoll* previous_;
};

// The net inside a model: for the trainer and the checkpoint codec in models/, and its tests.
DensityNet& NetOf(const Model& model);

// Calls f on `root` and on every module below it that is a DensityNet (decorators, sub-nets).
void ForEachDensityNet(torch::nn::Module& root, const std::function<void(DensityNet&)>& f);

// One model family: what it models, its defaults and checks, and its factory.
struct FamilyInfo {
  v1::ModelFamily family = v1::MODEL_FAMILY_UNSPECIFIED;
  // Lower-case name used in messages ("made").
  std::string name;
  std::vector<v1::DataKind> kinds;
  // Fills unset hyper-parameters of spec.<family> with their defaults.
  std::function<void(v1::ModelSpec*)> set_defaults;
  // INVALID_ARGUMENT naming the field ("model.made.hidden_units ..."); defaults are applied.
  std::function<absl::Status(const v1::ModelSpec&, const DataShape&)> validate;
  // Builds an initialised net for a validated spec.
  std::function<std::shared_ptr<DensityNet>(const v1::ModelSpec&, const DataShape&)> make;
  // The kind of the family's default scores for a spec (defaults applied): EXACT unless set.
  std::function<v1::ScoreKind(const v1::ModelSpec&)> score_kind;
  // What training a net of a validated spec holds in memory (models/memory_estimate.h),
  // computed from the spec alone: nothing is built.
  std::function<NetFootprint(const v1::ModelSpec&, const DataShape&)> footprint;
};

// Building blocks of footprints: an MLP in -> hidden_layers x units -> out of torch::nn::Linear
// layers with biases and ReLUs between them. Its parameters; the bytes per record that one
// training step holds (activations, their gradients, dropout masks); and the bytes per record
// of one scoring pass.
int64_t MlpParameters(int64_t in, int64_t hidden_layers, int64_t units, int64_t out);
int64_t MlpStepBytes(int64_t in, int64_t hidden_layers, int64_t units, int64_t out, bool dropout);
int64_t MlpEvalBytes(int64_t in, int64_t hidden_layers, int64_t units, int64_t out);

// Records per batch of scoring passes (validation, Score, Evaluate).
constexpr int64_t kEvalBatchRows = 512;

// The registered family, or nullptr.
const FamilyInfo* FindFamily(v1::ModelFamily family);

// Builds the initialised net of a resolved spec (ResolveModelSpec for `shape`), including
// preprocessing; checks nothing.
std::shared_ptr<DensityNet> MakeDensityNet(const v1::ModelSpec& spec, const DataShape& shape);

// The kind of the default scores of a model of a resolved spec (a property of the family and its
// hyper-parameters: EXACT, or for the VAE LOWER_BOUND / ESTIMATE).
v1::ScoreKind DefaultScoreKind(const v1::ModelSpec& spec);

// INVALID_ARGUMENT "<field> must be in [lo, hi], got v" unless lo <= v <= hi.
absl::Status CheckRange(const std::string& field, double value, double lo, double hi);

// A variable order: natural, or a permutation of 0..dim-1 drawn from `seed` (portable).
std::vector<int64_t> VariableOrder(v1::VariableOrder order, uint64_t seed, int64_t dim);

// Float [rows, cols] copy of all rows of `m`.
torch::Tensor RecordsToTensor(const RecordMatrix& m);

// Records of `shape` holding the rows of `x` ([rows, dim], values in the convention above).
RecordMatrix TensorToRecords(const torch::Tensor& x, const DataShape& shape);

// A tensor over all rows of `m` without copying 8-bit or float data (it borrows m's storage);
// bit-packed rows are unpacked into a uint8 copy.
torch::Tensor BorrowRows(const RecordMatrix& m);

// INVALID_ARGUMENT unless `m` has the kind, dim and categories of `s`; `what` names the records.
absl::Status CheckMatches(const RecordMatrix& m, const DataShape& s, const char* what);

// sum_d log Bernoulli(x_d | sigmoid(logits_d)) = sum_d x_d l_d - softplus(l_d), per row [B]:
// stable for any logit (never log of a rounded probability).
torch::Tensor BernoulliLogLikelihood(const torch::Tensor& logits, const torch::Tensor& x);

// log(mean(exp(x), dim)), stable.
torch::Tensor LogMeanExp(const torch::Tensor& x, int64_t dim);

}  // namespace logp

#endif  // LOGP_MODELS_DENSITY_NET_H_
