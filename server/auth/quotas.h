// Per-tenant quotas: the quotas file (--quotas_file) and its parsed table. (A request a quota
// refuses is answered with QuotaExceededError of server/core/quota.h.)
//
// The quotas file
// ---------------
// One line per tenant, fields separated by spaces or tabs:
//
//   TENANT  KEY=VALUE ...
//   *       KEY=VALUE ...
//
// - The first field is a tenant name (1 to 64 characters of [A-Za-z0-9._-], the first a letter
//   or a digit) or `*`. The `*` line gives every tenant's defaults; a tenant's line overrides the
//   keys it names and inherits the others from `*`. A tenant without a line has the `*` limits;
//   without a `*` line, a key no line names is unlimited.
// - KEY=VALUE is written without spaces. The keys:
//     stored_bytes               bytes of the tenant's stored datasets and models: a
//                                non-negative integer, optionally followed at once by a unit:
//                                KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers
//                                of 1024), e.g. 500MB, 10GiB; case-sensitive; at most 2^63-1
//     datasets                   datasets stored: a non-negative integer
//     queued_jobs                jobs waiting in the queue: a non-negative integer
//     running_jobs               jobs training at the same time: a non-negative integer
//     records_scored_per_second  records scored per second (Score and Evaluate): a
//                                non-negative decimal number, e.g. 1000 or 2.5
//   Any value may be `unlimited`: no limit (on a tenant's line, it removes the `*` limit).
//   0 is a limit: datasets=0 lets the tenant store no dataset.
// - Each key at most once per line; at most one line per tenant and one `*` line. A line may
//   name no key (the tenant then has the `*` limits).
// - A `#` at the start of a line or after a space or a tab starts a comment that runs to the end
//   of the line; blank lines are ignored; CRLF line ends are accepted.
//
// A file that breaks a rule is INVALID_ARGUMENT "line N: <the problem>".
#ifndef LOGP_SERVER_AUTH_QUOTAS_H_
#define LOGP_SERVER_AUTH_QUOTAS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/auth/watched_file.h"
#include "server/core/quota.h"

namespace logp {

// The quotas' names, in the file and in messages (QuotaExceededError's `quota`).
inline constexpr char kQuotaStoredBytes[] = "stored_bytes";
inline constexpr char kQuotaDatasets[] = "datasets";
inline constexpr char kQuotaQueuedJobs[] = "queued_jobs";
inline constexpr char kQuotaRunningJobs[] = "running_jobs";
inline constexpr char kQuotaRecordsScoredPerSecond[] = "records_scored_per_second";

// The quotas of one version of the quotas file. Immutable; thread-safe.
class QuotaTable {
 public:
  // Parses the quotas file format above.
  static absl::StatusOr<QuotaTable> Parse(std::string_view contents);
  // An empty table: no limits.
  QuotaTable() = default;

  // `tenant`'s limits: its line over the `*` line.
  TenantQuota For(const std::string& tenant) const;

 private:
  TenantQuota defaults_;                                   // the `*` line
  absl::flat_hash_map<std::string, TenantQuota> tenants_;  // resolved against defaults_
};

// The quotas file, re-read when it changes (see WatchedFile: a version that fails to parse keeps
// the previous table and logs an ERROR). Thread-safe.
class QuotasFile {
 public:
  // Reads and parses `path`: an unreadable file is its read error (NOT_FOUND, ...), a bad one
  // INVALID_ARGUMENT "quotas file 'PATH': line N: ...". The file is checked for changes at most
  // every `check_interval` (0: at every call).
  static absl::StatusOr<std::unique_ptr<QuotasFile>> Open(
      std::string path, absl::Duration check_interval = absl::Seconds(1));

  // `tenant`'s limits in the current table (after a check, if one is due).
  TenantQuota For(const std::string& tenant) const;
  // For the core (CoreOptions): For() as a QuotaFn. It shares the watched file, so it stays
  // valid after this QuotasFile is destroyed.
  QuotaFn AsQuotaFn() const;
  // OK, or why the last change of the file was not taken.
  absl::Status LastReloadStatus() const { return file_->LastReloadStatus(); }

 private:
  explicit QuotasFile(std::shared_ptr<WatchedFile<QuotaTable>> file) : file_(std::move(file)) {}
  const std::shared_ptr<WatchedFile<QuotaTable>> file_;
};

}  // namespace logp

#endif  // LOGP_SERVER_AUTH_QUOTAS_H_
