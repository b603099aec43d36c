// OpenCatalog: the catalogue logpd's --catalog names.
#ifndef LOGP_SERVER_CORE_OPEN_CATALOG_H_
#define LOGP_SERVER_CORE_OPEN_CATALOG_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/core/catalog.h"

namespace logp {

// `spec` empty: the SQLite catalogue in `data_dir` (catalog.db; the directory must exist), what
// Core opens by default. postgresql://... or postgres://...: the PostgreSQL catalogue in the
// database that libpq URI names (OpenPostgresCatalog). Anything else is INVALID_ARGUMENT.
absl::StatusOr<std::unique_ptr<Catalog>> OpenCatalog(const std::string& spec,
                                                     const std::string& data_dir);

// What `spec` names, for a log line, without a password: "SQLite DIR/catalog.db" or
// "PostgreSQL USER@HOST:PORT/DB".
absl::StatusOr<std::string> DescribeCatalog(const std::string& spec, const std::string& data_dir);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_OPEN_CATALOG_H_
