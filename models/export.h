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
// and for the VAE, whose log p is intractable:
//   elbo(x, num_draws: int, seed: int) -> Tensor
//                                   the ELBO, its expectation the mean of num_draws draws of
//                                   z per record (a Monte Carlo estimate of a lower bound on
//                                   log p(x), standard error sd / sqrt(num_draws));
//   iwae(x, k: int, seed: int) -> Tensor   the importance-weighted estimate with k samples;
// its log_prob is Score's default (the ELBO from VaeImpl::kElboSamples = 100 draws, or IWAE-k
// when the spec sets importance_samples = k), drawn after torch.manual_seed(0): reproducible,
// equal to Score's only within the estimates' standard errors (other draws);
// and those five as attributes (family, kind, score_kind: str; dim, num_categories: int).
// log_prob raises (torch.jit.Error in Python, c10::Error in C++) for records that are not
// [N, D] or, for discrete data, whose values are not categories 0..K-1.
#ifndef LOGP_MODELS_EXPORT_H_
#define LOGP_MODELS_EXPORT_H_

#include <string>

#include "absl/status/statusor.h"
#include "models/model.h"

namespace logp {

// The bytes of a TorchScript file (torch::jit::Module::save) of `model`. Every family exports
// (MAF and RealNVP with their eval-mode batch norm; models/export_flows.cc); UNIMPLEMENTED for a
// family whose export is not built; INTERNAL if LibTorch fails.
// Thread-safe (reads the model only).
absl::StatusOr<std::string> ExportTorchScript(const Model& model);

}  // namespace logp

#endif  // LOGP_MODELS_EXPORT_H_
