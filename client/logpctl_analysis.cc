#include "client/logpctl_analysis.h"

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

ABSL_FLAG(bool, p_values, false,
          "models score: conformal anomaly p-values against the model's reference scores.");
ABSL_FLAG(double, fdr, 0,
          "models score: flag records by Benjamini-Hochberg at this false discovery rate.");
ABSL_FLAG(double, alpha, 0, "models score: flag each record whose p-value is <= alpha.");
ABSL_FLAG(std::optional<double>, typicality, std::nullopt,
          "models score: typicality test of all the records as one batch at this level.");
ABSL_FLAG(int32_t, bootstrap_draws, 0, "models score --typicality: replicates (0: 1000).");
ABSL_FLAG(std::string, reference_model, "",
          "models score: background model id; prints log p(x) - log p_background(x).");

namespace logp::logpctl {

void AddAnalysisFlags(ScoringOptions* options) {
  options->reference_model_id = absl::GetFlag(FLAGS_reference_model);
  if (absl::GetFlag(FLAGS_p_values) || absl::GetFlag(FLAGS_fdr) != 0 ||
      absl::GetFlag(FLAGS_alpha) != 0) {
    v1::AnomalyOptions a;
    a.set_p_values(true);
    a.set_fdr_q(absl::GetFlag(FLAGS_fdr));
    a.set_alpha(absl::GetFlag(FLAGS_alpha));
    options->anomaly = a;
  }
  if (const std::optional<double> level = absl::GetFlag(FLAGS_typicality)) {
    v1::TypicalityOptions t;
    t.set_alpha(*level);
    t.set_bootstrap_draws(absl::GetFlag(FLAGS_bootstrap_draws));
    t.set_seed(options->seed);
    options->typicality = t;
  }
}

bool HasAnalysis(const v1::ScoreResponse& r) {
  return r.p_value_size() > 0 || r.log_ratio_size() > 0 || r.has_typicality();
}

void PrintAnalyzedRecords(const v1::ScoreResponse& r) {
  const bool p = r.p_value_size() > 0, ratio = r.log_ratio_size() > 0;
  const bool fdr = r.fdr_flagged_size() > 0, alpha = r.alpha_flagged_size() > 0;
  auto line = [](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < cells.size(); ++i) {
      out += i + 1 < cells.size() ? absl::StrFormat("%-14s", cells[i]) : cells[i];
    }
    std::printf("%s\n", out.c_str());
  };
  if (p || ratio) {
    std::vector<std::string> head = {"log_p"};
    if (p) head.push_back("p_value");
    if (fdr) head.push_back("fdr_flag");
    if (alpha) head.push_back("alpha_flag");
    if (ratio) head.push_back("log_ratio");
    line(head);
  }
  for (int i = 0; i < r.log_prob_size(); ++i) {
    std::vector<std::string> cells = {absl::StrFormat("%.9g", r.log_prob(i))};
    if (p) cells.push_back(absl::StrFormat("%.6g", r.p_value(i)));
    if (fdr) cells.push_back(r.fdr_flagged(i) ? "*" : "-");
    if (alpha) cells.push_back(r.alpha_flagged(i) ? "*" : "-");
    if (ratio) cells.push_back(absl::StrFormat("%.9g", r.log_ratio(i)));
    line(cells);
  }
  PrintAnalysisSummary(r);
}

void PrintAnalysisSummary(const v1::ScoreResponse& r) {
  int64_t alpha_flagged = 0;
  for (bool f : r.alpha_flagged()) alpha_flagged += f;
  if (r.p_value_size() > 0) {
    std::fprintf(stderr, "# p-values against %llu reference scores\n",
                 static_cast<unsigned long long>(r.num_reference_scores()));
  }
  if (r.fdr_flagged_size() > 0) {
    std::fprintf(stderr, "# BH: %llu of %d records flagged (p <= %.6g)\n",
                 static_cast<unsigned long long>(r.num_fdr_flagged()), r.fdr_flagged_size(),
                 r.fdr_threshold());
  }
  if (r.alpha_flagged_size() > 0) {
    std::fprintf(stderr, "# alpha: %lld of %d records flagged\n",
                 static_cast<long long>(alpha_flagged), r.alpha_flagged_size());
  }
  if (r.has_typicality()) {
    const v1::TypicalityResult& t = r.typicality();
    std::fprintf(stderr,
                 "# typicality: batch of %llu %s at level %.3g (mean NLL %.4f vs entropy "
                 "estimate %.4f; |difference| %.4f, threshold %.4f, bootstrap p = %.4g, %d "
                 "draws)\n",
                 static_cast<unsigned long long>(t.batch_size()),
                 t.typical() ? "TYPICAL" : "NOT TYPICAL", t.alpha(), t.batch_mean_nll(),
                 t.entropy_estimate(), t.statistic(), t.threshold(), t.p_value(),
                 t.bootstrap_draws());
  }
}

}  // namespace logp::logpctl
