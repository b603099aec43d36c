// OpenBLAS's kernel choice (models/blas_core.h).
#include "models/blas_core.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace logp {

CpuVectorSupport DetectCpuVectorSupport() {
  CpuVectorSupport s;
  __builtin_cpu_init();
  s.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  s.avx512 = s.avx2_fma && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return s;
}

std::string BlasCoreName() {
  using CoreName = char* (*)();
  auto core_name = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (core_name == nullptr) return "";
  const char* name = core_name();
  return name == nullptr ? "" : name;
}

std::optional<std::string> BetterBlasCore(const std::string& core_name, CpuVectorSupport cpu) {
  // OpenBLAS's x86-64 cores without AVX2 kernels (its dynamic.c names, as
  // openblas_get_corename returns them).
  static const char* const kOld[] = {"Prescott",   "Core2",       "Penryn",      "Dunnington",
                                     "Nehalem",    "Atom",        "Opteron",     "Opteron(SSE3)",
                                     "Barcelona",  "Bobcat",      "Sandybridge", "Bulldozer",
                                     "Piledriver", "Steamroller", "Excavator"};
  bool old = false;
  for (const char* k : kOld) old = old || core_name == k;
  if (!old) return std::nullopt;
  if (cpu.avx512) return std::string("SkylakeX");
  if (cpu.avx2_fma) return std::string("Haswell");
  return std::nullopt;
}

void UseBestBlasCore(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr || std::getenv("LOGP_BLAS_REEXEC") != nullptr) {
    return;
  }
  const char* keep = std::getenv("LOGP_BLAS_CORE");
  if (keep != nullptr && std::strcmp(keep, "keep") == 0) return;
  std::optional<std::string> better = BetterBlasCore(BlasCoreName(), DetectCpuVectorSupport());
  if (!better) return;
  setenv("OPENBLAS_CORETYPE", better->c_str(), 1);
  setenv("LOGP_BLAS_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  // The exec failed: go on with the kernels OpenBLAS chose.
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv("LOGP_BLAS_REEXEC");
}

}  // namespace logp
