// WatchedFile: re-reads on change, keeps the last good version, logs each bad version once; and
// the tokens file rotated without a restart.
#include "server/auth/watched_file.h"

#include <gtest/gtest.h>
#include <stdio.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "glog/logging.h"
#include "server/auth/credentials.h"
#include "server/auth/quotas.h"
#include "tests/auth/auth_test_util.h"

namespace logp {
namespace {

// Contents are taken as they are unless they contain "bad".
absl::StatusOr<std::string> ParseText(std::string_view contents) {
  if (contents.find("bad") != std::string_view::npos) {
    return absl::InvalidArgumentError("line 1: bad contents");
  }
  return std::string(contents);
}

std::unique_ptr<WatchedFile<std::string>> OpenText(const std::string& path,
                                                   absl::Duration interval) {
  auto file = WatchedFile<std::string>::Open(path, "test file", interval, &ParseText);
  EXPECT_TRUE(file.ok()) << file.status();
  return file.ok() ? *std::move(file) : nullptr;
}

// Counts the ERROR lines glog writes that mention `needle`.
class ErrorCounter : public google::LogSink {
 public:
  explicit ErrorCounter(std::string needle) : needle_(std::move(needle)) {
    google::AddLogSink(this);
  }
  ~ErrorCounter() override { google::RemoveLogSink(this); }
  void send(google::LogSeverity severity, const char*, const char*, int, const struct ::tm*,
            const char* message, size_t length) override {
    if (severity != google::GLOG_ERROR) return;
    absl::MutexLock lock(&mu_);
    const std::string text(message, length);
    if (text.find(needle_) != std::string::npos) {
      ++count_;
      last_ = text;
    }
  }
  int count() const {
    absl::MutexLock lock(&mu_);
    return count_;
  }
  std::string last() const {
    absl::MutexLock lock(&mu_);
    return last_;
  }

 private:
  const std::string needle_;
  mutable absl::Mutex mu_;
  int count_ = 0;
  std::string last_;
};

TEST(WatchedFileTest, OpenReportsUnreadableAndBadFiles) {
  TempDir dir;
  const std::string missing = dir.File("missing");
  EXPECT_EQ(WatchedFile<std::string>::Open(missing, "test file", absl::ZeroDuration(), &ParseText)
                .status(),
            absl::NotFoundError(
                absl::StrCat("test file '", missing, "': cannot read: No such file or directory")));
  const std::string bad = dir.File("bad");
  WriteFile(bad, "bad\n");
  EXPECT_EQ(
      WatchedFile<std::string>::Open(bad, "test file", absl::ZeroDuration(), &ParseText).status(),
      absl::InvalidArgumentError(absl::StrCat("test file '", bad, "': line 1: bad contents")));
  // A directory opens but does not read.
  EXPECT_EQ(
      WatchedFile<std::string>::Open(dir.path(), "test file", absl::ZeroDuration(), &ParseText)
          .status()
          .code(),
      absl::StatusCode::kFailedPrecondition);
}

TEST(WatchedFileTest, ChangesApplyAtTheFirstCheckAfterTheInterval) {
  TempDir dir;
  const std::string path = dir.File("f");
  WriteFile(path, "one");
  auto file = OpenText(path, absl::Seconds(10));
  ASSERT_NE(file, nullptr);
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  EXPECT_EQ(*file->Current(t0), "one");  // checks: unchanged; the next check is at t0 + 10 s

  WriteFile(path, "two!");
  EXPECT_EQ(*file->Current(t0), "one");
  EXPECT_EQ(*file->Current(t0 + absl::Seconds(9)), "one");
  EXPECT_EQ(*file->Current(t0 + absl::Seconds(10)), "two!");

  WriteFile(path, "three");
  EXPECT_EQ(*file->Current(t0 + absl::Seconds(19)), "two!");
  EXPECT_EQ(*file->Current(t0 + absl::Seconds(21)), "three");
  EXPECT_TRUE(file->LastReloadStatus().ok());
}

TEST(WatchedFileTest, ZeroIntervalChecksEveryCall) {
  TempDir dir;
  const std::string path = dir.File("f");
  WriteFile(path, "a");
  auto file = OpenText(path, absl::ZeroDuration());
  ASSERT_NE(file, nullptr);
  const absl::Time t = absl::FromUnixSeconds(5);
  for (const std::string contents : {"bb", "ccc", "dddd"}) {
    WriteFile(path, contents);
    EXPECT_EQ(*file->Current(t), contents);  // the same instant: no interval to wait
  }
  EXPECT_EQ(*file->Current(), "dddd");
}

TEST(WatchedFileTest, SameSizeInPlaceRewriteIsSeen) {
  TempDir dir;
  const std::string path = dir.File("f");
  WriteFile(path, "aaaa");
  SetMtime(path, 1000);
  auto file = OpenText(path, absl::ZeroDuration());
  ASSERT_NE(file, nullptr);
  WriteFile(path, "bbbb");
  SetMtime(path, 2000);
  EXPECT_EQ(*file->Current(), "bbbb");
}

TEST(WatchedFileTest, RenamedReplacementIsSeenByItsInode) {
  TempDir dir;
  const std::string path = dir.File("f");
  WriteFile(path, "aaaa");
  SetMtime(path, 1000);
  auto file = OpenText(path, absl::ZeroDuration());
  ASSERT_NE(file, nullptr);
  // Same size, same mtime, another inode (the way deploy tools replace a file).
  const std::string next = dir.File("f.new");
  WriteFile(next, "bbbb");
  SetMtime(next, 1000);
  ASSERT_EQ(rename(next.c_str(), path.c_str()), 0);
  EXPECT_EQ(*file->Current(), "bbbb");
}

TEST(WatchedFileTest, BadVersionKeepsThePreviousContentsAndLogsOncePerChange) {
  TempDir dir;
  const std::string path = dir.File("f");
  WriteFile(path, "good");
  auto file = OpenText(path, absl::ZeroDuration());
  ASSERT_NE(file, nullptr);
  ErrorCounter errors(path);

  WriteFile(path, "bad one");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*file->Current(), "good");
  EXPECT_EQ(errors.count(), 1);
  EXPECT_EQ(errors.last(), absl::StrCat("test file '", path,
                                        "': line 1: bad contents (keeping the previous contents)"));
  EXPECT_EQ(file->LastReloadStatus(), absl::InvalidArgumentError(absl::StrCat(
                                          "test file '", path, "': line 1: bad contents")));

  WriteFile(path, "bad two!");  // another bad version: one more error
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*file->Current(), "good");
  EXPECT_EQ(errors.count(), 2);

  WriteFile(path, "fixed");
  EXPECT_EQ(*file->Current(), "fixed");
  EXPECT_TRUE(file->LastReloadStatus().ok());
  EXPECT_EQ(errors.count(), 2);
}

TEST(WatchedFileTest, MissingFileKeepsThePreviousContentsUntilItReturns) {
  TempDir dir;
  const std::string path = dir.File("f");
  WriteFile(path, "first");
  auto file = OpenText(path, absl::ZeroDuration());
  ASSERT_NE(file, nullptr);
  ErrorCounter errors(path);
  ASSERT_EQ(unlink(path.c_str()), 0);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*file->Current(), "first");
  EXPECT_EQ(errors.count(), 1);
  EXPECT_EQ(file->LastReloadStatus(),
            absl::NotFoundError(
                absl::StrCat("test file '", path, "': cannot read: No such file or directory")));
  WriteFile(path, "second");
  EXPECT_EQ(*file->Current(), "second");
}

// A file longer than stat said (a /proc file stats as 0 bytes) is read whole.
TEST(WatchedFileTest, ReadsFilesLongerThanTheirStatSize) {
  // Every version is taken (the addresses in the maps may well spell "bad").
  auto file =
      WatchedFile<std::string>::Open("/proc/self/maps", "test file", absl::ZeroDuration(),
                                     [](std::string_view contents) -> absl::StatusOr<std::string> {
                                       return std::string(contents);
                                     });
  ASSERT_TRUE(file.ok()) << file.status();
  const std::string maps = *(*file)->Current(absl::InfinitePast());
  if (maps.size() <= 3 * 4096) GTEST_SKIP() << "/proc/self/maps is only " << maps.size();
  EXPECT_TRUE(absl::StrContains(maps, "[stack]"));
  EXPECT_EQ(maps.back(), '\n');
  EXPECT_EQ(maps.find('\0'), std::string::npos);
}

// Readers running while the file is rewritten see whole versions only, and the last one in the
// end. ParseText's check ("bad") is replaced by a version check: "N N".
TEST(WatchedFileTest, ConcurrentReadersSeeWholeVersions) {
  TempDir dir;
  const std::string path = dir.File("f");
  WriteFile(path, "0 0");
  auto opened = WatchedFile<int>::Open(
      path, "test file", absl::ZeroDuration(), [](std::string_view text) -> absl::StatusOr<int> {
        const size_t space = text.find(' ');
        int a, b;
        if (space == std::string_view::npos ||
            !absl::SimpleAtoi(absl::string_view(text.data(), space), &a) ||
            !absl::SimpleAtoi(absl::string_view(text.data() + space + 1, text.size() - space - 1),
                              &b) ||
            a != b) {
          return absl::InvalidArgumentError("torn");
        }
        return a;
      });
  ASSERT_TRUE(opened.ok()) << opened.status();
  WatchedFile<int>& file = **opened;
  std::atomic<bool> done{false};
  std::atomic<int> bad_reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      int last = 0;
      while (!done.load()) {
        const std::shared_ptr<const int> v = file.Current();
        if (v == nullptr || *v < last) ++bad_reads;  // versions never go back
        if (v != nullptr) last = *v;
      }
    });
  }
  constexpr int kVersions = 200;
  for (int i = 1; i <= kVersions; ++i) {
    const std::string next = dir.File("next");
    WriteFile(next, absl::StrCat(i, " ", i));
    ASSERT_EQ(rename(next.c_str(), path.c_str()), 0);
  }
  done = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(bad_reads.load(), 0);
  // Versions written within one timestamp tick may share a stamp (a reused inode, the same size);
  // a distinct mtime makes the last one certain to be seen.
  SetMtime(path, 1000);
  EXPECT_EQ(*file.Current(), kVersions);
}

// The tokens file: rotated, broken and fixed while in use.
TEST(AuthTokensFileTest, RotationAppliesWithoutRestartAndABrokenRewriteKeepsTheOldTable) {
  TempDir dir;
  const std::string path = dir.File("tokens");
  WriteFile(path, "# v1\ntok-a team-a reader\ntok-b team-b writer\n");
  absl::StatusOr<std::unique_ptr<AuthTokensFile>> opened =
      AuthTokensFile::Open(path, absl::ZeroDuration());
  ASSERT_TRUE(opened.ok()) << opened.status();
  const AuthTokensFile& tokens = **opened;
  ASSERT_TRUE(tokens.Authenticate("Bearer tok-a", {}).ok());
  EXPECT_EQ(tokens.Authenticate("Bearer tok-a", {})->tenant, "team-a");
  EXPECT_EQ(tokens.Authenticate("Bearer tok-c", {}).status(),
            absl::UnauthenticatedError("invalid token"));

  // Rotate: tok-a removed, tok-c added.
  WriteFile(path, "# v2\ntok-b team-b writer\ntok-c team-c admin\ncert:client-c team-c reader\n");
  SetMtime(path, 2000);
  EXPECT_EQ(tokens.Authenticate("Bearer tok-a", {}).status(),
            absl::UnauthenticatedError("invalid token"));
  absl::StatusOr<Principal> c = tokens.Authenticate("Bearer tok-c", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->tenant, "team-c");
  EXPECT_EQ(c->role, Role::kAdmin);
  EXPECT_EQ(tokens.Authenticate(std::nullopt, {"client-c"})->via, kViaCertificate);
  EXPECT_EQ(tokens.Current()->token_count(), 2);

  // A broken rewrite (a half-written line) keeps the v2 table.
  WriteFile(path, "# v3\ntok-d team-d reader\ntok-e team-e\n");
  SetMtime(path, 3000);
  EXPECT_TRUE(tokens.Authenticate("Bearer tok-c", {}).ok());
  EXPECT_EQ(tokens.Authenticate("Bearer tok-d", {}).status(),
            absl::UnauthenticatedError("invalid token"));
  EXPECT_EQ(tokens.LastReloadStatus(),
            absl::InvalidArgumentError(
                absl::StrCat("auth tokens file '", path,
                             "': line 3: expected 3 fields (TOKEN TENANT ROLE), found 2")));

  // Fixed: taken.
  WriteFile(path, "# v4\ntok-d team-d reader\ntok-e team-e writer\n");
  SetMtime(path, 4000);
  EXPECT_EQ(tokens.Authenticate("Bearer tok-e", {})->role, Role::kWriter);
  EXPECT_EQ(tokens.Authenticate("Bearer tok-c", {}).status(),
            absl::UnauthenticatedError("invalid token"));
  EXPECT_TRUE(tokens.LastReloadStatus().ok());
}

TEST(AuthTokensFileTest, OpenErrorsNameTheFile) {
  TempDir dir;
  const std::string missing = dir.File("none");
  EXPECT_EQ(AuthTokensFile::Open(missing).status(),
            absl::NotFoundError(absl::StrCat("auth tokens file '", missing,
                                             "': cannot read: No such file or directory")));
  const std::string bad = dir.File("bad");
  WriteFile(bad, "ok t reader\nsecret-token team-a superuser\n");
  const absl::Status status = AuthTokensFile::Open(bad).status();
  EXPECT_EQ(status, absl::InvalidArgumentError(absl::StrCat(
                        "auth tokens file '", bad,
                        "': line 2: the role (third field) must be reader, writer or admin")));
}

TEST(QuotasFileTest, ReloadsAndTheQuotaFnOutlivesTheFile) {
  TempDir dir;
  const std::string path = dir.File("quotas");
  WriteFile(path, "* datasets=3\n");
  absl::StatusOr<std::unique_ptr<QuotasFile>> opened = QuotasFile::Open(path, absl::ZeroDuration());
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ((*opened)->For("team-a").datasets, 3);
  QuotaFn fn = (*opened)->AsQuotaFn();
  opened->reset();
  EXPECT_EQ(fn("team-a").datasets, 3);
  WriteFile(path, "* datasets=3\nteam-a datasets=10\n");
  EXPECT_EQ(fn("team-a").datasets, 10);
  EXPECT_EQ(fn("team-b").datasets, 3);
  // A broken version keeps the last good table.
  WriteFile(path, "* datasets=three\n");
  EXPECT_EQ(fn("team-a").datasets, 10);
}

}  // namespace
}  // namespace logp
