// What Score computes beyond log p(x) (ScoreRequest.anomaly, .typicality,
// .reference_model_id): conformal anomaly p-values with Benjamini-Hochberg and per-record
// alpha flags, the bootstrap typicality test of the request's records as one batch, and the
// likelihood ratio against a background model. The statistics are analytics/statistics.h's;
// this file checks the request, finds what they need and fills the response. gRPC-free.
#ifndef LOGP_SERVER_CORE_SCORE_ANALYSIS_H_
#define LOGP_SERVER_CORE_SCORE_ANALYSIS_H_

#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "logp/v1/model_service.pb.h"
#include "server/core/call_control.h"
#include "server/core/scoring.h"

namespace logp {

// Typicality bootstrap: default and most replicates, and the most replicate-records
// (draws x batch size) one request may cost.
inline constexpr int kDefaultBootstrapDraws = 1000;
inline constexpr int kMaxBootstrapDraws = 10000;
inline constexpr int64_t kMaxBootstrapWork = 100000000;
inline constexpr double kDefaultTypicalityAlpha = 0.05;

// What the analysis of one request needs, found before scoring.
struct ScoreAnalysis {
  // The target's reference scores when p-values or typicality are asked for.
  std::shared_ptr<const ReferenceScores> reference;
  // The background model when reference_model_id is given.
  std::optional<ResolvedModel> background;
  std::string background_id;
};

// Checks the options and finds the reference scores and the background model (through `models`,
// so with the caller's tenant checks). INVALID_ARGUMENT naming the field for alpha or fdr_q
// outside [0, 1) or bootstrap_draws outside [0, 10000]; RESOURCE_EXHAUSTED over the bootstrap
// work limit; FAILED_PRECONDITION for p-values or typicality on a job target or a model without
// reference scores, and for a background model whose data differ from the target's (naming
// both); NOT_FOUND for an unknown (or invisible) background model; DATA_LOSS for unreadable
// reference scores.
absl::StatusOr<ScoreAnalysis> PrepareScoreAnalysis(const ModelResolver& models,
                                                   const v1::ScoreRequest& request,
                                                   const ResolvedModel& target,
                                                   int64_t num_records);

// Fills the response's analytics fields from the target's `scores` of `records`; scores the
// records with the background model (its default scoring, the request's seed).
// FAILED_PRECONDITION when `scores` were not obtained as the reference scores were (kind or
// importance samples differ): p-values compare like with like only.
absl::Status ApplyScoreAnalysis(const ScoreAnalysis& analysis, const v1::ScoreRequest& request,
                                const RecordMatrix& records, const Scores& scores,
                                const CallControl& call, v1::ScoreResponse* response);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_SCORE_ANALYSIS_H_
