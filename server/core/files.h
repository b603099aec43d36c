// Durable file helpers: every payload logp stores goes through WriteFileDurably.
#ifndef LOGP_SERVER_CORE_FILES_H_
#define LOGP_SERVER_CORE_FILES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace logp {

// Writes `bytes` to `path` so that after a crash `path` holds either nothing or all of it:
// write to `path`.tmp-<random>, fsync, rename over `path`, fsync the directory.
absl::Status WriteFileDurably(const std::string& path, absl::string_view bytes);
// fsyncs the file at `path` and renames it to `final_path`, then fsyncs the directory.
absl::Status SyncAndRename(const std::string& path, const std::string& final_path);
absl::StatusOr<std::string> ReadFile(const std::string& path);
absl::Status MakeDirs(const std::string& path);
// Names of the entries of `dir` not starting with '.'; empty if it cannot be read.
std::vector<std::string> ListDir(const std::string& dir);
// Removes a file; OK if it does not exist.
absl::Status RemoveFile(const std::string& path);
// A random lower-case hex string of `n` characters (ids, temp names).
std::string RandomHex(int n);
// FNV-1a 64-bit hash, continued from `h` (start with kFnvOffset).
constexpr uint64_t kFnvOffset = 1469598103934665603ull;
uint64_t Fnv1a64(absl::string_view bytes, uint64_t h);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_FILES_H_
