// OpenBLAS's kernel choice for this CPU. Torch-free.
//
// Debian 12's OpenBLAS (0.3.21) picks its kernels when the library loads, from the CPU model it
// knows. On a CPU newer than it (an Intel Xeon of 2023, say) it falls back to "Prescott", SSE3
// kernels that run fp32 matrix products 4-6x slower than the AVX-512 ones the CPU can run
// (measured on such a Xeon: 17-29 GFLOP/s against 106-120 with OPENBLAS_CORETYPE=SkylakeX).
// OpenBLAS reads OPENBLAS_CORETYPE only while it loads, before main(): a process that wants a
// better core sets it and executes itself again.
#ifndef LOGP_MODELS_BLAS_CORE_H_
#define LOGP_MODELS_BLAS_CORE_H_

#include <optional>
#include <string>

namespace logp {

// What the CPU can run, as far as the kernel choice goes.
struct CpuVectorSupport {
  bool avx2_fma = false;  // AVX2 and FMA3 (OpenBLAS's "Haswell" kernels)
  bool avx512 = false;    // AVX-512 F, CD, BW, DQ and VL ("SkylakeX")
};

// This CPU's support (cpuid, through the compiler's __builtin_cpu_supports).
CpuVectorSupport DetectCpuVectorSupport();

// The name of the kernels OpenBLAS chose ("Cooperlake", "Haswell", "Prescott", ...), empty when
// the BLAS in this process is not OpenBLAS or does not say.
std::string BlasCoreName();

// The OPENBLAS_CORETYPE that would serve this CPU better than `core_name`, or nothing: only when
// OpenBLAS fell back to a core older than AVX2 ("Prescott", "Core2", "Nehalem", "Sandybridge",
// ...) on a CPU that runs AVX2 or AVX-512 kernels.
std::optional<std::string> BetterBlasCore(const std::string& core_name, CpuVectorSupport cpu);

// Called first in main(): when OpenBLAS fell back to an old core on a CPU that runs better ones,
// and neither OPENBLAS_CORETYPE nor LOGP_BLAS_CORE=keep is set, sets OPENBLAS_CORETYPE and
// executes /proc/self/exe again with the same arguments (once: LOGP_BLAS_REEXEC marks the second
// run). Returns only when nothing was changed or the exec failed.
void UseBestBlasCore(char** argv);

}  // namespace logp

#endif  // LOGP_MODELS_BLAS_CORE_H_
