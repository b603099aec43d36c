// Fast sequential sampling of the binary autoregressive families: each record keeps the state
// that the next conditional needs (MADE: the first hidden layer's pre-activation, updated by one
// input column per sampled one, and deeper units computed once, when their inputs are known;
// NADE: the shared hidden pre-activation and its sigmoid; FVSBN: the sampled prefix), so that
// drawing n records costs about one forward pass each instead of D. The loops themselves are in
// models/sampling_kernels.h; this file turns a family's parameters into their coordinates and
// runs them over the records in parallel.
//
// Distribution: the same as the families' per-dimension reference samplers (x_d = 1 when a
// uniform falls below sigmoid(logit_d)), with all uniforms drawn up front from the caller's
// generator: equal seeds give equal samples on one machine. Not bit-identical to the reference
// samplers, which draw their uniforms in another sequence.
#ifndef LOGP_MODELS_FAMILIES_AR_SAMPLING_H_
#define LOGP_MODELS_FAMILIES_AR_SAMPLING_H_

#include <cstdint>

#include "models/density_net.h"
#include "models/sampling_kernels.h"

namespace logp {

class MadeImpl;
class NadeImpl;
class FvsbnImpl;

// Sampling coordinates of mask 0 of a binary MADE (the mask Sample draws from), any depth, with
// or without direct connections, folded or not. The caller checks the data kind is binary.
MadeSamplingWeights MadeSamplingWeightsOf(MadeImpl& made);
// An FVSBN as a MADE with no hidden layers and a direct weight.
MadeSamplingWeights FvsbnSamplingWeightsOf(FvsbnImpl& fvsbn);
NadeSamplingWeights NadeSamplingWeightsOf(NadeImpl& nade);

// n samples [n, D] (float 0/1, variable index). Uniforms [n, D] come from one torch::rand call
// on `gen`; records are sampled in chunks of kSampleChunkRows spread over at::get_num_threads()
// threads, calling PollStop() on the calling thread between groups of chunks (every few tens of
// milliseconds at D = 784, H = 500).
torch::Tensor SampleIncrementally(const MadeSamplingWeights& w, int64_t n, at::Generator& gen);
torch::Tensor SampleIncrementally(const NadeSamplingWeights& w, int64_t n, at::Generator& gen);

// The logits [B, D] (variable index) that the incremental state gives for records x [B, D]: for
// tests, which check them against the families' forward passes.
torch::Tensor IncrementalLogits(const MadeSamplingWeights& w, const torch::Tensor& x);
torch::Tensor IncrementalLogits(const NadeSamplingWeights& w, const torch::Tensor& x);

}  // namespace logp

#endif  // LOGP_MODELS_FAMILIES_AR_SAMPLING_H_
