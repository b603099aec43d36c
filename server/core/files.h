// Small helpers shared by the stores: random names and the content hash. File I/O goes through
// FileSystem (file_system.h).
#ifndef LOGP_SERVER_CORE_FILES_H_
#define LOGP_SERVER_CORE_FILES_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace logp {

// A random lower-case hex string of `n` characters (ids, temp names).
std::string RandomHex(int n);
// FNV-1a 64-bit hash, continued from `h` (start with kFnvOffset).
constexpr uint64_t kFnvOffset = 1469598103934665603ull;
uint64_t Fnv1a64(absl::string_view bytes, uint64_t h);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_FILES_H_
