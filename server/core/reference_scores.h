// Reference scores: the log-likelihoods of a model's held-out (validation) records under its
// default scoring, computed when its job publishes it and kept with it (ModelStore writes them
// to a checksummed sidecar file), against which Score computes conformal anomaly p-values and
// the typicality test (server/core/score_analysis.h).
#ifndef LOGP_SERVER_CORE_REFERENCE_SCORES_H_
#define LOGP_SERVER_CORE_REFERENCE_SCORES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/model.h"

namespace logp {

// At most this many reference scores are kept: a validation set larger than this is scored in
// full, then a seeded uniform subsample of this size kept (a uniform subsample of exchangeable
// records is exchangeable with them too).
inline constexpr int64_t kMaxReferenceScores = 100000;

struct ReferenceScores {
  // The kept log-likelihoods, sorted ascending (-inf possible for continuous records that
  // overflow the net's arithmetic, as in Model::LogProb).
  std::vector<double> sorted_log_prob;
  // How they were obtained (Scores::kind, Scores::importance_samples): a request's scores are
  // comparable with them only when obtained the same way.
  v1::ScoreKind kind = v1::SCORE_KIND_UNSPECIFIED;
  int32_t importance_samples = 0;
  // The seed of Model::Score (the job's seed) and of the subsample.
  uint64_t seed = 0;
  // Validation records scored (before the subsample).
  int64_t num_scored = 0;
};

// Scores `held_out` with `model`'s default scoring (ScoreOptions{} with `seed`), keeps at most
// `max_kept` of them (a deterministic subsample for `seed`) and sorts them. `stop` (optional) is
// polled between score batches (CANCELLED). Errors of Model::Score otherwise.
absl::StatusOr<ReferenceScores> ComputeReferenceScores(const Model& model,
                                                       const RecordMatrix& held_out, uint64_t seed,
                                                       const StopPoll& stop = nullptr,
                                                       int64_t max_kept = kMaxReferenceScores);

// A portable byte encoding (magic "LOGPREF1", little-endian fields); Parse is its inverse and
// returns DATA_LOSS "<what>: ..." for bytes it did not write (the file's frame checks the
// checksum before).
std::string SerializeReferenceScores(const ReferenceScores& reference);
absl::StatusOr<ReferenceScores> ParseReferenceScores(absl::string_view bytes,
                                                     const std::string& what);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_REFERENCE_SCORES_H_
