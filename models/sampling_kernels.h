// The hot loops of sequential sampling for binary autoregressive families (MADE, FVSBN, NADE),
// in plain C++ over float arrays: no LibTorch headers (models/ar_sampling.h prepares the weights
// and calls these). Records are processed in chunks of kSampleChunkRows that keep their state in
// L2; within a chunk the loop runs over positions of the order, each record keeping the state it
// needs to produce the next conditional without a forward pass of the whole network.
//
// Every kernel reads pre-drawn uniforms u [rows, D] (variable index, as drawn by the caller from
// its generator) and sets x_d = 1 exactly when u[r, d] < sigmoid(logit_d), the rule of the
// families' reference samplers; it writes x [rows, D] as 0/1 floats in variable index. The work
// of a record depends on nothing but its own uniforms, so results do not depend on how rows are
// split between calls or threads. Thread-compatible: the weight structs are read only.
#ifndef LOGP_MODELS_SAMPLING_KERNELS_H_
#define LOGP_MODELS_SAMPLING_KERNELS_H_

#include <cstdint>
#include <vector>

namespace logp {

// Records per chunk of state: 64 records of 500 hidden units are 128 KB per layer.
inline constexpr int64_t kSampleChunkRows = 64;

// A binary MADE of one mask in sampling coordinates: inputs and outputs in position order
// (position i is variable order[i], of degree i + 1); every hidden layer's units sorted by
// degree. All weights are the masked ones (0 where the mask cuts a connection).
//   hidden layer 1:  pre-activation a1 = b1 + W1 x, kept per record and updated by one column
//                    of W1 when x_i = 1 (only units of degree >= i + 1 read x_i);
//   hidden layer l:  a unit of degree k reads units of degree <= k of layer l - 1, so it is
//                    computed once, at the first position whose inputs it no longer waits for
//                    (position k: its inputs have degrees <= k, i.e. positions < k);
//   output i:        bias_i + W_out[i, :] . h_L (units of degree <= i) + W_direct[i, :i] x_<i.
// With no hidden layers and a direct weight this is an FVSBN.
struct MadeSamplingWeights {
  int64_t dim = 0;
  std::vector<int64_t> order;  // order[i]: the variable at position i
  struct Layer {
    int64_t units = 0;
    // Layer 1: [dim][units], row i = the column of W1 for position i. Layers >= 2:
    // [units][previous units], row-major.
    std::vector<float> weight;
    std::vector<float> bias;  // [units]
    // count[k] = units of degree <= k, k in [0, dim]: units are sorted, so a prefix.
    std::vector<int64_t> count;
  };
  std::vector<Layer> hidden;
  std::vector<float> out_weight;  // [dim][last hidden units]; empty with no hidden layers
  std::vector<float> out_bias;    // [dim]
  std::vector<float> direct;      // [dim][dim] strictly lower triangular, or empty
};

// Samples `rows` records with uniforms u into x (see above).
void SampleMadeBinary(const MadeSamplingWeights& w, int64_t rows, const float* u, float* x);

// The logits each output would have had, for records already sampled (or any binary records)
// x [rows, D] (variable index), computed by the same incremental recurrence as SampleMadeBinary:
// logits [rows, D] in variable index. For tests: it must equal the network's forward pass.
void MadeIncrementalLogits(const MadeSamplingWeights& w, int64_t rows, const float* x,
                           float* logits);

// A NADE in position order: a = c + sum_{j < i} W[:, j] x_j kept per record, h = sigmoid(a)
// recomputed only when a changes (x_j = 1), logit_i = b_i + V_i . h.
struct NadeSamplingWeights {
  int64_t dim = 0, hidden = 0;
  std::vector<int64_t> order;
  std::vector<float> w;  // [dim][hidden]: row i = W[:, order[i]]
  std::vector<float> c;  // [hidden]
  std::vector<float> v;  // [dim][hidden]: row i = V[order[i], :]
  std::vector<float> b;  // [dim], position order
};

void SampleNade(const NadeSamplingWeights& w, int64_t rows, const float* u, float* x);
void NadeIncrementalLogits(const NadeSamplingWeights& w, int64_t rows, const float* x,
                           float* logits);

}  // namespace logp

#endif  // LOGP_MODELS_SAMPLING_KERNELS_H_
