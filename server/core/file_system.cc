#include "server/core/file_system.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "server/core/files.h"

namespace logp {
namespace {

absl::Status Errno(int err, const std::string& what, const std::string& path) {
  return IoError(err, what, path);
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }
  absl::Status Append(absl::string_view data) override {
    const char* p = data.data();
    size_t left = data.size();
    while (left > 0) {
      const ssize_t w = ::write(fd_, p, left);
      if (w < 0) {
        if (errno == EINTR) continue;
        return Errno(errno, "write", path_);
      }
      p += w;
      left -= static_cast<size_t>(w);
    }
    return absl::OkStatus();
  }
  absl::Status Sync() override {
    if (::fsync(fd_) != 0) return Errno(errno, "fsync", path_);
    return absl::OkStatus();
  }
  absl::Status Close() override {
    const int fd = fd_;
    fd_ = -1;
    if (fd >= 0 && ::close(fd) != 0) return Errno(errno, "close", path_);
    return absl::OkStatus();
  }

 private:
  const std::string path_;
  int fd_;
};

class PosixFileSystem final : public FileSystem {
 public:
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Errno(errno, "create", path);
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd));
  }
  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Errno(errno, "open", path);
    std::string out;
    struct stat st;
    if (::fstat(fd, &st) == 0 && st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
    char buf[1 << 16];
    while (true) {
      const ssize_t r = ::read(fd, buf, sizeof(buf));
      if (r < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        ::close(fd);
        // Any failed read of a stored file means its bytes are not to be had.
        return absl::DataLossError(absl::StrCat("read ", path, ": ", std::strerror(err)));
      }
      if (r == 0) break;
      out.append(buf, static_cast<size_t>(r));
    }
    ::close(fd);
    return out;
  }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return Errno(errno, "rename", from);
    return absl::OkStatus();
  }
  absl::Status SyncDir(const std::string& dir) override {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Errno(errno, "open dir", dir);
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) return Errno(err, "fsync dir", dir);
    return absl::OkStatus();
  }
  absl::Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Errno(errno, "unlink", path);
    return absl::OkStatus();
  }
  absl::Status RemoveDir(const std::string& path) override {
    if (::rmdir(path.c_str()) != 0 && errno != ENOENT) return Errno(errno, "rmdir", path);
    return absl::OkStatus();
  }
  absl::Status MakeDirs(const std::string& path) override {
    std::string cur;
    for (size_t i = 0; i <= path.size(); ++i) {
      if (i == path.size() || path[i] == '/') {
        if (!cur.empty() && ::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
          return Errno(errno, "mkdir", cur);
        }
      }
      if (i < path.size()) cur.push_back(path[i]);
    }
    return absl::OkStatus();
  }
  std::vector<std::string> ListDir(const std::string& dir) override {
    std::vector<std::string> names;
    DIR* d = opendir(dir.c_str());
    if (!d) return names;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') names.push_back(e->d_name);
    }
    closedir(d);
    return names;
  }
};

constexpr char kFrameMagic[8] = {'L', 'O', 'G', 'P', 'S', 'U', 'M', '1'};
constexpr size_t kFrameHeader = 24;

uint32_t Crc32(absl::string_view bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes at most a uInt per call.
  constexpr size_t kStep = size_t{1} << 30;
  for (size_t i = 0; i < bytes.size(); i += kStep) {
    const size_t n = std::min(kStep, bytes.size() - i);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + i), static_cast<uInt>(n));
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace

absl::Status IoError(int err, const std::string& what, const std::string& path) {
  if (err == ENOSPC || err == EDQUOT) {
    return absl::ResourceExhaustedError(absl::StrCat(what, " ", path, ": no space left on device"));
  }
  const std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EIO) return absl::DataLossError(msg);
  return absl::InternalError(msg);
}

FileSystem* FileSystem::Default() {
  static FileSystem* fs = new PosixFileSystem();
  return fs;
}

std::string DirName(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

namespace {

// The parts, one after another, written durably to `path` (see WriteFileDurably).
absl::Status WritePartsDurably(FileSystem* fs, const std::string& path,
                               std::initializer_list<absl::string_view> parts) {
  const std::string tmp = absl::StrCat(path, ".tmp-", RandomHex(8));
  absl::Status st = [&]() -> absl::Status {
    auto file = fs->NewWritableFile(tmp);
    if (!file.ok()) return file.status();
    absl::Status s;
    for (absl::string_view part : parts) {
      if (s.ok()) s = (*file)->Append(part);
    }
    if (s.ok()) s = (*file)->Sync();
    absl::Status c = (*file)->Close();
    if (s.ok()) s = c;
    if (s.ok()) s = fs->Rename(tmp, path);
    return s;
  }();
  if (!st.ok()) {
    fs->RemoveFile(tmp).IgnoreError();
    return st;
  }
  return fs->SyncDir(DirName(path));
}

}  // namespace

absl::Status WriteFileDurably(FileSystem* fs, const std::string& path, absl::string_view bytes) {
  return WritePartsDurably(fs, path, {bytes});
}

absl::Status WriteChecksummedFile(FileSystem* fs, const std::string& path,
                                  absl::string_view payload) {
  // The frame and the payload go to the file in two writes; no copy of the payload is made.
  char header[kFrameHeader] = {};
  std::memcpy(header, kFrameMagic, sizeof(kFrameMagic));
  const uint64_t len = payload.size();
  const uint32_t crc = Crc32(payload);
  std::memcpy(header + 8, &len, sizeof(len));
  std::memcpy(header + 16, &crc, sizeof(crc));
  return WritePartsDurably(fs, path, {absl::string_view(header, sizeof(header)), payload});
}

absl::StatusOr<std::string> ReadChecksummedFile(FileSystem* fs, const std::string& path,
                                                const std::string& what,
                                                const std::vector<std::string>& legacy_magics) {
  absl::StatusOr<std::string> bytes = fs->ReadFile(path);
  if (absl::IsNotFound(bytes.status())) return bytes.status();
  if (!bytes.ok()) return absl::DataLossError(absl::StrCat(what, ": ", bytes.status().message()));
  if (bytes->size() >= kFrameHeader &&
      std::memcmp(bytes->data(), kFrameMagic, sizeof(kFrameMagic)) == 0) {
    uint64_t len;
    uint32_t crc;
    std::memcpy(&len, bytes->data() + 8, sizeof(len));
    std::memcpy(&crc, bytes->data() + 16, sizeof(crc));
    if (len != bytes->size() - kFrameHeader) {
      return absl::DataLossError(absl::StrCat(
          what, ": file is torn (", bytes->size() - kFrameHeader, " of ", len, " bytes)"));
    }
    const absl::string_view payload = absl::string_view(*bytes).substr(kFrameHeader);
    if (Crc32(payload) != crc) {
      return absl::DataLossError(absl::StrCat(what, ": checksum mismatch (the file is corrupt)"));
    }
    bytes->erase(0, kFrameHeader);
    return bytes;
  }
  for (const std::string& magic : legacy_magics) {
    if (bytes->size() >= magic.size() && bytes->compare(0, magic.size(), magic) == 0) {
      return bytes;  // written before checksums; its own format checks what it can
    }
  }
  return absl::DataLossError(absl::StrCat(what, ": not a logp file (bad magic)"));
}

}  // namespace logp
