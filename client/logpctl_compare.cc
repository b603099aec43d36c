#include "client/logpctl_compare.h"

#include <cstdio>
#include <optional>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "client/logpctl_print.h"
#include "proto/cc/status_macros.h"

// Defined in logpctl.cc.
ABSL_DECLARE_FLAG(std::string, dataset);
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(std::optional<int32_t>, importance_samples);
ABSL_DECLARE_FLAG(std::optional<uint64_t>, seed);

namespace logp::logpctl {
namespace {

std::string KindWords(v1::ScoreKind kind, int32_t k) {
  if (kind == v1::SCORE_KIND_ESTIMATE) {
    return absl::StrCat(ScoreKindName(kind), " (importance-weighted, k = ", k, ")");
  }
  return ScoreKindName(kind);
}

}  // namespace

absl::StatusOr<int> ModelsCompare(const std::vector<std::string>& args,
                                  const std::function<absl::StatusOr<Client*>()>& client) {
  if (args.size() != 2 || absl::GetFlag(FLAGS_dataset).empty()) {
    std::fprintf(stderr,
                 "usage: logpctl models compare A B --dataset=ID [--importance_samples=K "
                 "--seed=S]\n");
    return 2;
  }
  ScoringOptions options;
  options.importance_samples = absl::GetFlag(FLAGS_importance_samples);
  options.seed = absl::GetFlag(FLAGS_seed).value_or(0);
  ASSIGN_OR_RETURN(Client * c, client());
  ASSIGN_OR_RETURN(const v1::CompareModelsResponse r,
                   c->CompareModels(args[0], args[1], absl::GetFlag(FLAGS_dataset), options));
  if (absl::GetFlag(FLAGS_json)) {
    RETURN_IF_ERROR(PrintJson(r));
    return 0;
  }
  const bool bounds =
      r.score_kind_a() != v1::SCORE_KIND_EXACT || r.score_kind_b() != v1::SCORE_KIND_EXACT;
  PrintFields({
      {"records", absl::StrCat(r.num_records())},
      {"mean log p (A)", absl::StrFormat("%.4f nats   %s", r.mean_log_prob_a(),
                                         KindWords(r.score_kind_a(), r.importance_samples_a()))},
      {"mean log p (B)", absl::StrFormat("%.4f nats   %s", r.mean_log_prob_b(),
                                         KindWords(r.score_kind_b(), r.importance_samples_b()))},
      {"A - B", absl::StrFormat("%.4f ± %.4f nats (paired standard error)", r.mean_difference(),
                                r.standard_error())},
      {"95% interval", absl::StrFormat("[%.4f, %.4f]", r.ci95_low(), r.ci95_high())},
      {"z", absl::StrFormat("%.3f", r.z())},
      {"p-value", absl::StrFormat("%.3g (two-sided, normal approximation)", r.p_value())},
  });
  if (r.num_records() < 30) {
    std::printf("note: fewer than 30 records; the normal approximation is optimistic\n");
  }
  if (bounds) {
    std::printf("note: a bound or estimate is compared; the difference is not a bound\n");
  }
  return 0;
}

}  // namespace logp::logpctl
