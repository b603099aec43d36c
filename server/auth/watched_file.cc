#include "server/auth/watched_file.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace logp {
namespace {

int64_t Nanos(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// The stamp of `path`; the default FileStamp when it cannot be stat'ed.
absl::Status StatFile(const std::string& path, const std::string& prefix, FileStamp* stamp) {
  *stamp = FileStamp();
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(prefix, "cannot read"));
  }
  stamp->mtime_ns = Nanos(st.st_mtim);
  stamp->ctime_ns = Nanos(st.st_ctim);
  stamp->size = static_cast<int64_t>(st.st_size);
  stamp->inode = static_cast<uint64_t>(st.st_ino);
  stamp->device = static_cast<uint64_t>(st.st_dev);
  return absl::OkStatus();
}

// The bytes of `path`. A tokens file holds secrets: every buffer that held them is wiped but the
// returned one, which ReadAndParse wipes after parsing. `size_hint`: the size stat reported.
absl::StatusOr<std::string> ReadFile(const std::string& path, const std::string& prefix,
                                     int64_t size_hint) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat(prefix, "cannot read"));
  std::string contents(static_cast<size_t>(std::max<int64_t>(size_hint, 0)) + 4096, '\0');
  size_t used = 0;
  for (;;) {
    if (used == contents.size()) {  // the file grew since the stat
      std::string bigger(2 * contents.size(), '\0');
      std::memcpy(bigger.data(), contents.data(), used);
      OPENSSL_cleanse(contents.data(), contents.size());
      contents.swap(bigger);
    }
    const ssize_t n = ::read(fd, contents.data() + used, contents.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      OPENSSL_cleanse(contents.data(), contents.size());
      return absl::ErrnoToStatus(error, absl::StrCat(prefix, "cannot read"));
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  ::close(fd);
  contents.resize(used);  // shrinking keeps the buffer
  return contents;
}

// Reads and parses the file whose stamp was just taken.
absl::StatusOr<std::shared_ptr<const void>> ReadAndParse(const std::string& path,
                                                         const std::string& prefix,
                                                         const FileStamp& stamp,
                                                         const FileWatcher::Parser& parse) {
  absl::StatusOr<std::string> contents = ReadFile(path, prefix, stamp.size);
  if (!contents.ok()) return contents.status();
  absl::StatusOr<std::shared_ptr<const void>> parsed = parse(std::string_view(*contents));
  OPENSSL_cleanse(contents->data(), contents->size());
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(), absl::StrCat(prefix, parsed.status().message()));
  }
  return parsed;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FileWatcher>> FileWatcher::Open(std::string path, std::string what,
                                                               absl::Duration check_interval,
                                                               Parser parse) {
  std::unique_ptr<FileWatcher> watcher(
      new FileWatcher(std::move(path), std::move(what), check_interval, std::move(parse)));
  const std::string prefix = absl::StrCat(watcher->what_, " '", watcher->path_, "': ");
  FileStamp stamp;
  absl::Status stat_status = StatFile(watcher->path_, prefix, &stamp);
  if (!stat_status.ok()) return stat_status;
  absl::StatusOr<std::shared_ptr<const void>> parsed =
      ReadAndParse(watcher->path_, prefix, stamp, watcher->parse_);
  if (!parsed.ok()) return parsed.status();
  absl::MutexLock lock(&watcher->mu_);
  watcher->current_ = *std::move(parsed);
  watcher->seen_ = stamp;
  return watcher;
}

std::shared_ptr<const void> FileWatcher::Current(absl::Time now) {
  FileStamp seen;
  {
    absl::MutexLock lock(&mu_);
    if (checking_ || now < next_check_) return current_;
    checking_ = true;
    next_check_ = now + check_interval_;
    seen = seen_;
  }

  // With the lock released: other calls meanwhile get the current contents.
  const std::string prefix = absl::StrCat(what_, " '", path_, "': ");
  FileStamp stamp;
  const absl::Status stat_status = StatFile(path_, prefix, &stamp);
  const bool changed = stamp != seen;
  absl::StatusOr<std::shared_ptr<const void>> loaded = std::shared_ptr<const void>();
  if (changed) {
    if (stat_status.ok()) {
      loaded = ReadAndParse(path_, prefix, stamp, parse_);
    } else {
      loaded = stat_status;
    }
  }

  std::shared_ptr<const void> current;
  {
    absl::MutexLock lock(&mu_);
    checking_ = false;
    if (changed) {
      seen_ = stamp;
      if (loaded.ok()) {
        current_ = *loaded;
        last_reload_status_ = absl::OkStatus();
      } else {
        last_reload_status_ = loaded.status();
      }
    }
    current = current_;
  }
  if (changed) {
    if (loaded.ok()) {
      LOG(INFO) << what_ << " '" << path_ << "' changed: re-read";
    } else {
      LOG(ERROR) << loaded.status().message() << " (keeping the previous contents)";
    }
  }
  return current;
}

absl::Status FileWatcher::LastReloadStatus() const {
  absl::MutexLock lock(&mu_);
  return last_reload_status_;
}

}  // namespace logp
