#include "server/core/score_analysis.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "analytics/statistics.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace {

bool WantsAnomaly(const v1::ScoreRequest& r) {
  return r.has_anomaly() &&
         (r.anomaly().p_values() || r.anomaly().fdr_q() != 0 || r.anomaly().alpha() != 0);
}

// 0 (unset) or in (0, 1).
absl::Status CheckLevel(double value, const char* field) {
  if (value == 0 || (value > 0 && value < 1)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, " must be in (0, 1) (or 0 for unset), got ", value));
}

std::string ShapeWords(const DataShape& s) {
  std::string words = absl::StrCat(v1::DataKind_Name(s.kind), ", dim ", s.dim);
  if (s.kind == v1::DATA_KIND_CATEGORICAL)
    absl::StrAppend(&words, ", ", s.num_categories, " categories");
  return words;
}

std::string ScoringWords(v1::ScoreKind kind, int32_t k) {
  std::string words = v1::ScoreKind_Name(kind);
  if (kind == v1::SCORE_KIND_ESTIMATE) absl::StrAppend(&words, " with k = ", k);
  return words;
}

}  // namespace

absl::StatusOr<ScoreAnalysis> PrepareScoreAnalysis(const ModelResolver& models,
                                                   const v1::ScoreRequest& request,
                                                   const ResolvedModel& target,
                                                   int64_t num_records) {
  ScoreAnalysis analysis;
  RETURN_IF_ERROR(CheckLevel(request.anomaly().fdr_q(), "anomaly.fdr_q"));
  RETURN_IF_ERROR(CheckLevel(request.anomaly().alpha(), "anomaly.alpha"));
  const bool typicality = request.has_typicality();
  if (typicality) {
    const v1::TypicalityOptions& t = request.typicality();
    RETURN_IF_ERROR(CheckLevel(t.alpha(), "typicality.alpha"));
    if (t.bootstrap_draws() < 0 || t.bootstrap_draws() > kMaxBootstrapDraws) {
      return absl::InvalidArgumentError(absl::StrCat("typicality.bootstrap_draws must be in [0, ",
                                                     kMaxBootstrapDraws, "], got ",
                                                     t.bootstrap_draws()));
    }
    const int64_t draws = t.bootstrap_draws() == 0 ? kDefaultBootstrapDraws : t.bootstrap_draws();
    if (draws * num_records > kMaxBootstrapWork) {
      return absl::ResourceExhaustedError(
          absl::StrCat("typicality: bootstrap_draws x records may be at most ", kMaxBootstrapWork,
                       ", got ", draws, " x ", num_records));
    }
    if (num_records < 1) {
      return absl::InvalidArgumentError("typicality needs a batch of at least one record");
    }
  }
  if (WantsAnomaly(request) || typicality) {
    const char* what = typicality ? "the typicality test" : "anomaly p-values";
    if (!request.job_id().empty() || !target.reference) {
      return absl::FailedPreconditionError(absl::StrCat(
          what,
          " need a published model's reference scores; a job's checkpoint has none (use "
          "the model_id the job published)"));
    }
    ASSIGN_OR_RETURN(analysis.reference, target.reference());
    if (analysis.reference == nullptr || analysis.reference->sorted_log_prob.size() < 2) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, ": model ", request.model_id(),
          " has no reference scores (published before they were kept); retrain it to get them"));
    }
  }
  if (!request.reference_model_id().empty()) {
    analysis.background_id = request.reference_model_id();
    ASSIGN_OR_RETURN(analysis.background, models(request.reference_model_id(), ""));
    const DataShape& a = target.model->shape();
    const DataShape& b = analysis.background->model->shape();
    if (a.kind != b.kind || a.dim != b.dim ||
        (a.kind == v1::DATA_KIND_CATEGORICAL && a.num_categories != b.num_categories)) {
      const std::string target_id =
          request.model_id().empty() ? request.job_id() : request.model_id();
      return absl::FailedPreconditionError(
          absl::StrCat("reference_model_id: model ", target_id, " scores ", ShapeWords(a),
                       " records, model ", request.reference_model_id(), " ", ShapeWords(b),
                       "; a likelihood ratio needs the same data"));
    }
  }
  return analysis;
}

absl::Status ApplyScoreAnalysis(const ScoreAnalysis& analysis, const v1::ScoreRequest& request,
                                const RecordMatrix& records, const Scores& scores,
                                const CallControl& call, v1::ScoreResponse* response) {
  if (analysis.reference != nullptr) {
    const ReferenceScores& ref = *analysis.reference;
    if (scores.kind != ref.kind || scores.importance_samples != ref.importance_samples) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the reference scores of model ", request.model_id(), " are ",
          ScoringWords(ref.kind, ref.importance_samples), ", this request's are ",
          ScoringWords(scores.kind, scores.importance_samples),
          "; leave importance_samples unset (the model's default) for p-values and typicality"));
    }
    response->set_num_reference_scores(ref.sorted_log_prob.size());
    if (WantsAnomaly(request)) {
      const std::vector<double> p = ConformalPValues(ref.sorted_log_prob, scores.log_prob);
      response->mutable_p_value()->Assign(p.begin(), p.end());
      if (const double q = request.anomaly().fdr_q(); q != 0) {
        const BhDecision bh = BenjaminiHochberg(p, q);
        for (bool r : bh.rejected) response->add_fdr_flagged(r);
        response->set_fdr_threshold(bh.threshold);
        response->set_num_fdr_flagged(static_cast<uint64_t>(bh.num_rejected));
      }
      if (const double alpha = request.anomaly().alpha(); alpha != 0) {
        for (double v : p) response->add_alpha_flagged(v <= alpha);
      }
    }
    if (request.has_typicality()) {
      const v1::TypicalityOptions& t = request.typicality();
      const double alpha = t.alpha() == 0 ? kDefaultTypicalityAlpha : t.alpha();
      const int draws = t.bootstrap_draws() == 0 ? kDefaultBootstrapDraws : t.bootstrap_draws();
      RETURN_IF_ERROR(call.Check("the typicality test"));
      if (!ref.sorted_log_prob.empty() && !std::isfinite(ref.sorted_log_prob.front())) {
        // A held-out record of zero density (a continuous record that overflows the net's float
        // arithmetic) makes the entropy estimate infinite: there is no test to make.
        return absl::FailedPreconditionError(absl::StrCat(
            "the reference scores of model ", request.model_id(),
            " include a held-out record of zero density (log p = -inf): the entropy estimate of "
            "the typicality test is undefined"));
      }
      const TypicalityDecision d =
          TypicalityTest(ref.sorted_log_prob, scores.log_prob, alpha, draws, t.seed());
      v1::TypicalityResult* r = response->mutable_typicality();
      r->set_entropy_estimate(d.entropy_estimate);
      double sum = 0;
      for (double v : scores.log_prob) sum += v;
      r->set_batch_mean_nll(-sum / static_cast<double>(scores.log_prob.size()));
      r->set_statistic(d.statistic);
      r->set_threshold(d.threshold);
      r->set_typical(d.typical);
      r->set_p_value(d.p_value);
      r->set_batch_size(static_cast<uint64_t>(d.batch_size));
      r->set_reference_size(static_cast<uint64_t>(d.reference_size));
      r->set_bootstrap_draws(d.bootstrap_draws);
      r->set_alpha(alpha);
    }
  }
  if (analysis.background) {
    ScoreOptions options;
    options.seed = request.seed();
    options.stop = call.AsStopPoll();
    absl::StatusOr<Scores> background = analysis.background->model->Score(records, options);
    if (!background.ok()) return call.Explain(background.status(), "scoring the background model");
    for (size_t i = 0; i < scores.log_prob.size(); ++i) {
      response->add_log_ratio(scores.log_prob[i] - background->log_prob[i]);
    }
  }
  return absl::OkStatus();
}

}  // namespace logp
