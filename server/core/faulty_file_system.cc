#include "server/core/faulty_file_system.h"

#include <algorithm>

namespace logp {
namespace {

class FaultyWritableFile final : public WritableFile {
 public:
  FaultyWritableFile(FaultyFileSystem* fs, std::string path, std::unique_ptr<WritableFile> base)
      : fs_(fs), path_(std::move(path)), base_(std::move(base)) {}

  absl::Status Append(absl::string_view data) override {
    FaultyFileSystem::Fault f;
    if (fs_->Fires(FaultyFileSystem::Op::kWrite, path_, &f,
                   written_ + static_cast<int64_t>(data.size()))) {
      // What a real full disk does: the bytes that fit are written, then the write fails.
      const int64_t room = std::max<int64_t>(0, f.after_bytes - written_);
      const size_t n = std::min<size_t>(data.size(), static_cast<size_t>(room));
      if (n > 0) base_->Append(data.substr(0, n)).IgnoreError();
      written_ += static_cast<int64_t>(n);
      return IoError(f.error, "write", path_);
    }
    written_ += static_cast<int64_t>(data.size());
    return base_->Append(data);
  }
  absl::Status Sync() override {
    FaultyFileSystem::Fault f;
    if (fs_->Fires(FaultyFileSystem::Op::kSync, path_, &f)) return IoError(f.error, "fsync", path_);
    return base_->Sync();
  }
  absl::Status Close() override { return base_->Close(); }

 private:
  FaultyFileSystem* const fs_;
  const std::string path_;
  std::unique_ptr<WritableFile> base_;
  int64_t written_ = 0;
};

}  // namespace

void FaultyFileSystem::Inject(const Fault& fault) {
  absl::MutexLock lock(&mu_);
  faults_.push_back(fault);
}

void FaultyFileSystem::Clear() {
  absl::MutexLock lock(&mu_);
  faults_.clear();
}

int FaultyFileSystem::fired() const {
  absl::MutexLock lock(&mu_);
  return fired_;
}

bool FaultyFileSystem::Fires(Op op, const std::string& path, Fault* fault,
                             int64_t file_bytes_after) {
  absl::MutexLock lock(&mu_);
  for (Fault& f : faults_) {
    if (f.op != op || f.times == 0) continue;
    if (!f.path_contains.empty() && path.find(f.path_contains) == std::string::npos) continue;
    if (op == Op::kWrite && file_bytes_after <= f.after_bytes) continue;
    if (f.skip > 0) {
      --f.skip;
      continue;
    }
    if (f.times > 0) --f.times;
    ++fired_;
    *fault = f;
    return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<WritableFile>> FaultyFileSystem::NewWritableFile(
    const std::string& path) {
  Fault f;
  if (Fires(Op::kCreate, path, &f)) return IoError(f.error, "create", path);
  auto base = base_->NewWritableFile(path);
  if (!base.ok()) return base.status();
  return std::unique_ptr<WritableFile>(new FaultyWritableFile(this, path, std::move(*base)));
}

absl::StatusOr<std::string> FaultyFileSystem::ReadFile(const std::string& path) {
  Fault f;
  const bool fires = Fires(Op::kRead, path, &f);
  if (fires && f.read == ReadFault::kError) return IoError(f.error, "read", path);
  auto bytes = base_->ReadFile(path);
  if (!fires || !bytes.ok()) return bytes;
  if (f.read == ReadFault::kShort) {
    bytes->resize(std::min<size_t>(bytes->size(), static_cast<size_t>(f.after_bytes)));
  } else if (!bytes->empty()) {
    (*bytes)[bytes->size() / 2] ^= 0x10;
  }
  return bytes;
}

absl::Status FaultyFileSystem::Rename(const std::string& from, const std::string& to) {
  Fault f;
  if (Fires(Op::kRename, from, &f)) return IoError(f.error, "rename", from);
  return base_->Rename(from, to);
}

absl::Status FaultyFileSystem::SyncDir(const std::string& dir) {
  Fault f;
  if (Fires(Op::kSyncDir, dir, &f)) return IoError(f.error, "fsync dir", dir);
  return base_->SyncDir(dir);
}

}  // namespace logp
