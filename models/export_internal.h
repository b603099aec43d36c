// Shared by the TorchScript export's translation units (models/export.cc and
// models/export_flows.cc): not part of the public API (models/export.h).
#ifndef LOGP_MODELS_EXPORT_INTERNAL_H_
#define LOGP_MODELS_EXPORT_INTERNAL_H_

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "models/families/flows.h"

namespace logp {
namespace export_internal {

// What one family contributes: TorchScript methods
//   _inner_log_prob(self, x: Tensor) -> Tensor   (x float [N, D] in the net's input space)
//   _inner_sample(self, n: int) -> Tensor        (float [n, D], drawing from the global RNG)
// reading the net's tensors as self.<prefix><name with '.' as '_'>.
struct FamilySource {
  std::string methods;
  // Extra buffers (orders, masks) the methods read.
  std::vector<std::pair<std::string, torch::Tensor>> buffers;
};

// A double as a TorchScript float literal (never an int literal; inf as float("inf")).
std::string Lit(double v);

// MAF and RealNVP (FlowNet): each step's forward map and inverse, mirroring
// models/families/flows.cc in eval mode (batch norm with its running statistics).
absl::StatusOr<FamilySource> FlowSource(const std::string& prefix, const FlowNet& net, int64_t dim);

}  // namespace export_internal
}  // namespace logp

#endif  // LOGP_MODELS_EXPORT_INTERNAL_H_
