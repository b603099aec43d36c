// Model::PerDimensionLogProb and Model::FactorOrder: the chain-rule terms log p(x_d | x_<d)
// that every family with an exact sequential or independent factorisation computes
// (DensityNet::PerDimensionLogProb).
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "models/density_net.h"
#include "models/model.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace {

// Why a model has no per-dimension decomposition, for FAILED_PRECONDITION.
std::string NoDecompositionReason(const v1::ModelSpec& spec) {
  const FamilyInfo* info = FindFamily(spec.family());
  std::string subject = info != nullptr ? info->name : "unknown";
  std::string why;
  switch (spec.family()) {
    case v1::MODEL_FAMILY_MADE:
      absl::StrAppend(&subject, " with num_masks = ", spec.made().num_masks());
      why =
          ": an ensemble over variable orders is a mixture with no chain rule in one order "
          "(train with num_masks = 1)";
      break;
    case v1::MODEL_FAMILY_VAE:
      why =
          ": its score is a bound or estimate of log p(x) over a latent variable, not a "
          "product of per-dimension conditionals";
      break;
    case v1::MODEL_FAMILY_MAF:
    case v1::MODEL_FAMILY_REALNVP:
      why =
          ": a flow's change of variables mixes the dimensions, so log p(x) does not split "
          "into per-dimension terms";
      break;
    default:
      break;
  }
  return absl::StrCat("model family ", subject, " has no per-dimension decomposition of log p(x)",
                      why);
}

}  // namespace

absl::StatusOr<std::vector<double>> Model::PerDimensionLogProb(const RecordMatrix& records,
                                                               const StopPoll& stop) const {
  RETURN_IF_ERROR(CheckMatches(records, shape(), "records"));
  DensityNet& net = NetOf(*this);
  const int64_t dim = shape().dim;
  std::vector<double> out;
  try {
    c10::InferenceMode guard;
    StopScope stop_scope(&stop);
    torch::NoGradGuard no_grad;
    const torch::Tensor base = BorrowRows(records);
    // An empty batch still says whether the family has a decomposition.
    const int64_t rows = base.size(0);
    out.reserve(static_cast<size_t>(rows * dim));
    for (int64_t b = 0; b < std::max<int64_t>(rows, 1); b += kEvalBatchRows) {
      PollStop();
      const int64_t e = std::min(rows, b + kEvalBatchRows);
      torch::Tensor terms = net.PerDimensionLogProb(base.slice(0, b, e).to(torch::kFloat));
      if (!terms.defined()) return absl::FailedPreconditionError(NoDecompositionReason(spec()));
      if (terms.dim() != 2 || terms.size(0) != e - b || terms.size(1) != dim) {
        return absl::InternalError(absl::StrCat("per-dimension terms of shape ",
                                                c10::str(terms.sizes()), " for ", e - b,
                                                " records of dim ", dim));
      }
      terms = terms.to(torch::kDouble).contiguous();
      if (shape().kind == v1::DATA_KIND_CONTINUOUS) {
        const double minus_inf = -std::numeric_limits<double>::infinity();
        terms = torch::nan_to_num(terms, minus_inf, minus_inf, minus_inf);
      }
      out.insert(out.end(), terms.data_ptr<double>(), terms.data_ptr<double>() + terms.numel());
    }
  } catch (const CallStopped&) {
    return absl::CancelledError("scoring stopped");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("per-dimension scoring: ", e.what()));
  }
  return out;
}

std::vector<int64_t> Model::FactorOrder() const { return NetOf(*this).FactorOrder(); }

}  // namespace logp
