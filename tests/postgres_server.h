// PostgresServer: a private PostgreSQL server for a test binary, started by
// tests/postgres_server.sh in a fresh directory under /tmp and reachable only through a Unix
// socket there; stopped and removed when the object goes (or, should the test process die, by the
// script's watcher). Header-only; links libpqxx. LOGP_SOURCE_DIR must name the source tree.
#ifndef LOGP_TESTS_POSTGRES_SERVER_H_
#define LOGP_TESTS_POSTGRES_SERVER_H_

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <pqxx/pqxx>
#include <string>

#include "absl/strings/str_cat.h"

namespace logp {

class PostgresServer {
 public:
  // A running server, or null with a test failure saying why.
  static std::unique_ptr<PostgresServer> Start() {
    char tmpl[] = "/tmp/logp-pg-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed";
      return nullptr;
    }
    std::unique_ptr<PostgresServer> server(new PostgresServer(tmpl));
    if (server->Script(absl::StrCat("start ", server->dir_, " ", getpid())) != 0) {
      ADD_FAILURE() << "tests/postgres_server.sh could not start PostgreSQL in " << server->dir_;
      return nullptr;
    }
    return server;
  }
  ~PostgresServer() { Script(absl::StrCat("stop ", dir_)); }
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // The directory of the server's socket (and data).
  const std::string& dir() const { return dir_; }
  // The libpq URI of database `db` as the superuser.
  std::string Uri(const std::string& db) const {
    return absl::StrCat("postgresql://postgres@/", db, "?host=", dir_);
  }
  // A new, empty database; returns its name.
  std::string NewDatabase() {
    const std::string name = absl::StrCat("test_", next_database_++);
    pqxx::connection admin(Uri("postgres"));
    pqxx::nontransaction(admin).exec(absl::StrCat("CREATE DATABASE ", name));
    return name;
  }

 private:
  explicit PostgresServer(std::string dir) : dir_(std::move(dir)) {}
  int Script(const std::string& args) const {
    return std::system(
        absl::StrCat("bash ", LOGP_SOURCE_DIR, "/tests/postgres_server.sh ", args).c_str());
  }

  const std::string dir_;
  std::atomic<int> next_database_{0};
};

// The one server of this test process, started on first use; null (with a test failure) if it
// could not start.
inline PostgresServer* SharedPostgresServer() {
  static const std::unique_ptr<PostgresServer> server = PostgresServer::Start();
  return server.get();
}

}  // namespace logp

#endif  // LOGP_TESTS_POSTGRES_SERVER_H_
