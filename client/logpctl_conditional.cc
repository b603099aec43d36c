#include "client/logpctl_conditional.h"

#include <algorithm>
#include <cstdio>
#include <optional>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/logpctl_print.h"
#include "proto/cc/status_macros.h"

ABSL_FLAG(std::string, observed, "",
          "models marginal/impute: the observed dimensions, e.g. 0,2,5-9 (0-based; the values of "
          "the others in FILE are ignored).");
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(std::string, output);
ABSL_DECLARE_FLAG(uint64_t, n);
ABSL_DECLARE_FLAG(std::optional<uint64_t>, seed);
ABSL_DECLARE_FLAG(std::optional<int32_t>, importance_samples);

namespace logp {
using logpctl::PrintJson;
using logpctl::ScoreKindName;

namespace {

// The records of FILE and the request fields both commands share.
template <typename Request>
absl::StatusOr<Client*> Prepare(const ConditionalCommandContext& c, Request* request,
                                v1::Model* out) {
  ASSIGN_OR_RETURN(std::vector<uint32_t> dims, ParseDimList(absl::GetFlag(FLAGS_observed)));
  ASSIGN_OR_RETURN(Client * client, c.client());
  ASSIGN_OR_RETURN(const v1::Model model, c.target_model(client, c.args[0]));
  ASSIGN_OR_RETURN(const ReadOptions options, c.read_options(&model));
  *out = model;
  ASSIGN_OR_RETURN(const RecordMatrix records, ReadRecordsFile(c.args[1], options));
  if (IsJobId(c.args[0])) {
    request->set_job_id(c.args[0]);
  } else {
    request->set_model_id(c.args[0]);
  }
  *request->mutable_records() = Encode(records, 0, records.rows);
  for (uint32_t d : dims) request->add_observed_dims(d);
  if (const auto k = absl::GetFlag(FLAGS_importance_samples)) request->set_importance_samples(*k);
  request->set_seed(absl::GetFlag(FLAGS_seed).value_or(1));
  return client;
}

absl::Status WriteLines(const std::string& path, const std::vector<std::string>& lines) {
  std::FILE* file = path.empty() ? stdout : std::fopen(path.c_str(), "w");
  if (file == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot open ", path, " for writing"));
  }
  for (const std::string& l : lines) std::fprintf(file, "%s\n", l.c_str());
  if (!path.empty() && std::fclose(file) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<uint32_t>> ParseDimList(const std::string& text) {
  std::vector<uint32_t> out;
  auto bad = [&text]() {
    return absl::InvalidArgumentError(
        absl::StrCat("--observed must be a list of dimensions such as 0,2,5-9, got '", text, "'"));
  };
  if (text.empty()) return bad();
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::vector<absl::string_view> ends = absl::StrSplit(part, absl::MaxSplits('-', 1));
    uint32_t lo, hi;
    if (!absl::SimpleAtoi(ends[0], &lo)) return bad();
    hi = lo;
    if (ends.size() == 2 && (!absl::SimpleAtoi(ends[1], &hi) || hi < lo || hi - lo > 1000000)) {
      return bad();
    }
    for (uint64_t d = lo; d <= hi; ++d) out.push_back(static_cast<uint32_t>(d));
  }
  return out;
}

absl::StatusOr<int> MarginalCmd(const ConditionalCommandContext& c) {
  if (c.args.size() != 2) {
    std::fprintf(stderr,
                 "usage: logpctl models marginal ID FILE --observed=DIMS [read flags] "
                 "[--importance_samples=K --seed=S] [--output=FILE]\n");
    return 2;
  }
  v1::MarginalRequest request;
  v1::Model model;
  ASSIGN_OR_RETURN(Client * client, Prepare(c, &request, &model));
  ASSIGN_OR_RETURN(const v1::MarginalResponse r, client->Marginal(request));
  if (absl::GetFlag(FLAGS_json)) {
    RETURN_IF_ERROR(PrintJson(r));
    return 0;
  }
  // One line per record: log p(x_observed) in nats, and its standard error for an ESTIMATE.
  std::vector<std::string> lines;
  for (int i = 0; i < r.log_prob_size(); ++i) {
    lines.push_back(r.standard_error_size() > i
                        ? absl::StrFormat("%.9g\t%.3g", r.log_prob(i), r.standard_error(i))
                        : absl::StrFormat("%.9g", r.log_prob(i)));
  }
  const std::string output = absl::GetFlag(FLAGS_output);
  RETURN_IF_ERROR(WriteLines(output, lines));
  std::fprintf(stderr, "marginal log p(x_observed) over %d dimensions: %s, %s\n",
               request.observed_dims_size(), r.method().c_str(),
               ScoreKindName(r.score_kind()).c_str());
  return 0;
}

absl::StatusOr<int> ImputeCmd(const ConditionalCommandContext& c) {
  if (c.args.size() != 2) {
    std::fprintf(stderr,
                 "usage: logpctl models impute ID FILE --observed=DIMS [read flags] [--n=N "
                 "--seed=S --importance_samples=K] [--output=FILE.csv]\n");
    return 2;
  }
  v1::ImputeRequest request;
  v1::Model model;
  ASSIGN_OR_RETURN(Client * client, Prepare(c, &request, &model));
  request.set_num_samples(
      static_cast<uint32_t>(std::min<uint64_t>(absl::GetFlag(FLAGS_n), 1u << 31)));
  ASSIGN_OR_RETURN(const v1::ImputeResponse r, client->Impute(request));
  if (absl::GetFlag(FLAGS_json)) {
    RETURN_IF_ERROR(PrintJson(r));
    return 0;
  }
  RecordMatrix samples;
  {
    ASSIGN_OR_RETURN(samples, RecordMatrix::Empty(model.kind(), model.dim(),
                                                  static_cast<int32_t>(model.num_categories())));
    RETURN_IF_ERROR(DecodeAppend(r.samples(), 0, &samples));
  }
  // CSV: one completed record per line, record r's num_samples draws together.
  std::vector<std::string> lines;
  for (int64_t row = 0; row < samples.rows; ++row) {
    std::vector<std::string> values;
    for (int64_t col = 0; col < samples.cols; ++col) {
      values.push_back(absl::StrFormat("%.9g", samples.At(row, col)));
    }
    lines.push_back(absl::StrJoin(values, ","));
  }
  RETURN_IF_ERROR(WriteLines(absl::GetFlag(FLAGS_output), lines));
  std::string ess;
  if (r.effective_sample_size_size() > 0) {
    ess = absl::StrFormat(
        ", effective sample size min %.1f of %d",
        *std::min_element(r.effective_sample_size().begin(), r.effective_sample_size().end()),
        r.importance_samples());
  }
  std::fprintf(stderr, "%d completions per record: %s, %s%s%s\n", r.num_samples(),
               r.method().c_str(), r.exact() ? "exact draws" : "approximate draws", ess.c_str(),
               r.conditional_mean_size() > 0 ? " (conditional means: --json)" : "");
  return 0;
}

}  // namespace logp
