// FaultyFileSystem: a FileSystem for tests that passes every operation to a real one except those
// it was told to fail (after leveldb's SpecialEnv): a write that runs out of space after N bytes,
// an fsync or rename that fails, a read that fails, comes back short or has a bit flipped.
//
// Thread-safety: all methods may be called concurrently.
#ifndef LOGP_SERVER_CORE_FAULTY_FILE_SYSTEM_H_
#define LOGP_SERVER_CORE_FAULTY_FILE_SYSTEM_H_

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/core/file_system.h"

namespace logp {

class FaultyFileSystem final : public FileSystem {
 public:
  enum class Op { kCreate, kWrite, kSync, kRename, kSyncDir, kRead };
  enum class ReadFault { kError, kShort, kFlipBit };
  struct Fault {
    Op op = Op::kWrite;
    // Only operations on paths containing this (empty: every path). For kRename, the source.
    std::string path_contains;
    // errno of the failure: ENOSPC (RESOURCE_EXHAUSTED), EIO, ...
    int error = EIO;
    // kWrite: bytes of the file that are written before the failure (a short write).
    int64_t after_bytes = 0;
    // kRead: fail, return only the first `after_bytes` bytes, or flip one bit in the middle.
    ReadFault read = ReadFault::kError;
    // Matching operations that pass before the fault fires, then how often it fires (-1: every
    // time until Clear).
    int skip = 0;
    int times = -1;
  };

  explicit FaultyFileSystem(FileSystem* base = FileSystem::Default()) : base_(base) {}

  void Inject(const Fault& fault);
  // Removes every fault; operations pass again.
  void Clear();
  // How many operations failed (or were corrupted) so far.
  int fired() const;

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  absl::StatusOr<std::string> ReadFile(const std::string& path) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status SyncDir(const std::string& dir) override;
  absl::Status RemoveFile(const std::string& path) override { return base_->RemoveFile(path); }
  absl::Status RemoveDir(const std::string& path) override { return base_->RemoveDir(path); }
  absl::Status MakeDirs(const std::string& path) override { return base_->MakeDirs(path); }
  std::vector<std::string> ListDir(const std::string& dir) override { return base_->ListDir(dir); }

  // The fault that fires for this operation now (consuming one firing), if any. A kWrite fault
  // fires only for a write that would take the file past its after_bytes (`file_bytes_after`).
  bool Fires(Op op, const std::string& path, Fault* fault, int64_t file_bytes_after = 0);

 private:
  FileSystem* const base_;
  mutable absl::Mutex mu_;
  std::vector<Fault> faults_ ABSL_GUARDED_BY(mu_);
  int fired_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_FAULTY_FILE_SYSTEM_H_
