// TempDir: a fresh directory under /tmp for one test, removed with everything in it when the
// object goes. Header-only, no dependencies beyond gtest (server, auth and integration tests).
#ifndef LOGP_TESTS_TEMP_DIR_H_
#define LOGP_TESTS_TEMP_DIR_H_

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace logp {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/logp-test-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace logp

#endif  // LOGP_TESTS_TEMP_DIR_H_
