// Marginals and conditionals of a trained model: log p(x_observed) and draws from
// p(x_missing | x_observed), each computed exactly where the family allows it and otherwise
// estimated by sampling and labelled so. Torch-free, like models/model.h.
//
// How each is obtained (the first that applies):
//   Marginal                                      Impute
//   1. closed form (Gaussian, Gaussian mixture)   closed form, exact (+ the conditional mean)
//   2. independent dimensions: the sum of the     independent dimensions: prior draws of the
//      observed PerDimensionLogProb terms         missing dimensions, exact
//   3. autoregressive prefix: the observed set    ancestral continuation (discrete): exact
//      is the first |o| of FactorOrder(), the
//      sum of their PerDimensionLogProb terms
//   4. enumeration (binary / categorical, exact   enumeration: the exact posterior over the
//      scores, K^|missing| <= 65536 completions): completions, exact draws from it
//      log-sum-exp of log p over the completions
//   5. importance sampling over the latent z      sampling-importance-resampling over z with
//      (VAE): ESTIMATE with a delta-method SE     the same proposal: approximate, with its ESS
//   6. importance sampling with the clamped       sampling-importance-resampling with the same
//      ancestral proposal (discrete models with   proposal: approximate, with its ESS
//      PerDimensionLogProb and an order):
//      ESTIMATE, w = prod_{d observed} p(x_d | x_<d)
//   7. otherwise FAILED_PRECONDITION (flows; continuous autoregressive models off their prefix,
//      and Impute of them; mask ensembles off enumeration; families behind preprocessing that
//      offer none of these).
//
// Thread-safety: as Model's const methods.
#ifndef LOGP_MODELS_CONDITIONAL_H_
#define LOGP_MODELS_CONDITIONAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "logp/v1/model_service.pb.h"
#include "models/model.h"
#include "proto/cc/records.h"

namespace logp {

// Completions of the missing dimensions that enumeration sums over at most, per record.
constexpr int64_t kMaxEnumeratedCompletions = 65536;

struct ConditionalOptions {
  // Importance samples per record of an ESTIMATE (Marginal) or of the resampling proposal
  // (Impute), for families that need them (the VAE); in [2, 10000] (default 1000).
  int importance_samples = 1000;
  // Seed of every random draw; equal seeds give equal answers.
  uint64_t seed = 0;
  // Forward-pass rows one call may evaluate in all (records x completions, x importance samples,
  // or x draws); RESOURCE_EXHAUSTED naming the product over it (default 2^22).
  int64_t max_forward_rows = int64_t{1} << 22;
  // Optional: polled between batches; true stops the call with CANCELLED.
  StopPoll stop;
};

// Per-record log p(x_observed) and how it was obtained.
struct MarginalScores {
  std::vector<double> log_prob;
  // ESTIMATE: per-record standard error (delta method over the k weights); empty when EXACT.
  std::vector<double> standard_error;
  v1::ScoreKind kind = v1::SCORE_KIND_EXACT;
  int importance_samples = 0;
  // "closed form", "independent dimensions", "autoregressive prefix", "enumeration (C
  // completions)", "importance sampling (k=...)", "importance sampling (k=..., ancestral
  // proposal)" or "full likelihood" (all dimensions observed).
  std::string method;
};

// Completed records drawn from p(x_missing | x_observed).
struct Imputations {
  // records.rows x num_samples rows: record r's draws are rows [r n, (r + 1) n), each with the
  // observed values of record r.
  RecordMatrix samples;
  // Gaussian families: E[x | x_observed] per record, row-major [rows x dim]; empty otherwise.
  std::vector<double> conditional_mean;
  // True when the draws are exact draws of the conditional; false for resampled ones.
  bool exact = true;
  // Approximate draws: per-record effective sample size (sum w)^2 / sum w^2 of the k proposals.
  std::vector<double> effective_sample_size;
  int importance_samples = 0;
  std::string method;
};

// INVALID_ARGUMENT naming observed_dims unless `dims` is a non-empty set of distinct indices in
// [0, dim). All dimensions observed is allowed (Marginal is then log p(x) as Score gives it).
absl::Status CheckObservedDims(const std::vector<int64_t>& dims, int64_t dim);

// log p(x_observed) for every row of `records` (which must match the model, INVALID_ARGUMENT
// otherwise; the values of the missing dimensions are ignored but must be valid values).
// FAILED_PRECONDITION when the family has no exact or sound estimated marginal for this set;
// RESOURCE_EXHAUSTED over options.max_forward_rows; CANCELLED when options.stop said stop.
absl::StatusOr<MarginalScores> Marginal(const Model& model, const RecordMatrix& records,
                                        const std::vector<int64_t>& observed_dims,
                                        const ConditionalOptions& options);

// `num_samples` (>= 1) draws per record from p(x_missing | x_observed). Errors as Marginal.
absl::StatusOr<Imputations> Impute(const Model& model, const RecordMatrix& records,
                                   const std::vector<int64_t>& observed_dims, int64_t num_samples,
                                   const ConditionalOptions& options);

}  // namespace logp

#endif  // LOGP_MODELS_CONDITIONAL_H_
