// PostgreSQL implementation of Catalog over libpqxx 6.4: a small connection pool, one transaction
// per call. See postgres_catalog.h for the contract.
#include "server/core/postgres_catalog.h"

#include <glog/logging.h>
#include <libpq-fe.h>

#include <climits>
#include <cstdint>
#include <functional>
#include <optional>
#include <pqxx/pqxx>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace {

// As in the SQLite catalogue.
constexpr int kDefaultPage = 50;
constexpr int kMaxPage = 1000;

// Connections open at once at most; a call that finds them all busy waits for one.
constexpr int kMaxConnections = 8;
// libpq's connect_timeout when the URI sets none (libpq's own default is to wait forever).
constexpr char kConnectTimeoutSeconds[] = "10";
// The application_name of our sessions when the URI sets none (pg_stat_activity shows it).
constexpr char kApplicationName[] = "logpd";

// Schema upgrades: kMigrations[v] takes the catalogue from version v (the largest version in
// schema_migrations; 0 for an empty database) to v + 1. Every migration the database lacks is
// applied in the one transaction that opens it.
const char* const kMigrations[] = {
    // 1: the tables of the SQLite catalogue at its version 2 (create requests, tenants).
    R"sql(
CREATE TABLE datasets (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT UNIQUE NOT NULL,
  tenant TEXT NOT NULL DEFAULT 'default', proto BYTEA NOT NULL);
CREATE INDEX datasets_by_tenant ON datasets (tenant, seq);
CREATE TABLE jobs (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT UNIQUE NOT NULL,
  tenant TEXT NOT NULL DEFAULT 'default', state INTEGER NOT NULL, proto BYTEA NOT NULL);
CREATE INDEX jobs_by_tenant ON jobs (tenant, seq);
CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE TABLE job_events (
  job_id TEXT NOT NULL, seq BIGINT NOT NULL, proto BYTEA NOT NULL, PRIMARY KEY (job_id, seq));
CREATE TABLE models (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT UNIQUE NOT NULL,
  tenant TEXT NOT NULL DEFAULT 'default', proto BYTEA NOT NULL);
CREATE INDEX models_by_tenant ON models (tenant, seq);
CREATE TABLE create_requests (
  kind TEXT NOT NULL, tenant TEXT NOT NULL, request_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
  resource_id TEXT NOT NULL, PRIMARY KEY (kind, tenant, request_id));
CREATE INDEX create_requests_by_resource ON create_requests (resource_id);
)sql",
    // 2: job leases, shared by the replicas. A row lives as long as its job; its token only grows
    // (one more at every claim), owner '' is a released lease.
    R"sql(
CREATE TABLE job_leases (
  job_id TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE, owner TEXT NOT NULL,
  token BIGINT NOT NULL, expires_at TIMESTAMPTZ NOT NULL,
  cancel_requested BOOLEAN NOT NULL DEFAULT false);
CREATE INDEX job_leases_by_owner ON job_leases (owner);
)sql",
};
// The channel on which every committed write of a job is announced (its id as the payload).
constexpr char kJobsChannel[] = "logp_jobs";
// Whether a job_leases row (alias l) holds its job now.
constexpr char kHeld[] = "(l.owner <> '' AND l.expires_at > now())";
constexpr int64_t kSchemaVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);

// A libpq or libpqxx message on one line.
std::string Trimmed(const char* s) {
  return absl::StrReplaceAll(absl::StripTrailingAsciiWhitespace(s == nullptr ? "" : s),
                             {{"\n", " "}});
}

// PostgreSQL's text cannot hold a NUL byte (and libpq would silently cut a parameter there), so
// no stored id, tenant or request id has one.
bool Storable(const std::string& s) { return s.find('\0') == std::string::npos; }
absl::Status CheckStorable(const char* field, const std::string& s) {
  if (Storable(s)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, " contains a NUL byte, which the PostgreSQL catalogue cannot store"));
}

// A serialised message as a bytea parameter (sent in binary, with its length).
pqxx::binarystring ByteaParam(const std::string& s) {
  return pqxx::binarystring(s.data(), s.size());
}
// A bytea column's value.
std::string ByteaValue(const pqxx::field& f) { return pqxx::binarystring(f).str(); }

// Whether `e` says the session is gone: libpqxx saw the connection break (or break while
// committing), or the server said it ends the session (administrator command, crash, startup or
// shutdown: SQLSTATE 57P01..57P03) or a connection error (class 08).
bool IsConnectionLoss(const std::exception& e) {
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
      dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return true;
  }
  const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e);
  return sql != nullptr && (absl::StartsWith(sql->sqlstate(), "08") || sql->sqlstate() == "57P01" ||
                            sql->sqlstate() == "57P02" || sql->sqlstate() == "57P03");
}

// What a failed call returns: by what the caller should do next. A lost connection or a server
// that is shutting down, full of connections or read-only (a standby) is UNAVAILABLE (retry); a
// serialisation failure or deadlock ABORTED (retry the transaction); a full disk
// RESOURCE_EXHAUSTED, as in the SQLite catalogue; a value the server refuses INVALID_ARGUMENT;
// anything else INTERNAL.
absl::Status ErrorStatus(const std::string& what, const std::exception& e, bool connection_lost) {
  const std::string msg = absl::StrCat("catalogue: ", what, ": ", Trimmed(e.what()));
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return absl::UnavailableError(absl::StrCat(
        msg,
        " (the connection to PostgreSQL was lost while committing: whether the change was "
        "made is unknown)"));
  }
  if (connection_lost) {
    return absl::UnavailableError(
        absl::StrCat(msg, " (the connection to PostgreSQL was lost; the next call reconnects)"));
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e); sql != nullptr) {
    const std::string& state = sql->sqlstate();
    if (state == "53100") {
      return absl::ResourceExhaustedError(absl::StrCat(msg, " (no space left on device)"));
    }
    // 08: connection exceptions; 57: operator intervention (shutdown, a cancelled statement);
    // 53300: too many connections; 25006: a read-only transaction (a standby).
    if (absl::StartsWith(state, "08") || absl::StartsWith(state, "57") || state == "53300" ||
        state == "25006") {
      return absl::UnavailableError(msg);
    }
    if (absl::StartsWith(state, "40")) return absl::AbortedError(msg);
    if (absl::StartsWith(state, "53")) return absl::ResourceExhaustedError(msg);
    if (absl::StartsWith(state, "22")) return absl::InvalidArgumentError(msg);
  }
  return absl::InternalError(msg);
}

// A libpq connection string, and what it names without the password (for messages).
struct ConnectionSpec {
  std::string conninfo;
  std::string description;
};

// `value` quoted for a key=value connection string.
std::string Quoted(const std::string& value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

absl::StatusOr<ConnectionSpec> ParseConnectionSpec(const std::string& uri) {
  if (!Storable(uri)) return absl::InvalidArgumentError("PostgreSQL URI contains a NUL byte");
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(uri.c_str(), &error);
  if (options == nullptr) {
    const std::string why = error != nullptr ? Trimmed(error) : "out of memory";
    PQfreemem(error);
    return absl::InvalidArgumentError(absl::StrCat("PostgreSQL URI: ", why));
  }
  // What the URI sets (PQconninfoParse applies no defaults).
  std::vector<std::pair<std::string, std::string>> set;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) set.emplace_back(o->keyword, o->val);
  }
  PQconninfoFree(options);
  auto value = [&](const std::string& key) -> std::string {
    for (const auto& [k, v] : set) {
      if (k == key) return v;
    }
    return "";
  };
  if (value("connect_timeout").empty()) set.emplace_back("connect_timeout", kConnectTimeoutSeconds);
  if (value("fallback_application_name").empty()) {
    set.emplace_back("fallback_application_name", kApplicationName);
  }
  ConnectionSpec spec;
  spec.conninfo = absl::StrJoin(set, " ", [](std::string* out, const auto& kv) {
    absl::StrAppend(out, kv.first, "=", Quoted(kv.second));
  });
  const std::string user = value("user"), host = value("host"), port = value("port");
  const std::string db = value("dbname");
  spec.description =
      absl::StrCat(user.empty() ? "" : user + "@", host.empty() ? "(default host)" : host,
                   port.empty() ? "" : ":" + port, "/", db.empty() ? "(default database)" : db);
  return spec;
}

// Where a listing's page starts, from a List call's arguments (as the SQLite catalogue checks
// them).
struct PageStart {
  int size = 0;
  int64_t before_seq = INT64_MAX;
};
absl::StatusOr<PageStart> ParsePage(int page_size, const std::string& token) {
  if (page_size < 0 || page_size > kMaxPage) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size must be in [0, ", kMaxPage, "], got ", page_size));
  }
  PageStart start;
  start.size = page_size == 0 ? kDefaultPage : page_size;
  if (!token.empty() && (!absl::SimpleAtoi(token, &start.before_seq) || start.before_seq < 0)) {
    return absl::InvalidArgumentError(absl::StrCat("page_token '", token, "' is not valid"));
  }
  return start;
}

class PostgresCatalog final : public Catalog {
 public:
  explicit PostgresCatalog(ConnectionSpec spec) : spec_(std::move(spec)) {}

  // Brings the schema to kSchemaVersion (see kMigrations).
  absl::Status Migrate() {
    return Run("migrate the schema", [&](pqxx::work& tx) -> absl::Status {
      tx.exec("SET LOCAL client_min_messages = warning");  // no "already exists, skipping"
      tx.exec_params("SELECT pg_advisory_xact_lock($1)", kPostgresMigrationLock);
      tx.exec(
          "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
          "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())");
      const int64_t from =
          tx.exec1("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")[0].as<int64_t>();
      if (from > kSchemaVersion) {
        return absl::FailedPreconditionError(absl::StrCat("the catalogue has schema version ", from,
                                                          ", newer than this logpd's ",
                                                          kSchemaVersion));
      }
      for (int64_t v = from; v < kSchemaVersion; ++v) {
        tx.exec(kMigrations[v]);
        tx.exec_params("INSERT INTO schema_migrations (version) VALUES ($1)", v + 1);
      }
      if (from < kSchemaVersion) {
        LOG(INFO) << "catalogue: PostgreSQL schema of " << spec_.description
                  << " migrated from version " << from << " to " << kSchemaVersion;
      }
      return absl::OkStatus();
    });
  }

  absl::Status InsertDataset(const v1::Dataset& d) override {
    RETURN_IF_ERROR(CheckRow(d.id(), d.tenant()));
    return Run("insert dataset", [&](pqxx::work& tx) { return InsertDatasetIn(tx, d); });
  }
  absl::StatusOr<v1::Dataset> GetDataset(const std::string& id) override {
    return Get<v1::Dataset>("SELECT proto FROM datasets WHERE id = $1", id, "dataset");
  }
  absl::StatusOr<Page<v1::Dataset>> ListDatasets(const std::string& tenant, int n,
                                                 const std::string& token) override {
    return List<v1::Dataset>("datasets", tenant, n, token);
  }
  absl::Status DeleteDataset(const std::string& id) override {
    if (!Storable(id)) return absl::NotFoundError(absl::StrCat("dataset ", id));
    return Run("delete dataset", [&](pqxx::work& tx) -> absl::Status {
      if (tx.exec_params("DELETE FROM datasets WHERE id = $1", id).affected_rows() == 0) {
        return absl::NotFoundError(absl::StrCat("dataset ", id));
      }
      tx.exec_params("DELETE FROM create_requests WHERE kind = 'dataset' AND resource_id = $1", id);
      return absl::OkStatus();
    });
  }

  absl::Status InsertJobWithEvents(const v1::Job& j, const std::vector<v1::JobEvent>& events,
                                   const CreateRequest* r) override {
    RETURN_IF_ERROR(CheckRow(j.id(), j.tenant()));
    if (r != nullptr) RETURN_IF_ERROR(CheckRequest(*r));
    return Run("insert job", [&](pqxx::work& tx) -> absl::Status {
      RETURN_IF_ERROR(InsertJobIn(tx, j));
      if (r != nullptr) RETURN_IF_ERROR(InsertRequestIn(tx, *r));
      InsertEventsIn(tx, j.id(), events);
      Announce(tx, j.id());
      return absl::OkStatus();
    });
  }
  absl::Status UpdateJob(const v1::Job& j) override {
    if (!Storable(j.id())) return absl::NotFoundError(absl::StrCat("job ", j.id()));
    return Run("update job", [&](pqxx::work& tx) { return UpdateJobIn(tx, j); });
  }
  absl::StatusOr<v1::Job> GetJob(const std::string& id) override {
    return Get<v1::Job>("SELECT proto FROM jobs WHERE id = $1", id, "job");
  }
  absl::StatusOr<Page<v1::Job>> ListJobs(const std::string& tenant, int n,
                                         const std::string& token) override {
    return List<v1::Job>("jobs", tenant, n, token);
  }
  absl::StatusOr<std::vector<v1::Job>> JobsInStates(
      const std::vector<v1::JobState>& states) override {
    if (states.empty()) return std::vector<v1::Job>();
    // An array literal of integers, e.g. {1,2}.
    const std::string array = absl::StrCat(
        "{",
        absl::StrJoin(
            states, ",",
            [](std::string* out, v1::JobState s) { absl::StrAppend(out, static_cast<int>(s)); }),
        "}");
    return Run("jobs in states", [&](pqxx::work& tx) -> absl::StatusOr<std::vector<v1::Job>> {
      const pqxx::result rows = tx.exec_params(
          "SELECT proto FROM jobs WHERE state = ANY($1::integer[]) ORDER BY seq ASC", array);
      return ParseRows<v1::Job>(rows, 0, "corrupt job row");
    });
  }

  absl::Status WriteJob(const JobWrite& w) override {
    const v1::Job& job = w.job;
    if (!Storable(job.id())) return absl::NotFoundError(absl::StrCat("job ", job.id()));
    if (w.model) RETURN_IF_ERROR(CheckRow(w.model->id(), w.model->tenant()));
    return Run("write job", [&](pqxx::work& tx) -> absl::Status {
      // The row first: it locks the job against a concurrent write or claim (a claim skips a
      // locked job), and when it is missing nothing is written.
      RETURN_IF_ERROR(UpdateJobIn(tx, job));
      if (w.lease_token != 0) {
        const pqxx::result held = tx.exec_params(
            "SELECT token FROM job_leases WHERE job_id = $1 AND owner <> '' FOR SHARE", job.id());
        const int64_t token = held.empty() ? 0 : held[0][0].as<int64_t>();
        if (token != w.lease_token) return LeaseLostError(job.id(), w.lease_token, token);
      }
      if (w.model) {
        RETURN_IF_ERROR(InsertUnique(tx, absl::StrCat("id ", w.model->id()),
                                     "INSERT INTO models (id, tenant, proto) VALUES ($1, $2, $3)",
                                     w.model->id(), OwnerOf(w.model->tenant()),
                                     ByteaParam(w.model->SerializeAsString())));
      }
      InsertEventsIn(tx, job.id(), w.events);
      if (w.release_lease) {
        tx.exec_params(
            "UPDATE job_leases SET owner = '', expires_at = '-infinity' WHERE job_id = $1 AND "
            "token = $2",
            job.id(), w.lease_token);
      }
      Announce(tx, job.id());
      return absl::OkStatus();
    });
  }
  absl::StatusOr<std::vector<v1::JobEvent>> ListEvents(const std::string& job_id,
                                                       int64_t from_seq) override {
    if (!Storable(job_id)) return std::vector<v1::JobEvent>();
    return Run("list events", [&](pqxx::work& tx) -> absl::StatusOr<std::vector<v1::JobEvent>> {
      const pqxx::result rows = tx.exec_params(
          "SELECT proto FROM job_events WHERE job_id = $1 AND seq >= $2 ORDER BY seq ASC", job_id,
          from_seq);
      return ParseRows<v1::JobEvent>(rows, 0, "corrupt event row");
    });
  }

  absl::StatusOr<CreateRequest> GetCreateRequest(const std::string& kind, const std::string& tenant,
                                                 const std::string& request_id) override {
    auto none = [&] { return absl::NotFoundError(absl::StrCat("no ", kind, " request")); };
    if (!Storable(kind) || !Storable(tenant) || !Storable(request_id)) return none();
    return Run("get request", [&](pqxx::work& tx) -> absl::StatusOr<CreateRequest> {
      const pqxx::result rows = tx.exec_params(
          "SELECT fingerprint, resource_id FROM create_requests WHERE kind = $1 AND tenant = $2 "
          "AND request_id = $3",
          kind, OwnerOf(tenant), request_id);
      if (rows.empty()) return none();
      return CreateRequest{kind, request_id, rows[0][0].as<std::string>(),
                           rows[0][1].as<std::string>(), OwnerOf(tenant)};
    });
  }
  absl::Status InsertDatasetForRequest(const v1::Dataset& d, const CreateRequest& r) override {
    RETURN_IF_ERROR(CheckRow(d.id(), d.tenant()));
    RETURN_IF_ERROR(CheckRequest(r));
    return Run("insert dataset for request", [&](pqxx::work& tx) -> absl::Status {
      RETURN_IF_ERROR(InsertDatasetIn(tx, d));
      return InsertRequestIn(tx, r);
    });
  }
  absl::Status InsertModel(const v1::Model& m) override {
    RETURN_IF_ERROR(CheckRow(m.id(), m.tenant()));
    return Run("insert model", [&](pqxx::work& tx) {
      return InsertUnique(tx, absl::StrCat("id ", m.id()),
                          "INSERT INTO models (id, tenant, proto) VALUES ($1, $2, $3)", m.id(),
                          OwnerOf(m.tenant()), ByteaParam(m.SerializeAsString()));
    });
  }
  absl::StatusOr<v1::Model> GetModel(const std::string& id) override {
    return Get<v1::Model>("SELECT proto FROM models WHERE id = $1", id, "model");
  }
  absl::StatusOr<Page<v1::Model>> ListModels(const std::string& tenant, int n,
                                             const std::string& token) override {
    return List<v1::Model>("models", tenant, n, token);
  }
  absl::StatusOr<TenantStorage> StoredBy(const std::string& tenant) override {
    if (!Storable(tenant)) return TenantStorage();
    return Run("stored by", [&](pqxx::work& tx) -> absl::StatusOr<TenantStorage> {
      TenantStorage out;
      ASSIGN_OR_RETURN(
          const std::vector<v1::Dataset> datasets,
          ParseRows<v1::Dataset>(
              tx.exec_params("SELECT proto FROM datasets WHERE tenant = $1", OwnerOf(tenant)), 0,
              "corrupt row"));
      for (const auto& d : datasets) {
        ++out.datasets;
        out.dataset_bytes += static_cast<int64_t>(d.stored_bytes());
      }
      ASSIGN_OR_RETURN(
          const std::vector<v1::Model> models,
          ParseRows<v1::Model>(
              tx.exec_params("SELECT proto FROM models WHERE tenant = $1", OwnerOf(tenant)), 0,
              "corrupt row"));
      for (const auto& m : models) {
        ++out.models;
        out.model_bytes += static_cast<int64_t>(m.stored_bytes());
      }
      return out;
    });
  }

  absl::StatusOr<JobQueue> ReadQueue() override {
    return Run("read queue", [&](pqxx::work& tx) -> absl::StatusOr<JobQueue> {
      const pqxx::result rows = tx.exec_params(
          absl::StrCat("SELECT j.proto, COALESCE(", kHeld,
                       ", false) FROM jobs j LEFT JOIN job_leases l ON l.job_id = j.id WHERE "
                       "j.state IN ($1, $2) ORDER BY j.seq ASC"),
          static_cast<int>(v1::JOB_STATE_QUEUED), static_cast<int>(v1::JOB_STATE_RUNNING));
      JobQueue q;
      std::vector<v1::Job> queued;
      for (const auto& row : rows) {
        v1::Job j;
        if (!j.ParseFromString(ByteaValue(row[0]))) return absl::DataLossError("corrupt job row");
        const std::string tenant = OwnerOf(j.tenant());
        if (j.state() == v1::JOB_STATE_QUEUED) ++q.queued_by_tenant[tenant];
        if (row[1].as<bool>()) {
          ++q.leased_by_tenant[tenant];
        } else if (j.state() == v1::JOB_STATE_RUNNING) {
          q.claimable.push_back(std::move(j));
        } else {
          queued.push_back(std::move(j));
        }
      }
      q.claimable.insert(q.claimable.end(), queued.begin(), queued.end());
      return q;
    });
  }
  absl::StatusOr<std::optional<JobClaim>> ClaimJob(const std::string& job_id,
                                                   const std::string& owner,
                                                   absl::Duration duration) override {
    using Result = absl::StatusOr<std::optional<JobClaim>>;
    if (!Storable(job_id)) return std::nullopt;
    RETURN_IF_ERROR(CheckStorable("replica id", owner));
    if (owner.empty()) return absl::InvalidArgumentError("a lease needs an owner");
    return Run("claim job", [&](pqxx::work& tx) -> Result {
      // The job row, unless another claim or a write of the job holds it: then it is not
      // claimable now, and this claim does not wait.
      const pqxx::result job = tx.exec_params(
          "SELECT proto FROM jobs WHERE id = $1 AND state IN ($2, $3) FOR UPDATE SKIP LOCKED",
          job_id, static_cast<int>(v1::JOB_STATE_QUEUED), static_cast<int>(v1::JOB_STATE_RUNNING));
      if (job.empty()) return std::nullopt;
      const pqxx::result lease =
          tx.exec_params(absl::StrCat("SELECT l.owner, ", kHeld,
                                      " FROM job_leases l WHERE l.job_id = $1 FOR UPDATE"),
                         job_id);
      if (!lease.empty() && lease[0][1].as<bool>()) return std::nullopt;
      JobClaim claim;
      if (!claim.job.ParseFromString(ByteaValue(job[0][0]))) {
        return absl::DataLossError("corrupt job row");
      }
      if (!lease.empty()) claim.previous_owner = lease[0][0].as<std::string>();
      const pqxx::row taken = tx.exec_params1(
          "INSERT INTO job_leases (job_id, owner, token, expires_at) VALUES ($1, $2, 1, now() + "
          "make_interval(secs => $3)) ON CONFLICT (job_id) DO UPDATE SET owner = EXCLUDED.owner, "
          "token = job_leases.token + 1, expires_at = EXCLUDED.expires_at RETURNING token, "
          "cancel_requested",
          job_id, owner, absl::ToDoubleSeconds(duration));
      claim.lease = JobLease{job_id, owner, taken[0].as<int64_t>()};
      claim.cancel_requested = taken[1].as<bool>();
      return std::optional<JobClaim>(std::move(claim));
    });
  }
  absl::StatusOr<bool> RenewLease(const JobLease& lease, absl::Duration duration) override {
    if (!Storable(lease.job_id)) return LeaseLostError(lease.job_id, lease.token, 0);
    return Run("renew lease", [&](pqxx::work& tx) -> absl::StatusOr<bool> {
      const pqxx::result r = tx.exec_params(
          "UPDATE job_leases SET expires_at = now() + make_interval(secs => $3) WHERE job_id = $1 "
          "AND token = $2 AND owner <> '' RETURNING cancel_requested",
          lease.job_id, lease.token, absl::ToDoubleSeconds(duration));
      if (!r.empty()) return r[0][0].as<bool>();
      const pqxx::result now = tx.exec_params(
          "SELECT token FROM job_leases WHERE job_id = $1 AND owner <> ''", lease.job_id);
      return LeaseLostError(lease.job_id, lease.token, now.empty() ? 0 : now[0][0].as<int64_t>());
    });
  }
  absl::Status ReleaseLeasesOf(const std::string& owner) override {
    if (!Storable(owner) || owner.empty()) return absl::OkStatus();
    return Run("release leases", [&](pqxx::work& tx) -> absl::Status {
      tx.exec_params("UPDATE job_leases SET owner = '', expires_at = '-infinity' WHERE owner = $1",
                     owner);
      return absl::OkStatus();
    });
  }
  absl::Status RequestCancel(const std::string& job_id) override {
    if (!Storable(job_id)) return UnknownIdError("job", job_id);
    return Run("request cancel", [&](pqxx::work& tx) -> absl::Status {
      if (tx.exec_params("SELECT 1 FROM jobs WHERE id = $1", job_id).empty()) {
        return UnknownIdError("job", job_id);
      }
      tx.exec_params(
          "INSERT INTO job_leases (job_id, owner, token, expires_at, cancel_requested) VALUES "
          "($1, '', 0, '-infinity', true) ON CONFLICT (job_id) DO UPDATE SET cancel_requested = "
          "true",
          job_id);
      Announce(tx, job_id);
      return absl::OkStatus();
    });
  }
  bool SharedByProcesses() const override { return true; }
  bool WatchChanges(std::function<void(const std::string&)> on_change) override {
    absl::MutexLock lock(&watch_mu_);
    on_change_ = std::move(on_change);
    if (!listener_.joinable()) listener_ = std::thread([this] { Listen(); });
    return true;
  }
  ~PostgresCatalog() override {
    {
      absl::MutexLock lock(&mu_);
      stop_listening_ = true;
    }
    if (listener_.joinable()) listener_.join();
  }

 private:
  // Calls on_change with the payload of every notification on kJobsChannel until the catalogue
  // goes, on a connection of its own (not the pool's): reconnects after a loss, then calls
  // on_change("") for what it may have missed.
  void Listen() {
    auto on_change = [this](const std::string& job_id) {
      absl::MutexLock lock(&watch_mu_);
      if (on_change_) on_change_(job_id);
    };
    class Receiver final : public pqxx::notification_receiver {
     public:
      Receiver(pqxx::connection_base& c, std::function<void(const std::string&)> f)
          : pqxx::notification_receiver(c, kJobsChannel), f_(std::move(f)) {}
      void operator()(const std::string& payload, int) override { f_(payload); }

     private:
      std::function<void(const std::string&)> f_;
    };
    auto stopping = [this] {
      absl::MutexLock lock(&mu_);
      return stop_listening_;
    };
    bool lost = false;
    while (!stopping()) {
      absl::StatusOr<std::unique_ptr<pqxx::connection>> conn = Connect();
      if (!conn.ok()) {
        if (!lost)
          LOG(WARNING) << "catalogue: not listening for other replicas' news: " << conn.status();
        lost = true;
        absl::SleepFor(absl::Seconds(1));
        continue;
      }
      try {
        Receiver receiver(**conn, on_change);
        (*conn)->get_notifs();  // the LISTEN is sent now
        if (lost) {
          LOG(INFO) << "catalogue: listening for other replicas' news again";
          on_change("");
        }
        lost = false;
        while (!stopping() && (*conn)->is_open()) (*conn)->await_notification(0, 200000);
      } catch (const std::exception& e) {
        LOG(WARNING) << "catalogue: lost the connection that listens for other replicas' news: "
                     << Trimmed(e.what());
        lost = true;
        absl::SleepFor(absl::Milliseconds(200));
      }
    }
  }
  // Announces a committed write of job `job_id` to every listening replica (delivered at
  // commit, not at all on rollback).
  static void Announce(pqxx::work& tx, const std::string& job_id) {
    tx.exec_params("SELECT pg_notify($1, $2)", kJobsChannel, job_id);
  }
  static void InsertEventsIn(pqxx::work& tx, const std::string& job_id,
                             const std::vector<v1::JobEvent>& events) {
    for (const auto& e : events) {
      tx.exec_params(
          "INSERT INTO job_events (job_id, seq, proto) VALUES ($1, $2, $3) "
          "ON CONFLICT (job_id, seq) DO UPDATE SET proto = EXCLUDED.proto",
          job_id, e.seq(), ByteaParam(e.SerializeAsString()));
    }
  }
  // A connection lent for one call; `reused` if it served an earlier call.
  struct Lease {
    std::unique_ptr<pqxx::connection> conn;
    bool reused = false;
  };

  // Runs `body` in a transaction on a pooled connection: committed if it returns OK, rolled back
  // otherwise. An exception (libpqxx reports every failure so) becomes a status (ErrorStatus). A
  // connection that failed is closed, not returned to the pool; when it failed at BEGIN on a
  // connection that served earlier calls (the server closed it in between), nothing was done,
  // and the call is tried again once on a new connection.
  template <typename Body>
  auto Run(const std::string& what, const Body& body)
      -> decltype(body(std::declval<pqxx::work&>())) {
    using Result = decltype(body(std::declval<pqxx::work&>()));
    for (int attempt = 0;; ++attempt) {
      absl::StatusOr<Lease> lease = Acquire();
      if (!lease.ok()) return Result(lease.status());
      pqxx::connection& conn = *lease->conn;
      bool begun = false, lost = false;
      std::optional<Result> result;
      try {
        pqxx::work tx(conn);
        begun = true;
        result.emplace(body(tx));
        if (result->ok()) {
          tx.commit();
        } else {
          tx.abort();
        }
      } catch (const std::exception& e) {
        lost = !conn.is_open() || IsConnectionLoss(e);
        result.emplace(ErrorStatus(what, e, lost));
      }
      const bool healthy = !lost && conn.is_open();
      Release(std::move(lease->conn), healthy);
      if (!healthy && !begun && lease->reused && attempt == 0) {
        LOG(WARNING) << "catalogue: the connection to PostgreSQL at " << spec_.description
                     << " was closed since its last use; reconnecting";
        continue;
      }
      return *std::move(result);
    }
  }

  absl::StatusOr<std::unique_ptr<pqxx::connection>> Connect() {
    try {
      auto conn = std::make_unique<pqxx::connection>(spec_.conninfo);
      // We replace lost connections ourselves (Run); libpqxx's own reconnecting (deprecated, and
      // gone in libpqxx 7) is off, so that no statement ever runs on a silently new session.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
      conn->inhibit_reactivation(true);
#pragma GCC diagnostic pop
      return conn;
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("catalogue: cannot connect to PostgreSQL at ",
                                                 spec_.description, ": ", Trimmed(e.what())));
    }
  }
  bool CanLendLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !idle_.empty() || open_ < kMaxConnections;
  }
  // An idle connection, or a new one while fewer than kMaxConnections are open; waits otherwise.
  absl::StatusOr<Lease> Acquire() {
    {
      absl::MutexLock lock(&mu_, absl::Condition(this, &PostgresCatalog::CanLendLocked));
      if (!idle_.empty()) {
        Lease lease{std::move(idle_.back()), true};
        idle_.pop_back();
        return lease;
      }
      ++open_;  // connecting happens with the lock released
    }
    absl::StatusOr<std::unique_ptr<pqxx::connection>> conn = Connect();
    if (!conn.ok()) {
      absl::MutexLock lock(&mu_);
      --open_;
      return conn.status();
    }
    return Lease{std::move(*conn), false};
  }
  void Release(std::unique_ptr<pqxx::connection> conn, bool healthy) {
    if (!healthy) conn.reset();  // closes it, with the lock released
    absl::MutexLock lock(&mu_);
    if (healthy) {
      idle_.push_back(std::move(conn));
    } else {
      --open_;
    }
  }

  // The checks of what an insert stores that PostgreSQL would refuse (see Storable).
  static absl::Status CheckRow(const std::string& id, const std::string& tenant) {
    RETURN_IF_ERROR(CheckStorable("id", id));
    return CheckStorable("tenant", tenant);
  }
  static absl::Status CheckRequest(const CreateRequest& r) {
    RETURN_IF_ERROR(CheckStorable("request kind", r.kind));
    RETURN_IF_ERROR(CheckStorable("request_id", r.request_id));
    RETURN_IF_ERROR(CheckStorable("request tenant", r.tenant));
    RETURN_IF_ERROR(CheckStorable("request fingerprint", r.fingerprint));
    return CheckStorable("request resource id", r.resource_id);
  }

  // Runs an INSERT; ALREADY_EXISTS `duplicate` when it breaks a unique key (the transaction is
  // then aborted).
  template <typename... Args>
  static absl::Status InsertUnique(pqxx::work& tx, const std::string& duplicate,
                                   const std::string& sql, Args&&... args) {
    try {
      tx.exec_params(sql, std::forward<Args>(args)...);
    } catch (const pqxx::unique_violation&) {
      return absl::AlreadyExistsError(duplicate);
    }
    return absl::OkStatus();
  }
  static absl::Status InsertDatasetIn(pqxx::work& tx, const v1::Dataset& d) {
    return InsertUnique(tx, absl::StrCat("id ", d.id()),
                        "INSERT INTO datasets (id, tenant, proto) VALUES ($1, $2, $3)", d.id(),
                        OwnerOf(d.tenant()), ByteaParam(d.SerializeAsString()));
  }
  static absl::Status InsertJobIn(pqxx::work& tx, const v1::Job& j) {
    return InsertUnique(tx, absl::StrCat("job ", j.id()),
                        "INSERT INTO jobs (id, tenant, state, proto) VALUES ($1, $2, $3, $4)",
                        j.id(), OwnerOf(j.tenant()), static_cast<int>(j.state()),
                        ByteaParam(j.SerializeAsString()));
  }
  static absl::Status UpdateJobIn(pqxx::work& tx, const v1::Job& j) {
    const pqxx::result r =
        tx.exec_params("UPDATE jobs SET state = $1, proto = $2 WHERE id = $3",
                       static_cast<int>(j.state()), ByteaParam(j.SerializeAsString()), j.id());
    if (r.affected_rows() == 0) return absl::NotFoundError(absl::StrCat("job ", j.id()));
    return absl::OkStatus();
  }
  static absl::Status InsertRequestIn(pqxx::work& tx, const CreateRequest& r) {
    return InsertUnique(tx, "request_id already used",
                        "INSERT INTO create_requests (kind, tenant, request_id, fingerprint, "
                        "resource_id) VALUES ($1, $2, $3, $4, $5)",
                        r.kind, OwnerOf(r.tenant), r.request_id, r.fingerprint, r.resource_id);
  }

  // The messages in column `column` of `rows`.
  template <typename T>
  static absl::StatusOr<std::vector<T>> ParseRows(const pqxx::result& rows, int column,
                                                  const char* corrupt) {
    std::vector<T> out;
    out.reserve(rows.size());
    for (const auto& row : rows) {
      T t;
      if (!t.ParseFromString(ByteaValue(row[column]))) return absl::DataLossError(corrupt);
      out.push_back(std::move(t));
    }
    return out;
  }
  template <typename T>
  absl::StatusOr<T> Get(const char* sql, const std::string& id, const char* what) {
    if (!Storable(id)) return UnknownIdError(what, id);
    return Run(absl::StrCat("get ", what), [&](pqxx::work& tx) -> absl::StatusOr<T> {
      const pqxx::result rows = tx.exec_params(sql, id);
      if (rows.empty()) return UnknownIdError(what, id);
      T t;
      if (!t.ParseFromString(ByteaValue(rows[0][0]))) {
        return absl::DataLossError(absl::StrCat("corrupt ", what));
      }
      return t;
    });
  }
  // Pages go newest first; the token is the seq of the last row returned, set only when an older
  // row remains.
  template <typename T>
  absl::StatusOr<Page<T>> List(const char* table, const std::string& tenant, int page_size,
                               const std::string& token) {
    ASSIGN_OR_RETURN(const PageStart start, ParsePage(page_size, token));
    if (!Storable(tenant)) return Page<T>();  // no row has such an owner
    const int64_t limit = static_cast<int64_t>(start.size) + 1;
    return Run(absl::StrCat("list ", table), [&](pqxx::work& tx) -> absl::StatusOr<Page<T>> {
      const std::string select = absl::StrCat("SELECT seq, proto FROM ", table, " WHERE seq < $1");
      const pqxx::result rows =
          tenant.empty()
              ? tx.exec_params(absl::StrCat(select, " ORDER BY seq DESC LIMIT $2"),
                               start.before_seq, limit)
              : tx.exec_params(absl::StrCat(select, " AND tenant = $3 ORDER BY seq DESC LIMIT $2"),
                               start.before_seq, limit, tenant);
      Page<T> page;
      int64_t last = 0;
      for (const auto& row : rows) {
        if (static_cast<int>(page.items.size()) == start.size) {
          page.next_page_token = absl::StrCat(last);
          break;
        }
        last = row[0].as<int64_t>();
        T t;
        if (!t.ParseFromString(ByteaValue(row[1]))) return absl::DataLossError("corrupt row");
        page.items.push_back(std::move(t));
      }
      return page;
    });
  }

  const ConnectionSpec spec_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // idle and lent
  bool stop_listening_ ABSL_GUARDED_BY(mu_) = false;
  std::thread listener_;  // WatchChanges
  // Held while on_change_ runs: replacing it waits for a call in progress.
  absl::Mutex watch_mu_;
  std::function<void(const std::string&)> on_change_ ABSL_GUARDED_BY(watch_mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Catalog>> OpenPostgresCatalog(const std::string& uri) {
  ASSIGN_OR_RETURN(ConnectionSpec spec, ParseConnectionSpec(uri));
  auto catalog = std::make_unique<PostgresCatalog>(std::move(spec));
  RETURN_IF_ERROR(catalog->Migrate());
  return std::unique_ptr<Catalog>(std::move(catalog));
}

absl::StatusOr<std::string> DescribePostgresUri(const std::string& uri) {
  ASSIGN_OR_RETURN(ConnectionSpec spec, ParseConnectionSpec(uri));
  return spec.description;
}

}  // namespace logp
