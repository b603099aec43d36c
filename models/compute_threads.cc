// SetComputeThreads (models/compute_threads.h).
#include "models/compute_threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <strings.h>

#include <algorithm>
#include <cstdlib>

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
  // 17,400 to 4,700 records/s. Unless OpenMP's threads do not spin: with OMP_WAIT_POLICY=passive
  // in the environment (libgomp reads it at start-up) the request is kept as it is (the PixelCNN,
  // whose element-wise passes are a large share of a step, trains at 67 records/s with 2 OpenMP
  // and 2 OpenBLAS threads and passive waiting, 38 with the 1-thread cap; bench/pixelcnn_bench).
  const char* wait = std::getenv("OMP_WAIT_POLICY");
  const bool passive = wait != nullptr && strcasecmp(wait, "passive") == 0;
  at::set_num_threads(
      std::max(1, passive ? threads : std::min(threads, at::intraop_default_num_threads())));
}

}  // namespace logp
