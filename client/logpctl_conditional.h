// logpctl models marginal / models impute (client/logpctl_conditional.cc).
#ifndef LOGP_CLIENT_LOGPCTL_CONDITIONAL_H_
#define LOGP_CLIENT_LOGPCTL_CONDITIONAL_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "client/data_files.h"

namespace logp {

// What the two commands need from logpctl's main file.
struct ConditionalCommandContext {
  std::vector<std::string> args;  // {ID, FILE}
  std::function<absl::StatusOr<Client*>()> client;
  // The read flags (--kind, --binarize_threshold, ...) for records of `model`.
  std::function<absl::StatusOr<ReadOptions>(const v1::Model*)> read_options;
  // The model (or job, "job-...") an id names, with its data shape.
  std::function<absl::StatusOr<v1::Model>(Client*, const std::string&)> target_model;
};

// models marginal ID FILE --observed=DIMS [--importance_samples=K --seed=S] [--output=FILE]
absl::StatusOr<int> MarginalCmd(const ConditionalCommandContext& c);
// models impute ID FILE --observed=DIMS [--n=N --seed=S --importance_samples=K] [--output=F.csv]
absl::StatusOr<int> ImputeCmd(const ConditionalCommandContext& c);

// "0,2,5-7" -> {0, 2, 5, 6, 7}; INVALID_ARGUMENT naming --observed otherwise.
absl::StatusOr<std::vector<uint32_t>> ParseDimList(const std::string& text);

}  // namespace logp

#endif  // LOGP_CLIENT_LOGPCTL_CONDITIONAL_H_
