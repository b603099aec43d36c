// A configuration file that is re-read when it changes, without a restart (the tokens file and
// the quotas file use it).
#ifndef LOGP_SERVER_AUTH_WATCHED_FILE_H_
#define LOGP_SERVER_AUTH_WATCHED_FILE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace logp {

// What stat(2) says of a file; a change of any field is a change of the file.
struct FileStamp {
  int64_t mtime_ns = -1;
  int64_t ctime_ns = -1;
  int64_t size = -1;
  uint64_t inode = 0;
  uint64_t device = 0;
  bool operator==(const FileStamp& o) const {
    return mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns && size == o.size && inode == o.inode &&
           device == o.device;
  }
  bool operator!=(const FileStamp& o) const { return !(*this == o); }
};

// The untyped machinery of WatchedFile<T> (below), which is what to use.
class FileWatcher {
 public:
  using Parser =
      std::function<absl::StatusOr<std::shared_ptr<const void>>(std::string_view contents)>;

  // Reads and parses `path` now. An unreadable file is the read error (NOT_FOUND,
  // PERMISSION_DENIED, ...), a file that fails to parse the parser's status; both messages
  // start with "<what> '<path>': ".
  static absl::StatusOr<std::unique_ptr<FileWatcher>> Open(std::string path, std::string what,
                                                           absl::Duration check_interval,
                                                           Parser parse);

  std::shared_ptr<const void> Current(absl::Time now);
  absl::Status LastReloadStatus() const;
  const std::string& path() const { return path_; }

 private:
  FileWatcher(std::string path, std::string what, absl::Duration check_interval, Parser parse)
      : path_(std::move(path)),
        what_(std::move(what)),
        check_interval_(check_interval),
        parse_(std::move(parse)) {}

  // Constant after construction.
  const std::string path_;
  const std::string what_;
  const absl::Duration check_interval_;
  const Parser parse_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const void> current_ ABSL_GUARDED_BY(mu_);
  // The stamp of the last version looked at, parsed or not (a failure is logged once).
  FileStamp seen_ ABSL_GUARDED_BY(mu_);
  absl::Status last_reload_status_ ABSL_GUARDED_BY(mu_);
  absl::Time next_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // A thread is checking the file with mu_ released.
  bool checking_ ABSL_GUARDED_BY(mu_) = false;
};

// The parsed contents of a file, re-read when the file changes.
//
// Current() stats the file at most once every `check_interval` (0: at every call); when the
// stamp (mtime and ctime in ns, size, inode, device) differs from the last version looked at, it
// reads and parses the file again. A version that cannot be read or parsed (a bad line, an
// editor's half-written file, a file missing for a moment) keeps the previous good contents and
// logs one ERROR with the reason; the next change is tried again. Editors that write in place
// within one timestamp tick without changing the size are not seen: replace the file (write a
// new one and rename it over the old, which changes the inode) or touch it.
//
// Thread-safe. The stat, read and parse run with the lock released, by one thread at a time;
// calls meanwhile return the current contents without waiting.
template <typename T>
class WatchedFile {
 public:
  using Parser = std::function<absl::StatusOr<T>(std::string_view contents)>;

  // Reads and parses `path` now; errors as FileWatcher::Open. `what` names the file in messages
  // and logs ("auth tokens file").
  static absl::StatusOr<std::unique_ptr<WatchedFile>> Open(std::string path, std::string what,
                                                           absl::Duration check_interval,
                                                           Parser parse) {
    auto watcher = FileWatcher::Open(
        std::move(path), std::move(what), check_interval,
        [parse = std::move(parse)](
            std::string_view contents) -> absl::StatusOr<std::shared_ptr<const void>> {
          absl::StatusOr<T> parsed = parse(contents);
          if (!parsed.ok()) return parsed.status();
          return std::shared_ptr<const void>(std::make_shared<const T>(*std::move(parsed)));
        });
    if (!watcher.ok()) return watcher.status();
    return std::unique_ptr<WatchedFile>(new WatchedFile(*std::move(watcher)));
  }

  // The contents of the last good version, after checking the file if a check is due at `now`.
  std::shared_ptr<const T> Current(absl::Time now) {
    return std::static_pointer_cast<const T>(watcher_->Current(now));
  }
  std::shared_ptr<const T> Current() { return Current(absl::Now()); }

  // OK when the contents are those of the last version looked at; otherwise why that version
  // was not taken (the error that was logged).
  absl::Status LastReloadStatus() const { return watcher_->LastReloadStatus(); }
  const std::string& path() const { return watcher_->path(); }

 private:
  explicit WatchedFile(std::unique_ptr<FileWatcher> watcher) : watcher_(std::move(watcher)) {}
  const std::unique_ptr<FileWatcher> watcher_;
};

}  // namespace logp

#endif  // LOGP_SERVER_AUTH_WATCHED_FILE_H_
