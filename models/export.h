// TorchScript export: a trained Model as a self-contained torch::jit::Module file that Python
// (torch.jit.load) or C++ (torch::jit::load) runs without logp.
//
// The module holds the net's tensors as buffers and defines, in TorchScript:
//   log_prob(x: Tensor) -> Tensor   float64 [N] log p(x) in nats for records [N, D] (any real
//                                   dtype, values as uploaded: preprocessing and its log-det
//                                   included): what Model::Score returns, to rounding;
//   sample(n: int, seed: int) -> Tensor
//                                   float32 [n, D] samples in the same value convention. Seeds
//                                   torch's global generator (torch.manual_seed) and draws from
//                                   it, so equal seeds give equal samples; they need not equal
//                                   Model::Sample's;
//   info() -> Dict[str, str]        family, kind, dim, num_categories and score_kind;
// and those five as attributes (family, kind, score_kind: str; dim, num_categories: int).
// log_prob raises (torch.jit.Error in Python, c10::Error in C++) for records that are not
// [N, D] or, for discrete data, whose values are not categories 0..K-1.
#ifndef LOGP_MODELS_EXPORT_H_
#define LOGP_MODELS_EXPORT_H_

#include <string>

#include "absl/status/statusor.h"
#include "models/model.h"

namespace logp {

// The bytes of a TorchScript file (torch::jit::Module::save) of `model`. UNIMPLEMENTED for a
// family whose export is not built (MAF, RealNVP, VAE); INTERNAL if LibTorch fails.
// Thread-safe (reads the model only).
absl::StatusOr<std::string> ExportTorchScript(const Model& model);

}  // namespace logp

#endif  // LOGP_MODELS_EXPORT_H_
