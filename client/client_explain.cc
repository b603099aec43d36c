// Client::ScorePerDimension: Score with per_dimension, in requests small enough for the server's
// cap on terms per request (ScoreRequest.per_dimension).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "client/client.h"

namespace logp {
namespace {

// The server's default cap on records x dim per request (server/core/scoring.h).
constexpr int64_t kMaxTermsPerRequest = 4000000;

}  // namespace

absl::StatusOr<v1::ScoreResponse> Client::ScorePerDimension(const std::string& model_id,
                                                            const RecordMatrix& records) {
  const int64_t batch = std::max<int64_t>(
      1, std::min<int64_t>(10000, kMaxTermsPerRequest / std::max<int64_t>(1, records.cols)));
  v1::ScoreRequest request;
  if (IsJobId(model_id)) {
    request.set_job_id(model_id);
  } else {
    request.set_model_id(model_id);
  }
  request.set_per_dimension(true);
  v1::ScoreResponse all;
  for (int64_t begin = 0; begin < records.rows; begin += batch) {
    const int64_t end = std::min(records.rows, begin + batch);
    *request.mutable_records() = Encode(records, begin, end);
    absl::StatusOr<v1::ScoreResponse> response = ScoreRaw(request);
    if (!response.ok()) return response.status();
    if (response->log_prob_size() != end - begin ||
        response->dimension_log_prob_size() != (end - begin) * records.cols) {
      return absl::InternalError(absl::StrCat("server returned ", response->log_prob_size(),
                                              " scores and ", response->dimension_log_prob_size(),
                                              " terms for ", end - begin, " records of dim ",
                                              records.cols));
    }
    all.mutable_log_prob()->MergeFrom(response->log_prob());
    all.mutable_dimension_log_prob()->MergeFrom(response->dimension_log_prob());
    all.set_score_kind(response->score_kind());
    all.set_checkpoint_step(response->checkpoint_step());
  }
  return all;
}

}  // namespace logp
