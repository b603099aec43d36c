// What only the PostgreSQL catalogue has (the contract it shares with SQLite is in
// catalog_test.cc): migrations at open, several catalogues on one database, many threads over
// its connection pool, lost connections, bad URIs. Each test gets a fresh database on this
// binary's private server (tests/postgres_server.h) and looks at it through its own connection.
#include "server/core/postgres_catalog.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/core/catalog.h"
#include "server/core/open_catalog.h"
#include "tests/postgres_server.h"
#include "tests/server/test_util.h"

namespace logp {
namespace {

v1::Dataset MakeDataset(const std::string& id) {
  v1::Dataset d;
  d.set_id(id);
  d.set_name("d");
  d.set_kind(v1::DATA_KIND_CONTINUOUS);
  d.set_dim(3);
  d.set_num_records(1000);
  d.set_stored_bytes(12000);
  return d;
}

v1::Job MakeJob(const std::string& id, v1::JobState state = v1::JOB_STATE_QUEUED) {
  v1::Job j;
  j.set_id(id);
  j.set_state(state);
  j.mutable_spec()->set_dataset_id("ds-1");
  return j;
}

v1::JobEvent Progress(int64_t seq) {
  v1::JobEvent e;
  e.set_seq(seq);
  e.mutable_progress()->set_step(seq * 10);
  return e;
}

class PostgresCatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = SharedPostgresServer();
    ASSERT_NE(server_, nullptr);
    database_ = server_->NewDatabase();
    uri_ = server_->Uri(database_);
  }

  std::unique_ptr<Catalog> Open() {
    auto c = OpenPostgresCatalog(uri_);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }
  // The rows `sql` gives on a connection of the test's own to its database.
  pqxx::result Query(const std::string& sql) { return QueryIn(database_, sql); }
  pqxx::result QueryIn(const std::string& db, const std::string& sql) {
    pqxx::connection conn(server_->Uri(db));
    pqxx::nontransaction tx(conn);
    return tx.exec(sql);
  }
  int64_t Count(const std::string& sql) { return Query(sql)[0][0].as<int64_t>(); }
  // The catalogue's sessions (logpd's application_name) on the test's database that meet
  // `condition`, seen from the server's "postgres" database.
  std::string Sessions(const std::string& condition) {
    return absl::StrCat("SELECT pid FROM pg_stat_activity WHERE datname = '", database_,
                        "' AND application_name = 'logpd' AND ", condition);
  }
  std::vector<std::string> SessionPids(const std::string& condition = "true") {
    std::vector<std::string> pids;
    for (const auto& row : QueryIn("postgres", Sessions(condition))) {
      pids.push_back(row[0].as<std::string>());
    }
    return pids;
  }
  // Waits until `n` sessions meet `condition` (a test failure after a minute).
  void AwaitSessions(const std::string& condition, size_t n) {
    const absl::Time deadline = absl::Now() + absl::Minutes(1);
    while (SessionPids(condition).size() != n) {
      ASSERT_LT(absl::Now(), deadline) << "waited a minute for " << n << " sessions " << condition;
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
  // Ends the sessions that meet `condition`, waiting until they are gone.
  void TerminateSessions(const std::string& condition = "true") {
    QueryIn("postgres", absl::StrCat("SELECT pg_terminate_backend(pid, 60000) FROM (",
                                     Sessions(condition), ") s"));
  }

  PostgresServer* server_ = nullptr;
  std::string database_;
  std::string uri_;
};

TEST_F(PostgresCatalogTest, MigratesAnEmptyDatabaseAndReopensItAsItIs) {
  std::unique_ptr<Catalog> catalog = Open();
  ASSERT_NE(catalog, nullptr);
  // Every migration is recorded once, 1..N, and the tables are there.
  const int64_t version = Count("SELECT max(version) FROM schema_migrations");
  EXPECT_GE(version, 1);
  EXPECT_EQ(Count("SELECT count(DISTINCT version) FROM schema_migrations"), version);
  EXPECT_EQ(Count("SELECT min(version) FROM schema_migrations"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
                  "AND table_name IN ('datasets', 'jobs', 'job_events', 'models', "
                  "'create_requests')"),
            5);
  const std::string applied =
      Query(
          "SELECT string_agg(version || ' ' || applied_at, ',' ORDER BY version) FROM "
          "schema_migrations")[0][0]
          .as<std::string>();

  ASSERT_TRUE(catalog->InsertDataset(MakeDataset("ds-1")).ok());
  ASSERT_TRUE(catalog->InsertJobForRequest(MakeJob("job-1"), {"job", "r1", "f", "job-1"}).ok());
  v1::Job running = MakeJob("job-1", v1::JOB_STATE_RUNNING);
  running.set_last_seq(2);
  ASSERT_TRUE(catalog->AppendEvents(running, {Progress(1), Progress(2)}).ok());
  catalog.reset();

  // Reopened: nothing migrated again, everything still there, creation order continued.
  catalog = Open();
  ASSERT_NE(catalog, nullptr);
  EXPECT_EQ(Query("SELECT string_agg(version || ' ' || applied_at, ',' ORDER BY version) FROM "
                  "schema_migrations")[0][0]
                .as<std::string>(),
            applied);
  EXPECT_TRUE(SameProto(ValueOf(catalog->GetDataset("ds-1")), MakeDataset("ds-1")));
  EXPECT_TRUE(SameProto(ValueOf(catalog->GetJob("job-1")), running));
  EXPECT_EQ(ValueOf(catalog->ListEvents("job-1", 0)).size(), 2u);
  EXPECT_EQ(ValueOf(catalog->GetCreateRequest("job", kDefaultTenant, "r1")).resource_id, "job-1");
  ASSERT_TRUE(catalog->InsertDataset(MakeDataset("ds-2")).ok());
  auto page = catalog->ListDatasets("", 10, "");
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->items.size(), 2u);
  EXPECT_EQ(page->items[0].id(), "ds-2");
  EXPECT_EQ(page->items[1].id(), "ds-1");
}

TEST_F(PostgresCatalogTest, RefusesASchemaNewerThanItKnows) {
  ASSERT_NE(Open(), nullptr);
  Query("INSERT INTO schema_migrations (version) VALUES (999)");
  auto reopened = OpenPostgresCatalog(uri_);
  EXPECT_TRUE(Is(reopened.status(), absl::StatusCode::kFailedPrecondition,
                 "the catalogue has schema version 999, newer than this logpd's"));
}

// Four logpd processes starting at once on an empty database: each open waits for the migration
// lock (held here by the test at first), one migrates, the others find the schema done; all of
// them then serve, and see each other's writes.
TEST_F(PostgresCatalogTest, CataloguesOpenedAtOnceMigrateOnceAndShareTheRows) {
  constexpr int kOpeners = 4;
  pqxx::connection holder(uri_);
  pqxx::work lock(holder);
  lock.exec(absl::StrCat("SELECT pg_advisory_xact_lock(", kPostgresMigrationLock, ")"));

  std::vector<std::unique_ptr<Catalog>> catalogs(kOpeners);
  std::atomic<int> opened{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kOpeners; ++i) {
    threads.emplace_back([&, i] {
      auto c = OpenPostgresCatalog(uri_);
      EXPECT_TRUE(c.ok()) << c.status();
      if (c.ok()) catalogs[i] = std::move(*c);
      ++opened;
    });
  }
  // Every opener waits on the lock; none has finished.
  AwaitSessions("wait_event = 'advisory'", kOpeners);
  EXPECT_EQ(opened.load(), 0);
  lock.commit();
  for (auto& t : threads) t.join();
  ASSERT_EQ(opened.load(), kOpeners);
  for (const auto& c : catalogs) ASSERT_NE(c, nullptr);
  const int64_t version = Count("SELECT max(version) FROM schema_migrations");
  EXPECT_EQ(Count("SELECT count(*) FROM schema_migrations"), version);

  ASSERT_TRUE(catalogs[0]->InsertJob(MakeJob("job-1")).ok());
  EXPECT_TRUE(
      Is(catalogs[1]->InsertJob(MakeJob("job-1")), absl::StatusCode::kAlreadyExists, "job-1"));
  v1::Job running = MakeJob("job-1", v1::JOB_STATE_RUNNING);
  running.set_last_seq(1);
  ASSERT_TRUE(catalogs[2]->AppendEvents(running, {Progress(1)}).ok());
  EXPECT_TRUE(SameProto(ValueOf(catalogs[3]->GetJob("job-1")), running));
  EXPECT_EQ(ValueOf(catalogs[0]->ListEvents("job-1", 0)).size(), 1u);
  ASSERT_TRUE(catalogs[3]->InsertDataset(MakeDataset("ds-1")).ok());
  EXPECT_EQ(ValueOf(catalogs[1]->StoredBy(kDefaultTenant)).dataset_bytes, 12000);
}

// Two catalogues on one database are two replicas: a lease one takes holds against the other, a
// lease that expires on one is claimed by the other, which fences the first out, and each hears
// of the other's writes (LISTEN/NOTIFY) without asking.
TEST_F(PostgresCatalogTest, ReplicasShareLeasesAndHearOfEachOthersWrites) {
  std::unique_ptr<Catalog> a = Open(), b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(a->SharedByProcesses());
  absl::Mutex mu;
  std::vector<std::string> heard;  // by b
  ASSERT_TRUE(b->WatchChanges([&](const std::string& id) {
    absl::MutexLock lock(&mu);
    heard.push_back(id);
  }));
  auto heard_of = [&](const std::string& id) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      {
        absl::MutexLock lock(&mu);
        if (std::find(heard.begin(), heard.end(), id) != heard.end()) return true;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  };
  absl::SleepFor(absl::Milliseconds(300));  // b's LISTEN is in place
  ASSERT_TRUE(a->InsertJobWithEvents(MakeJob("job-1"), {Progress(1)}, nullptr).ok());
  EXPECT_TRUE(heard_of("job-1"));

  JobClaim by_a = *ValueOf(a->ClaimJob("job-1", "replica-a", absl::Milliseconds(500)));
  EXPECT_FALSE(ValueOf(b->ClaimJob("job-1", "replica-b", absl::Seconds(30))).has_value());
  EXPECT_EQ(Count("SELECT count(*) FROM job_leases WHERE owner = 'replica-a' AND token = 1"), 1);
  v1::Job running = MakeJob("job-1", v1::JOB_STATE_RUNNING);
  running.set_last_seq(2);
  ASSERT_TRUE(a->WriteJob(JobWrite{running, {Progress(2)}, by_a.lease.token}).ok());
  absl::SleepFor(absl::Seconds(1));  // a is silent past its lease
  JobClaim by_b = *ValueOf(b->ClaimJob("job-1", "replica-b", absl::Seconds(30)));
  EXPECT_EQ(by_b.lease.token, 2);
  EXPECT_EQ(by_b.previous_owner, "replica-a");
  running.set_last_seq(3);
  EXPECT_TRUE(IsLeaseLost(a->WriteJob(JobWrite{running, {Progress(3)}, by_a.lease.token})));
  EXPECT_TRUE(IsLeaseLost(a->RenewLease(by_a.lease, absl::Seconds(30)).status()));
  EXPECT_EQ(Count("SELECT count(*) FROM job_events WHERE job_id = 'job-1'"), 2);
  // A cancel asked through a reaches b's renewal.
  ASSERT_TRUE(a->RequestCancel("job-1").ok());
  EXPECT_TRUE(ValueOf(b->RenewLease(by_b.lease, absl::Seconds(30))));
  // No claim leaves a transaction open behind it (the queue table does not bloat).
  EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE datname = '", database_,
                               "' AND state LIKE 'idle in transaction%'")),
            0);
  ASSERT_TRUE(b->WatchChanges(nullptr));
}

// More threads than pooled connections: each inserts its own rows, all race for one id, one
// request id and one job's events. Nothing is lost or doubled, each race has one winner, and the
// pool never opens more than its 8 connections.
TEST_F(PostgresCatalogTest, ManyThreadsInsertConcurrently) {
  std::unique_ptr<Catalog> catalog = Open();
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->InsertJob(MakeJob("shared-job")).ok());
  constexpr int kThreads = 16, kEach = 10;
  std::atomic<int> dataset_winners{0}, request_winners{0};
  std::vector<std::string> request_winner(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        EXPECT_TRUE(catalog->InsertDataset(MakeDataset(absl::StrCat("ds-", t, "-", i))).ok());
      }
      const absl::Status shared = catalog->InsertDataset(MakeDataset("ds-shared"));
      if (shared.ok()) {
        ++dataset_winners;
      } else {
        EXPECT_TRUE(Is(shared, absl::StatusCode::kAlreadyExists, "ds-shared"));
      }
      const std::string job = absl::StrCat("job-", t);
      const absl::Status request =
          catalog->InsertJobForRequest(MakeJob(job), {"job", "same-request", "f", job});
      if (request.ok()) {
        ++request_winners;
        request_winner[t] = job;
      } else {
        EXPECT_TRUE(Is(request, absl::StatusCode::kAlreadyExists, "request_id already used"));
      }
      v1::Job shared_job = MakeJob("shared-job", v1::JOB_STATE_RUNNING);
      EXPECT_TRUE(catalog->AppendEvents(shared_job, {Progress(t + 1)}).ok());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(dataset_winners.load(), 1);
  ASSERT_EQ(request_winners.load(), 1);
  std::string winner;
  for (const auto& w : request_winner) winner += w;
  EXPECT_EQ(ValueOf(catalog->GetCreateRequest("job", kDefaultTenant, "same-request")).resource_id,
            winner);
  // The losers' jobs were not inserted.
  auto jobs = catalog->ListJobs("", 100, "");
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->items.size(), 2u);
  EXPECT_EQ(jobs->items[0].id(), winner);
  // Every dataset once, newest first across pages of 7.
  std::vector<std::string> seen;
  std::string token;
  do {
    auto page = catalog->ListDatasets("", 7, token);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const auto& d : page->items) seen.push_back(d.id());
    token = page->next_page_token;
  } while (!token.empty());
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kEach + 1));
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end());
  std::vector<int64_t> seqs;
  for (const auto& e : ValueOf(catalog->ListEvents("shared-job", 0))) seqs.push_back(e.seq());
  std::vector<int64_t> all;
  for (int s = 1; s <= kThreads; ++s) all.push_back(s);
  EXPECT_EQ(seqs, all);
  EXPECT_LE(SessionPids().size(), 8u);
}

// The server ends the session a call is waiting in (here: for a lock the test holds): the call is
// UNAVAILABLE, and the next one runs on a new connection.
TEST_F(PostgresCatalogTest, AConnectionLostInACallIsUnavailableAndTheNextCallReconnects) {
  std::unique_ptr<Catalog> catalog = Open();
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->InsertDataset(MakeDataset("ds-1")).ok());
  pqxx::connection holder(uri_);
  pqxx::work lock(holder);
  lock.exec("LOCK TABLE datasets IN ACCESS EXCLUSIVE MODE");
  absl::Status blocked;
  absl::Notification done;
  std::thread call([&] {
    blocked = catalog->GetDataset("ds-1").status();
    done.Notify();
  });
  AwaitSessions("wait_event_type = 'Lock'", 1);
  EXPECT_FALSE(done.HasBeenNotified());
  TerminateSessions("wait_event_type = 'Lock'");
  call.join();
  lock.abort();
  EXPECT_TRUE(Is(blocked, absl::StatusCode::kUnavailable, "connection to PostgreSQL was lost"))
      << blocked;
  EXPECT_TRUE(SameProto(ValueOf(catalog->GetDataset("ds-1")), MakeDataset("ds-1")));
  ASSERT_TRUE(catalog->InsertDataset(MakeDataset("ds-2")).ok());
  EXPECT_EQ(ValueOf(catalog->ListDatasets("", 10, "")).items.size(), 2u);
}

// Sessions ended between calls (a server restart, an idle timeout) are found at the next call's
// BEGIN, before it did anything: that call reconnects and succeeds.
TEST_F(PostgresCatalogTest, ConnectionsLostBetweenCallsAreReplaced) {
  std::unique_ptr<Catalog> catalog = Open();
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->InsertDataset(MakeDataset("ds-1")).ok());
  const std::vector<std::string> before = SessionPids();
  ASSERT_EQ(before.size(), 1u);
  TerminateSessions();
  ASSERT_TRUE(SessionPids().empty());
  EXPECT_TRUE(SameProto(ValueOf(catalog->GetDataset("ds-1")), MakeDataset("ds-1")));
  const std::vector<std::string> after = SessionPids();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_NE(after[0], before[0]);
  ASSERT_TRUE(catalog->InsertDataset(MakeDataset("ds-2")).ok());
}

// While the database refuses connections, calls are UNAVAILABLE; the first call after it accepts
// them again works.
TEST_F(PostgresCatalogTest, AnUnreachableDatabaseIsUnavailableUntilItIsBack) {
  std::unique_ptr<Catalog> catalog = Open();
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->InsertJob(MakeJob("job-1")).ok());
  QueryIn("postgres", absl::StrCat("ALTER DATABASE ", database_, " ALLOW_CONNECTIONS false"));
  TerminateSessions();
  EXPECT_TRUE(Is(catalog->GetJob("job-1").status(), absl::StatusCode::kUnavailable,
                 "cannot connect to PostgreSQL"));
  EXPECT_TRUE(Is(catalog->UpdateJob(MakeJob("job-1", v1::JOB_STATE_RUNNING)),
                 absl::StatusCode::kUnavailable));
  QueryIn("postgres", absl::StrCat("ALTER DATABASE ", database_, " ALLOW_CONNECTIONS true"));
  EXPECT_EQ(ValueOf(catalog->GetJob("job-1")).state(), v1::JOB_STATE_QUEUED);
  ASSERT_TRUE(catalog->UpdateJob(MakeJob("job-1", v1::JOB_STATE_RUNNING)).ok());
  EXPECT_EQ(ValueOf(catalog->GetJob("job-1")).state(), v1::JOB_STATE_RUNNING);
}

TEST_F(PostgresCatalogTest, BadUrisAreClearErrorsWithoutThePassword) {
  EXPECT_TRUE(Is(OpenPostgresCatalog("postgresql://[::1").status(),
                 absl::StatusCode::kInvalidArgument, "PostgreSQL URI: "));
  EXPECT_TRUE(Is(OpenPostgresCatalog("postgresql://postgres@/db?no_such_parameter=1").status(),
                 absl::StatusCode::kInvalidArgument, "no_such_parameter"));
  const absl::Status no_server =
      OpenPostgresCatalog("postgresql://postgres:s3cret@/db?host=/nonexistent-logp-dir").status();
  EXPECT_TRUE(Is(no_server, absl::StatusCode::kUnavailable,
                 "cannot connect to PostgreSQL at postgres@/nonexistent-logp-dir/db"));
  EXPECT_EQ(no_server.message().find("s3cret"), absl::string_view::npos) << no_server;
  EXPECT_TRUE(Is(OpenPostgresCatalog(server_->Uri("no_such_database")).status(),
                 absl::StatusCode::kUnavailable, "no_such_database"));
  EXPECT_EQ(ValueOf(DescribePostgresUri("postgresql://u:s3cret@db.example:6543/logp")),
            "u@db.example:6543/logp");

  // Through OpenCatalog (logpd's --catalog): the two URI schemes libpq knows, nothing else.
  TempDir dir;
  for (const char* bad : {"mysql://u:s3cret@h/db", "catalog.db", "sqlite"}) {
    const absl::Status st = OpenCatalog(bad, dir.path()).status();
    EXPECT_TRUE(Is(st, absl::StatusCode::kInvalidArgument, "PostgreSQL URI")) << bad;
    EXPECT_EQ(st.message().find("s3cret"), absl::string_view::npos) << st;
    EXPECT_TRUE(Is(DescribeCatalog(bad, dir.path()).status(), absl::StatusCode::kInvalidArgument));
  }
  const std::string postgres_scheme =
      "postgres://" + uri_.substr(std::string("postgresql://").size());
  for (const std::string& uri : {uri_, postgres_scheme}) {
    auto c = OpenCatalog(uri, dir.path());
    ASSERT_TRUE(c.ok()) << uri << ": " << c.status();
    EXPECT_TRUE((*c)->InsertJob(MakeJob(uri)).ok());
    EXPECT_EQ(ValueOf(DescribeCatalog(uri, dir.path())),
              absl::StrCat("PostgreSQL postgres@", server_->dir(), "/", database_));
  }
  EXPECT_EQ(Count("SELECT count(*) FROM jobs"), 2);
  // Empty: the SQLite catalogue in the data directory, as logpd without --catalog.
  auto sqlite = OpenCatalog("", dir.path());
  ASSERT_TRUE(sqlite.ok()) << sqlite.status();
  ASSERT_TRUE((*sqlite)->InsertJob(MakeJob("job-1")).ok());
  EXPECT_TRUE(std::filesystem::exists(dir.File("catalog.db")));
  EXPECT_EQ(ValueOf(DescribeCatalog("", dir.path())), "SQLite " + dir.File("catalog.db"));
}

// PostgreSQL text cannot hold a NUL byte, and libpq would cut a parameter there: such a value is
// refused on insert and found nowhere on lookup, never taken for its prefix.
TEST_F(PostgresCatalogTest, ValuesWithANulByteAreRefusedNotCut) {
  std::unique_ptr<Catalog> catalog = Open();
  ASSERT_NE(catalog, nullptr);
  const std::string nul("ds\0x", 4);
  ASSERT_TRUE(catalog->InsertDataset(MakeDataset("ds")).ok());
  EXPECT_TRUE(
      Is(catalog->InsertDataset(MakeDataset(nul)), absl::StatusCode::kInvalidArgument, "NUL byte"));
  EXPECT_TRUE(Is(catalog->GetDataset(nul).status(), absl::StatusCode::kNotFound));
  EXPECT_TRUE(Is(catalog->DeleteDataset(nul), absl::StatusCode::kNotFound));
  ASSERT_TRUE(catalog->InsertJobForRequest(MakeJob("job-1"), {"job", "r", "f", "job-1"}).ok());
  EXPECT_TRUE(Is(catalog->GetCreateRequest("job", kDefaultTenant, std::string("r\0x", 3)).status(),
                 absl::StatusCode::kNotFound));
  EXPECT_TRUE(Is(
      catalog->InsertJobForRequest(MakeJob("job-2"), {"job", std::string("r\0x", 3), "f", "job-2"}),
      absl::StatusCode::kInvalidArgument, "request_id"));
  EXPECT_TRUE(Is(catalog->GetJob("job-2").status(), absl::StatusCode::kNotFound));
  EXPECT_TRUE(ValueOf(catalog->ListDatasets(std::string("default\0", 8), 10, "")).items.empty());
  EXPECT_EQ(ValueOf(catalog->ListDatasets(kDefaultTenant, 10, "")).items.size(), 1u);
}

// A row whose bytes do not parse is DATA_LOSS, as in the SQLite catalogue; the rest is served.
TEST_F(PostgresCatalogTest, ACorruptRowIsDataLoss) {
  std::unique_ptr<Catalog> catalog = Open();
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->InsertDataset(MakeDataset("ds-1")).ok());
  ASSERT_TRUE(catalog->InsertDataset(MakeDataset("ds-2")).ok());
  Query("UPDATE datasets SET proto = '\\xffffffff'::bytea WHERE id = 'ds-1'");
  EXPECT_TRUE(Is(catalog->GetDataset("ds-1").status(), absl::StatusCode::kDataLoss, "dataset"));
  EXPECT_TRUE(Is(catalog->ListDatasets("", 10, "").status(), absl::StatusCode::kDataLoss));
  EXPECT_TRUE(SameProto(ValueOf(catalog->GetDataset("ds-2")), MakeDataset("ds-2")));
}

}  // namespace
}  // namespace logp
