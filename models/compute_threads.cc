// SetComputeThreads (models/compute_threads.h).
#include "models/compute_threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>

namespace logp {

void SetComputeThreads(int threads) {
  if (threads <= 0) return;
  // Matrix products run in OpenBLAS's thread pool, which LibTorch does not size: it gets the whole
  // budget (process-wide; a no-op with another BLAS).
  using SetBlasThreads = void (*)(int);
  if (auto set_blas =
          reinterpret_cast<SetBlasThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set_blas(threads);
  }
  // ATen's own (OpenMP) loops on the calling thread: at most LibTorch's default of one thread per
  // physical core. More OpenMP threads than cores spin against OpenBLAS's threads between
  // parallel regions: with 2 threads on this 2-vCPU (1-core) machine, MADE training fell from
  // 17,400 to 4,700 records/s.
  at::set_num_threads(std::max(1, std::min(threads, at::intraop_default_num_threads())));
}

}  // namespace logp
