#include "server/core/open_catalog.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proto/cc/status_macros.h"
#include "server/core/postgres_catalog.h"

namespace logp {
namespace {

bool IsPostgresUri(const std::string& spec) {
  return absl::StartsWith(spec, "postgresql://") || absl::StartsWith(spec, "postgres://");
}

// The message names the scheme only: the rest may hold a password.
absl::Status UnknownSpec(const std::string& spec) {
  const size_t scheme_end = spec.find("://");
  return absl::InvalidArgumentError(absl::StrCat(
      "the catalogue must be empty (SQLite in the data directory) or a PostgreSQL URI "
      "(postgresql://USER@HOST:PORT/DB or postgres://...), not ",
      scheme_end == std::string::npos ? "something without a scheme"
                                      : absl::StrCat("a ", spec.substr(0, scheme_end), ":// URI")));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Catalog>> OpenCatalog(const std::string& spec,
                                                     const std::string& data_dir) {
  if (spec.empty()) return OpenSqliteCatalog(data_dir + "/catalog.db");
  if (IsPostgresUri(spec)) return OpenPostgresCatalog(spec);
  return UnknownSpec(spec);
}

absl::StatusOr<std::string> DescribeCatalog(const std::string& spec, const std::string& data_dir) {
  if (spec.empty()) return absl::StrCat("SQLite ", data_dir, "/catalog.db");
  if (!IsPostgresUri(spec)) return UnknownSpec(spec);
  ASSIGN_OR_RETURN(std::string where, DescribePostgresUri(spec));
  return absl::StrCat("PostgreSQL ", where);
}

}  // namespace logp
