// Compute threads of this process's LibTorch and BLAS. Torch-free.
#ifndef LOGP_MODELS_COMPUTE_THREADS_H_
#define LOGP_MODELS_COMPUTE_THREADS_H_

namespace logp {

// OpenBLAS's pool for matrix products gets `threads` (process-wide); ATen's OpenMP loops on the
// calling thread get `threads`, at most one per physical core. Does nothing for threads <= 0.
void SetComputeThreads(int threads);

}  // namespace logp

#endif  // LOGP_MODELS_COMPUTE_THREADS_H_
