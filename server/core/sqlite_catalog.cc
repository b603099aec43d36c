// SQLite implementation of Catalog: one connection in WAL mode, serialised by a mutex.
#include <sqlite3.h>

#include <algorithm>
#include <functional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "proto/cc/status_macros.h"
#include "server/core/catalog.h"
#include "server/core/lease_table.h"

namespace logp {
namespace {

constexpr int kDefaultPage = 50;
constexpr int kMaxPage = 1000;

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS datasets (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, proto BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, state INTEGER NOT NULL,
  proto BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS job_events (
  job_id TEXT NOT NULL, seq INTEGER NOT NULL, proto BLOB NOT NULL, PRIMARY KEY (job_id, seq));
CREATE TABLE IF NOT EXISTS models (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, proto BLOB NOT NULL);
)sql";

// Schema upgrades: kMigrations[v] takes a catalogue from version v (PRAGMA user_version; 0 is
// kSchema alone, as every catalogue before idempotent creates) to v + 1, in one transaction.
const char* const kMigrations[] = {
    // 1: the create requests named with a client-chosen request_id.
    R"sql(
CREATE TABLE create_requests (
  kind TEXT NOT NULL, request_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
  resource_id TEXT NOT NULL, PRIMARY KEY (kind, request_id));
CREATE INDEX create_requests_by_resource ON create_requests (resource_id);
)sql",
    // 2: tenants. Every row belongs to one; the rows already there to "default". Request ids
    // get one namespace per tenant.
    R"sql(
ALTER TABLE datasets ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE models ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
CREATE INDEX datasets_by_tenant ON datasets (tenant, seq);
CREATE INDEX jobs_by_tenant ON jobs (tenant, seq);
CREATE INDEX models_by_tenant ON models (tenant, seq);
CREATE TABLE create_requests_by_tenant (
  kind TEXT NOT NULL, tenant TEXT NOT NULL, request_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
  resource_id TEXT NOT NULL, PRIMARY KEY (kind, tenant, request_id));
INSERT INTO create_requests_by_tenant (kind, tenant, request_id, fingerprint, resource_id)
  SELECT kind, 'default', request_id, fingerprint, resource_id FROM create_requests;
DROP TABLE create_requests;
ALTER TABLE create_requests_by_tenant RENAME TO create_requests;
CREATE INDEX create_requests_by_resource ON create_requests (resource_id);
)sql",
};
constexpr int64_t kSchemaVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);

// A prepared statement, finalised on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Stmt() { sqlite3_finalize(stmt_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return stmt_; }
  void Bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void BindBlob(int i, const std::string& s) {
    sqlite3_bind_blob(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  int Step() { return sqlite3_step(stmt_); }
  std::string Blob(int col) {
    const void* p = sqlite3_column_blob(stmt_, col);
    return std::string(static_cast<const char*>(p), sqlite3_column_bytes(stmt_, col));
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

class SqliteCatalog : public Catalog {
 public:
  explicit SqliteCatalog(sqlite3* db) : db_(db) {}
  ~SqliteCatalog() override { sqlite3_close(db_); }

  absl::Status Init() {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL;"));
    RETURN_IF_ERROR(Exec("PRAGMA synchronous=FULL;"));
    RETURN_IF_ERROR(Exec("PRAGMA busy_timeout=5000;"));
    RETURN_IF_ERROR(Exec(kSchema));
    int64_t from = 0;
    {
      Stmt version(db_, "PRAGMA user_version;");
      if (!version.ok() || version.Step() != SQLITE_ROW) return Err("read the schema version");
      from = version.Int(0);
    }
    if (from > kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the catalogue has schema version ", from, ", newer than this logpd's ", kSchemaVersion));
    }
    for (int64_t v = from; v < kSchemaVersion; ++v) {
      RETURN_IF_ERROR(TransactionLocked([&] {
        RETURN_IF_ERROR(Exec(kMigrations[v]));
        return Exec(absl::StrCat("PRAGMA user_version = ", v + 1, ";").c_str());
      }));
    }
    return absl::OkStatus();
  }

  absl::Status InsertDataset(const v1::Dataset& d) override {
    return Insert("INSERT INTO datasets (id, tenant, proto) VALUES (?, ?, ?)", d.id(),
                  OwnerOf(d.tenant()), d.SerializeAsString());
  }
  absl::StatusOr<v1::Dataset> GetDataset(const std::string& id) override {
    return Get<v1::Dataset>("SELECT proto FROM datasets WHERE id = ?", id, "dataset");
  }
  absl::StatusOr<Page<v1::Dataset>> ListDatasets(const std::string& tenant, int n,
                                                 const std::string& token) override {
    return List<v1::Dataset>("datasets", tenant, n, token);
  }
  absl::Status DeleteDataset(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    return TransactionLocked([&]() -> absl::Status {
      Stmt s(db_, "DELETE FROM datasets WHERE id = ?");
      if (!s.ok()) return Err("prepare delete");
      s.Bind(1, id);
      if (s.Step() != SQLITE_DONE) return Err("delete dataset");
      if (sqlite3_changes(db_) == 0) return absl::NotFoundError(absl::StrCat("dataset ", id));
      Stmt r(db_, "DELETE FROM create_requests WHERE kind = 'dataset' AND resource_id = ?");
      if (!r.ok()) return Err("prepare delete request");
      r.Bind(1, id);
      if (r.Step() != SQLITE_DONE) return Err("delete request");
      return absl::OkStatus();
    });
  }

  absl::Status InsertJobWithEvents(const v1::Job& j, const std::vector<v1::JobEvent>& events,
                                   const CreateRequest* r) override {
    absl::MutexLock lock(&mu_);
    return TransactionLocked([&] {
      RETURN_IF_ERROR(InsertJobLocked(j));
      if (r != nullptr) RETURN_IF_ERROR(InsertRequestLocked(*r));
      return InsertEventsLocked(j.id(), events);
    });
  }
  absl::Status UpdateJob(const v1::Job& j) override {
    absl::MutexLock lock(&mu_);
    return UpdateJobLocked(j);
  }
  absl::StatusOr<v1::Job> GetJob(const std::string& id) override {
    return Get<v1::Job>("SELECT proto FROM jobs WHERE id = ?", id, "job");
  }
  absl::StatusOr<Page<v1::Job>> ListJobs(const std::string& tenant, int n,
                                         const std::string& token) override {
    return List<v1::Job>("jobs", tenant, n, token);
  }
  absl::StatusOr<std::vector<v1::Job>> JobsInStates(
      const std::vector<v1::JobState>& states) override {
    absl::MutexLock lock(&mu_);
    std::vector<v1::Job> out;
    Stmt s(db_, "SELECT proto, state FROM jobs ORDER BY seq ASC");
    if (!s.ok()) return Err("prepare jobs in states");
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      const auto st = static_cast<v1::JobState>(s.Int(1));
      if (std::find(states.begin(), states.end(), st) == states.end()) continue;
      v1::Job j;
      if (!j.ParseFromString(s.Blob(0))) return absl::DataLossError("corrupt job row");
      out.push_back(std::move(j));
    }
    if (rc != SQLITE_DONE) return Err("jobs in states");
    return out;
  }

  absl::Status WriteJob(const JobWrite& w) override {
    absl::MutexLock lock(&mu_);
    if (w.lease_token != 0) RETURN_IF_ERROR(leases_.Check(w.job.id(), w.lease_token));
    RETURN_IF_ERROR(TransactionLocked([&]() -> absl::Status {
      // The row first: when it is missing nothing is written.
      RETURN_IF_ERROR(UpdateJobLocked(w.job));
      if (w.model) {
        RETURN_IF_ERROR(InsertLocked("INSERT INTO models (id, tenant, proto) VALUES (?, ?, ?)",
                                     w.model->id(), OwnerOf(w.model->tenant()),
                                     w.model->SerializeAsString()));
      }
      return InsertEventsLocked(w.job.id(), w.events);
    }));
    if (w.release_lease) leases_.Release(w.job.id(), w.lease_token);
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<v1::JobEvent>> ListEvents(const std::string& job_id,
                                                       int64_t from_seq) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_, "SELECT proto FROM job_events WHERE job_id = ? AND seq >= ? ORDER BY seq ASC");
    if (!s.ok()) return Err("prepare list events");
    s.Bind(1, job_id);
    s.Bind(2, from_seq);
    std::vector<v1::JobEvent> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      v1::JobEvent e;
      if (!e.ParseFromString(s.Blob(0))) return absl::DataLossError("corrupt event row");
      out.push_back(std::move(e));
    }
    if (rc != SQLITE_DONE) return Err("list events");
    return out;
  }

  absl::StatusOr<CreateRequest> GetCreateRequest(const std::string& kind, const std::string& tenant,
                                                 const std::string& request_id) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "SELECT fingerprint, resource_id FROM create_requests WHERE kind = ? AND tenant = ? "
           "AND request_id = ?");
    if (!s.ok()) return Err("prepare get request");
    s.Bind(1, kind);
    s.Bind(2, OwnerOf(tenant));
    s.Bind(3, request_id);
    const int rc = s.Step();
    if (rc == SQLITE_DONE) return absl::NotFoundError(absl::StrCat("no ", kind, " request"));
    if (rc != SQLITE_ROW) return Err("get request");
    return CreateRequest{kind, request_id, s.Blob(0), s.Blob(1), OwnerOf(tenant)};
  }
  absl::Status InsertDatasetForRequest(const v1::Dataset& d, const CreateRequest& r) override {
    absl::MutexLock lock(&mu_);
    return TransactionLocked([&] {
      RETURN_IF_ERROR(InsertLocked("INSERT INTO datasets (id, tenant, proto) VALUES (?, ?, ?)",
                                   d.id(), OwnerOf(d.tenant()), d.SerializeAsString()));
      return InsertRequestLocked(r);
    });
  }
  absl::Status InsertModel(const v1::Model& m) override {
    return Insert("INSERT INTO models (id, tenant, proto) VALUES (?, ?, ?)", m.id(),
                  OwnerOf(m.tenant()), m.SerializeAsString());
  }
  absl::StatusOr<v1::Model> GetModel(const std::string& id) override {
    return Get<v1::Model>("SELECT proto FROM models WHERE id = ?", id, "model");
  }
  absl::StatusOr<Page<v1::Model>> ListModels(const std::string& tenant, int n,
                                             const std::string& token) override {
    return List<v1::Model>("models", tenant, n, token);
  }
  absl::StatusOr<TenantStorage> StoredBy(const std::string& tenant) override {
    TenantStorage out;
    ASSIGN_OR_RETURN(std::vector<v1::Dataset> datasets, OwnedBy<v1::Dataset>("datasets", tenant));
    for (const auto& d : datasets) {
      ++out.datasets;
      out.dataset_bytes += static_cast<int64_t>(d.stored_bytes());
    }
    ASSIGN_OR_RETURN(std::vector<v1::Model> models, OwnedBy<v1::Model>("models", tenant));
    for (const auto& m : models) {
      ++out.models;
      out.model_bytes += static_cast<int64_t>(m.stored_bytes());
    }
    return out;
  }

  // Leases: in this process (a SQLite catalogue serves one), under mu_ like the rows.
  absl::StatusOr<JobQueue> ReadQueue() override {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    JobQueue q;
    std::vector<v1::Job> queued;
    Stmt s(db_, "SELECT proto FROM jobs WHERE state IN (?, ?) ORDER BY seq ASC");
    if (!s.ok()) return Err("prepare read queue");
    s.Bind(1, static_cast<int64_t>(v1::JOB_STATE_QUEUED));
    s.Bind(2, static_cast<int64_t>(v1::JOB_STATE_RUNNING));
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      v1::Job j;
      if (!j.ParseFromString(s.Blob(0))) return absl::DataLossError("corrupt job row");
      const std::string tenant = OwnerOf(j.tenant());
      if (j.state() == v1::JOB_STATE_QUEUED) ++q.queued_by_tenant[tenant];
      if (leases_.Held(j.id(), now)) {
        ++q.leased_by_tenant[tenant];
      } else if (j.state() == v1::JOB_STATE_RUNNING) {
        q.claimable.push_back(std::move(j));
      } else {
        queued.push_back(std::move(j));
      }
    }
    if (rc != SQLITE_DONE) return Err("read queue");
    q.claimable.insert(q.claimable.end(), queued.begin(), queued.end());
    return q;
  }
  absl::StatusOr<std::optional<JobClaim>> ClaimJob(const std::string& job_id,
                                                   const std::string& owner,
                                                   absl::Duration duration) override {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    Stmt s(db_, "SELECT proto FROM jobs WHERE id = ?");
    if (!s.ok()) return Err("prepare claim");
    s.Bind(1, job_id);
    const int rc = s.Step();
    if (rc == SQLITE_DONE) return std::nullopt;
    if (rc != SQLITE_ROW) return Err("claim");
    v1::Job j;
    if (!j.ParseFromString(s.Blob(0))) return absl::DataLossError("corrupt job row");
    if (j.state() != v1::JOB_STATE_QUEUED && j.state() != v1::JOB_STATE_RUNNING) {
      return std::nullopt;
    }
    if (leases_.Held(job_id, now)) return std::nullopt;
    JobClaim claim = leases_.Claim(job_id, owner, now, duration);
    claim.job = std::move(j);
    return claim;
  }
  absl::StatusOr<bool> RenewLease(const JobLease& lease, absl::Duration duration) override {
    absl::MutexLock lock(&mu_);
    return leases_.Renew(lease, absl::Now(), duration);
  }
  absl::Status ReleaseLeasesOf(const std::string& owner) override {
    absl::MutexLock lock(&mu_);
    leases_.ReleaseOf(owner);
    return absl::OkStatus();
  }
  absl::Status RequestCancel(const std::string& job_id) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_, "SELECT 1 FROM jobs WHERE id = ?");
    if (!s.ok()) return Err("prepare request cancel");
    s.Bind(1, job_id);
    const int rc = s.Step();
    if (rc == SQLITE_DONE) return UnknownIdError("job", job_id);
    if (rc != SQLITE_ROW) return Err("request cancel");
    leases_.RequestCancel(job_id);
    return absl::OkStatus();
  }

 private:
  absl::Status InsertEventsLocked(const std::string& job_id,
                                  const std::vector<v1::JobEvent>& events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (events.empty()) return absl::OkStatus();
    Stmt s(db_, "INSERT OR REPLACE INTO job_events (job_id, seq, proto) VALUES (?, ?, ?)");
    if (!s.ok()) return Err("prepare insert event");
    for (const auto& e : events) {
      sqlite3_reset(s.get());
      s.Bind(1, job_id);
      s.Bind(2, e.seq());
      s.BindBlob(3, e.SerializeAsString());
      if (s.Step() != SQLITE_DONE) return Err("insert event");
    }
    return absl::OkStatus();
  }
  // The status of the last failure on db_: a full disk is RESOURCE_EXHAUSTED, an I/O error
  // UNAVAILABLE (the write may succeed later), anything else INTERNAL.
  absl::Status Err(const std::string& what) {
    const std::string msg = absl::StrCat("catalogue: ", what, ": ", sqlite3_errmsg(db_));
    switch (sqlite3_errcode(db_)) {
      case SQLITE_FULL:
        return absl::ResourceExhaustedError(absl::StrCat(msg, " (no space left on device)"));
      case SQLITE_IOERR:
        return absl::UnavailableError(msg);
      default:
        return absl::InternalError(msg);
    }
  }
  // COMMIT, or ROLLBACK when it fails: a failed commit may leave the transaction open, and the
  // next BEGIN would then fail too.
  absl::Status Commit() {
    absl::Status st = Exec("COMMIT;");
    if (!st.ok() && !sqlite3_get_autocommit(db_)) Exec("ROLLBACK;").IgnoreError();
    return st;
  }
  absl::Status Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      sqlite3_free(err);
      return Err(sql);
    }
    return absl::OkStatus();
  }
  absl::Status UpdateJobLocked(const v1::Job& j) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Stmt s(db_, "UPDATE jobs SET state = ?, proto = ? WHERE id = ?");
    if (!s.ok()) return Err("prepare update job");
    s.Bind(1, static_cast<int64_t>(j.state()));
    s.BindBlob(2, j.SerializeAsString());
    s.Bind(3, j.id());
    if (s.Step() != SQLITE_DONE) return Err("update job");
    if (sqlite3_changes(db_) == 0) return absl::NotFoundError(absl::StrCat("job ", j.id()));
    return absl::OkStatus();
  }
  // Runs `body` in a transaction: committed if it returns OK, rolled back otherwise.
  absl::Status TransactionLocked(const std::function<absl::Status()>& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE;"));
    absl::Status st = body();
    if (!st.ok()) {
      Exec("ROLLBACK;").IgnoreError();
      return st;
    }
    return Commit();
  }
  absl::Status InsertJobLocked(const v1::Job& j) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Stmt s(db_, "INSERT INTO jobs (id, tenant, state, proto) VALUES (?, ?, ?, ?)");
    if (!s.ok()) return Err("prepare insert job");
    s.Bind(1, j.id());
    s.Bind(2, OwnerOf(j.tenant()));
    s.Bind(3, static_cast<int64_t>(j.state()));
    s.BindBlob(4, j.SerializeAsString());
    const int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT) return absl::AlreadyExistsError(absl::StrCat("job ", j.id()));
    if (rc != SQLITE_DONE) return Err("insert job");
    return absl::OkStatus();
  }
  absl::Status InsertRequestLocked(const CreateRequest& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Stmt s(db_,
           "INSERT INTO create_requests (kind, tenant, request_id, fingerprint, resource_id) "
           "VALUES (?, ?, ?, ?, ?)");
    if (!s.ok()) return Err("prepare insert request");
    s.Bind(1, r.kind);
    s.Bind(2, OwnerOf(r.tenant));
    s.Bind(3, r.request_id);
    s.Bind(4, r.fingerprint);
    s.Bind(5, r.resource_id);
    const int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT) return absl::AlreadyExistsError("request_id already used");
    if (rc != SQLITE_DONE) return Err("insert request");
    return absl::OkStatus();
  }
  // `sql` inserts (id, tenant, proto).
  absl::Status Insert(const char* sql, const std::string& id, const std::string& tenant,
                      const std::string& blob) {
    absl::MutexLock lock(&mu_);
    return InsertLocked(sql, id, tenant, blob);
  }
  absl::Status InsertLocked(const char* sql, const std::string& id, const std::string& tenant,
                            const std::string& blob) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Stmt s(db_, sql);
    if (!s.ok()) return Err("prepare insert");
    s.Bind(1, id);
    s.Bind(2, tenant);
    s.BindBlob(3, blob);
    const int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT) return absl::AlreadyExistsError(absl::StrCat("id ", id));
    if (rc != SQLITE_DONE) return Err("insert");
    return absl::OkStatus();
  }
  template <typename T>
  absl::StatusOr<T> Get(const char* sql, const std::string& id, const char* what) {
    absl::MutexLock lock(&mu_);
    Stmt s(db_, sql);
    if (!s.ok()) return Err("prepare get");
    s.Bind(1, id);
    const int rc = s.Step();
    if (rc == SQLITE_DONE) return UnknownIdError(what, id);
    if (rc != SQLITE_ROW) return Err("get");
    T t;
    if (!t.ParseFromString(s.Blob(0))) return absl::DataLossError(absl::StrCat("corrupt ", what));
    return t;
  }
  // Every row of `table` that `tenant` owns.
  template <typename T>
  absl::StatusOr<std::vector<T>> OwnedBy(const std::string& table, const std::string& tenant) {
    absl::MutexLock lock(&mu_);
    const std::string sql = absl::StrCat("SELECT proto FROM ", table, " WHERE tenant = ?");
    Stmt s(db_, sql.c_str());
    if (!s.ok()) return Err("prepare owned rows");
    s.Bind(1, OwnerOf(tenant));
    std::vector<T> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      T t;
      if (!t.ParseFromString(s.Blob(0))) return absl::DataLossError("corrupt row");
      out.push_back(std::move(t));
    }
    if (rc != SQLITE_DONE) return Err("owned rows");
    return out;
  }
  // Pages go newest first; the token is the internal sequence number of the last row returned.
  template <typename T>
  absl::StatusOr<Page<T>> List(const std::string& table, const std::string& tenant, int page_size,
                               const std::string& token) {
    if (page_size < 0 || page_size > kMaxPage) {
      return absl::InvalidArgumentError(
          absl::StrCat("page_size must be in [0, ", kMaxPage, "], got ", page_size));
    }
    if (page_size == 0) page_size = kDefaultPage;
    int64_t before = INT64_MAX;
    if (!token.empty() && (!absl::SimpleAtoi(token, &before) || before < 0)) {
      return absl::InvalidArgumentError(absl::StrCat("page_token '", token, "' is not valid"));
    }
    absl::MutexLock lock(&mu_);
    const std::string sql =
        absl::StrCat("SELECT seq, proto FROM ", table, " WHERE seq < ?",
                     tenant.empty() ? "" : " AND tenant = ?", " ORDER BY seq DESC LIMIT ?");
    Stmt s(db_, sql.c_str());
    if (!s.ok()) return Err("prepare list");
    int column = 1;
    s.Bind(column++, before);
    if (!tenant.empty()) s.Bind(column++, tenant);
    s.Bind(column, static_cast<int64_t>(page_size) + 1);
    Page<T> page;
    int64_t last = 0;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      if (static_cast<int>(page.items.size()) == page_size) {
        page.next_page_token = absl::StrCat(last);
        break;
      }
      last = s.Int(0);
      T t;
      if (!t.ParseFromString(s.Blob(1))) return absl::DataLossError("corrupt row");
      page.items.push_back(std::move(t));
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Err("list");
    return page;
  }

  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
  LeaseTable leases_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Catalog>> OpenSqliteCatalog(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::InternalError(absl::StrCat("cannot open catalogue ", path, ": ", msg));
  }
  auto catalog = std::make_unique<SqliteCatalog>(db);
  absl::Status st = catalog->Init();
  if (!st.ok()) return st;
  return std::unique_ptr<Catalog>(std::move(catalog));
}

}  // namespace logp
