// TestCatalog: the catalogue an integration test's Core runs on, chosen for the whole test binary
// by the environment variable LOGP_TEST_CATALOG:
//   unset, empty or "sqlite"  none: the Core opens SQLite in its data directory, as logpd does by
//                             default;
//   "postgres"                the PostgreSQL catalogue in a database of its own per TestCatalog,
//                             on the one private server of the test process
//                             (tests/postgres_server.h, started at first use, stopped at exit).
// Any other value fails the test rather than quietly running SQLite. tests/CMakeLists.txt runs
// every integration test both ways, the PostgreSQL runs as "postgres.<test>" (label postgres).
//
// A fixture keeps one TestCatalog per data directory (per logpd it stands in for), declared
// before its Core so that it outlives it, passes Open(data_dir) as CoreOptions::catalog each time
// it opens a Core, and closes it before removing the directory. Not thread-safe: one thread at a
// time opens and closes it. Header-only; links libpqxx and logp_postgres_catalog; LOGP_SOURCE_DIR
// must name the source tree.
#ifndef LOGP_TESTS_INTEGRATION_TEST_CATALOG_H_
#define LOGP_TESTS_INTEGRATION_TEST_CATALOG_H_

#include <gtest/gtest.h>
#include <stdlib.h>

#include <exception>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "server/core/catalog.h"
#include "server/core/open_catalog.h"
#include "tests/postgres_server.h"

namespace logp {

class TestCatalog {
 public:
  // Whether this binary runs on PostgreSQL; INVALID_ARGUMENT for an unknown LOGP_TEST_CATALOG.
  static absl::StatusOr<bool> IsPostgres() {
    const char* value = getenv("LOGP_TEST_CATALOG");
    const std::string name = value == nullptr ? "" : value;
    if (name.empty() || name == "sqlite") return false;
    if (name == "postgres") return true;
    return absl::InvalidArgumentError(absl::StrCat(
        "LOGP_TEST_CATALOG must be unset, \"sqlite\" or \"postgres\", not \"", name, "\""));
  }

  ~TestCatalog() { Close(); }

  // The catalogue for the next Core on `data_dir`: null for SQLite (the Core opens the one in its
  // data directory). On PostgreSQL, the catalogue of this object's database, created at the first
  // call; every call closes the catalogue it returned before and opens the database anew, as a
  // restarted logpd would, so no Core may still use the one before.
  absl::StatusOr<Catalog*> Open(const std::string& data_dir) {
    Close();
    data_dir_ = data_dir;
    absl::StatusOr<bool> postgres = IsPostgres();
    if (!postgres.ok()) return postgres.status();
    if (!*postgres) return nullptr;
    if (uri_.empty()) {
      PostgresServer* server = SharedPostgresServer();
      if (server == nullptr) {
        return absl::FailedPreconditionError("the test's PostgreSQL server did not start");
      }
      try {
        uri_ = server->Uri(server->NewDatabase());
      } catch (const std::exception& e) {
        return absl::UnavailableError(absl::StrCat("CREATE DATABASE failed: ", e.what()));
      }
    }
    absl::StatusOr<std::unique_ptr<Catalog>> opened = OpenCatalog(uri_, "");
    if (!opened.ok()) return opened.status();
    catalog_ = std::move(*opened);
    return catalog_.get();
  }

  // Closes the catalogue Open returned (its connections), as logpd's exit would; call once the
  // Core using it is gone. The database stays for the next Open. On PostgreSQL, a test failure
  // if the data directory holds a SQLite catalogue: the Core did not use this one. Idempotent.
  void Close() {
    if (catalog_ == nullptr) return;
    catalog_.reset();
    EXPECT_FALSE(std::filesystem::exists(data_dir_ + "/catalog.db"))
        << "a run on PostgreSQL made a SQLite catalogue in " << data_dir_;
  }

 private:
  std::string uri_;  // empty until the PostgreSQL database exists
  std::string data_dir_;
  std::unique_ptr<Catalog> catalog_;
};

}  // namespace logp

#endif  // LOGP_TESTS_INTEGRATION_TEST_CATALOG_H_
