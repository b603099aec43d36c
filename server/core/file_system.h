// FileSystem: the one seam through which every store (datasets, models, checkpoints, temporary
// files) does its I/O, after leveldb's Env. The default is the real POSIX file system; tests wrap
// it (FaultyFileSystem, faulty_file_system.h) to fail a chosen operation.
//
// Errors: ENOSPC / EDQUOT are RESOURCE_EXHAUSTED "... no space left on device"; a missing file is
// NOT_FOUND; a read that fails (EIO) is DATA_LOSS; anything else INTERNAL. Messages name the path.
//
// Thread-safety: every method may be called concurrently; a WritableFile by one thread at a time.
#ifndef LOGP_SERVER_CORE_FILE_SYSTEM_H_
#define LOGP_SERVER_CORE_FILE_SYSTEM_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace logp {

// A file being written. Destroying it closes it (errors then are ignored: call Close).
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual absl::Status Append(absl::string_view data) = 0;
  // fsync: the appended bytes are durable once this returns OK.
  virtual absl::Status Sync() = 0;
  virtual absl::Status Close() = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // The real file system; lives for the whole process.
  static FileSystem* Default();

  // Creates (or truncates) `path` for writing.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) = 0;
  // The whole file.
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path) = 0;
  // Atomically replaces `to` with `from`.
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
  // fsyncs a directory, so that renames and creations in it are durable.
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  // OK if the file does not exist.
  virtual absl::Status RemoveFile(const std::string& path) = 0;
  // Removes an empty directory; OK if it does not exist.
  virtual absl::Status RemoveDir(const std::string& path) = 0;
  // mkdir -p.
  virtual absl::Status MakeDirs(const std::string& path) = 0;
  // Names of the entries of `dir` not starting with '.'; empty if it cannot be read.
  virtual std::vector<std::string> ListDir(const std::string& dir) = 0;
};

// Writes `bytes` to `path` so that after a crash `path` holds either its old content or all of
// `bytes`: a temporary file `path`.tmp-<random> is written, fsynced, closed and renamed over
// `path`, then the directory is fsynced. On any failure the temporary file is removed and `path`
// is untouched.
absl::Status WriteFileDurably(FileSystem* fs, const std::string& path, absl::string_view bytes);

// Checksummed payloads (models, checkpoints): WriteFileDurably of a 24-byte frame header (magic
// "LOGPSUM1", payload length, CRC-32 of the payload) followed by the payload.
inline constexpr uint64_t kChecksumFrameBytes = 24;
absl::Status WriteChecksummedFile(FileSystem* fs, const std::string& path,
                                  absl::string_view payload);
// The payload of a checksummed file. DATA_LOSS "<what>: ..." when it cannot be read, is torn
// (shorter than its header says) or fails its checksum; NOT_FOUND when it does not exist. Files
// written before frames existed start with one of `legacy_magics` and are returned as they are.
absl::StatusOr<std::string> ReadChecksummedFile(FileSystem* fs, const std::string& path,
                                                const std::string& what,
                                                const std::vector<std::string>& legacy_magics);

// The status of a failed system call with errno `err` on `path`, mapped as described above
// ("<what> <path>: no space left on device" for ENOSPC).
absl::Status IoError(int err, const std::string& what, const std::string& path);

// The directory part of a path ("." if none).
std::string DirName(const std::string& path);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_FILE_SYSTEM_H_
