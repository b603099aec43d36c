// The PostgreSQL catalogue: the Catalog interface over one PostgreSQL database, answering every
// call as the SQLite catalogue does (tests/server/catalog_test.cc runs the same contract against
// both), so that several logpd processes can share one catalogue.
//
// Connections: a pool of at most 8, opened as needed; a call waits for a free one.
// Each call runs in one transaction on one connection. A connection found lost is closed and
// replaced: the call in flight fails with UNAVAILABLE (its transaction is rolled back by the
// server), unless the loss showed at its first statement (BEGIN), in which case nothing was
// done and the call is retried once on a new connection. A server that cannot be reached is
// UNAVAILABLE; the next call tries again.
//
// Schema: the tables of the SQLite catalogue (the API messages serialised in bytea, an identity
// column for creation order), versioned in schema_migrations; opening applies the migrations the
// database lacks in one transaction, under an advisory lock so that logpd processes starting
// together migrate once.
//
// Thread-safety: every method may be called concurrently.
#ifndef LOGP_SERVER_CORE_POSTGRES_CATALOG_H_
#define LOGP_SERVER_CORE_POSTGRES_CATALOG_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/core/catalog.h"

namespace logp {

// The key of the advisory lock (pg_advisory_xact_lock) that opening holds while it migrates, so
// that logpd processes opening one database at once migrate it one after the other: "logpmigr"
// in ASCII.
inline constexpr int64_t kPostgresMigrationLock = 0x6c6f67706d696772;

// Opens the catalogue in the database named by `uri`, a libpq connection URI
// (postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?PARAM=VALUE&...], e.g. ?host=/socket/dir for a
// Unix socket) or key=value connection string, and brings its schema up to date.
// INVALID_ARGUMENT for a URI libpq cannot parse; UNAVAILABLE when the server cannot be reached or
// refuses the connection; FAILED_PRECONDITION when the schema is newer than this logpd's.
absl::StatusOr<std::unique_ptr<Catalog>> OpenPostgresCatalog(const std::string& uri);

// `uri` without its password, for logs and messages: USER@HOST:PORT/DB.
absl::StatusOr<std::string> DescribePostgresUri(const std::string& uri);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_POSTGRES_CATALOG_H_
