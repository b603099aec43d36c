// logpctl models score's analytics flags (--p_values, --fdr, --alpha, --typicality,
// --bootstrap_draws, --reference_model) and the printing of what they return.
#ifndef LOGP_CLIENT_LOGPCTL_ANALYSIS_H_
#define LOGP_CLIENT_LOGPCTL_ANALYSIS_H_

#include "client/client.h"
#include "logp/v1/model_service.pb.h"

namespace logp::logpctl {

// Sets the analytics fields of `options` from the flags (the server checks the values).
void AddAnalysisFlags(ScoringOptions* options);

// Whether `r` carries any analytics field.
bool HasAnalysis(const v1::ScoreResponse& r);

// One line per record: log p, then the p-value, its flags and log-ratio when present.
void PrintAnalyzedRecords(const v1::ScoreResponse& r);

// The batch-level results: flag counts, BH threshold, the typicality test.
void PrintAnalysisSummary(const v1::ScoreResponse& r);

}  // namespace logp::logpctl

#endif  // LOGP_CLIENT_LOGPCTL_ANALYSIS_H_
