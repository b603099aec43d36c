// What server/auth's tests share: files written and touched in a TempDir.
#ifndef LOGP_TESTS_AUTH_AUTH_TEST_UTIL_H_
#define LOGP_TESTS_AUTH_AUTH_TEST_UTIL_H_

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "tests/temp_dir.h"

namespace logp {

// Writes `contents` to `path` in place (same inode when it exists).
inline void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  ASSERT_TRUE(out) << "cannot write " << path;
}

// Sets the modification time of `path` to `seconds` after the epoch.
inline void SetMtime(const std::string& path, int64_t seconds) {
  struct timespec times[2];
  times[0].tv_sec = seconds;  // access time
  times[0].tv_nsec = 0;
  times[1] = times[0];
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << "utimensat " << path;
}

}  // namespace logp

#endif  // LOGP_TESTS_AUTH_AUTH_TEST_UTIL_H_
