#include "models/malloc_tuning.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace logp {
namespace {

// The largest threshold mallopt accepts on 64-bit glibc (half a per-thread heap, 64 MiB).
constexpr int kMmapThreshold = 32 << 20;
constexpr int kTrimThreshold = 512 << 20;

}  // namespace

std::string KeepTrainingBlocksInHeap() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) return "";
  // Small allocations still come from each thread's cache (tcache) without the arena's lock.
  const bool arena_set = mallopt(M_ARENA_MAX, 1) == 1;
  const bool mmap_set = mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1;
  const bool trim_set = mallopt(M_TRIM_THRESHOLD, kTrimThreshold) == 1;
  if (!arena_set && !mmap_set && !trim_set) return "";
  return absl::StrCat("malloc: ", arena_set ? "one arena, " : "", "keeps freed blocks of up to ",
                      mmap_set ? kMmapThreshold >> 20 : 0, " MiB and trims above ",
                      trim_set ? kTrimThreshold >> 20 : 0, " MiB free (GLIBC_TUNABLES overrides)");
}

}  // namespace logp
