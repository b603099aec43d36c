// The Catalog contract, run against every implementation: the SQLite catalogue (in a temporary
// directory), the PostgreSQL catalogue (a fresh database on this binary's private server, see
// tests/postgres_server.h) and MemoryCatalog, the in-memory fake the core's unit tests use. What
// passes here for one and fails for another is a difference a caller could trip on.
#include "server/core/catalog.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/core/memory_catalog.h"
#include "server/core/postgres_catalog.h"
#include "tests/postgres_server.h"
#include "tests/server/test_util.h"

namespace logp {
namespace {

struct Implementation {
  std::string name;
  // A new, empty catalogue that may keep its files in `dir`.
  std::function<std::unique_ptr<Catalog>(const std::string& dir)> open;
};
void PrintTo(const Implementation& i, std::ostream* os) { *os << i.name; }

v1::Dataset MakeDataset(const std::string& id, const std::string& name = "d") {
  v1::Dataset d;
  d.set_id(id);
  d.set_name(name);
  d.set_kind(v1::DATA_KIND_BINARY);
  d.set_dim(8);
  d.set_num_records(100);
  return d;
}

v1::Job MakeJob(const std::string& id, v1::JobState state = v1::JOB_STATE_QUEUED) {
  v1::Job j;
  j.set_id(id);
  j.set_state(state);
  j.mutable_spec()->set_dataset_id("ds-1");
  j.mutable_spec()->set_seed(7);
  return j;
}

v1::Model MakeModel(const std::string& id) {
  v1::Model m;
  m.set_id(id);
  m.set_job_id("job-of-" + id);
  m.set_dim(8);
  m.set_validation_nll(1.25);
  return m;
}

v1::JobEvent Progress(int64_t seq, int64_t step) {
  v1::JobEvent e;
  e.set_seq(seq);
  e.mutable_progress()->set_step(step);
  return e;
}

std::vector<int64_t> Seqs(const std::vector<v1::JobEvent>& events) {
  std::vector<int64_t> out;
  for (const auto& e : events) out.push_back(e.seq());
  return out;
}

template <typename T>
std::vector<std::string> Ids(const std::vector<T>& items) {
  std::vector<std::string> out;
  for (const auto& i : items) out.push_back(i.id());
  return out;
}

class CatalogContractTest : public ::testing::TestWithParam<Implementation> {
 protected:
  void SetUp() override {
    catalog_ = GetParam().open(dir_.path());
    ASSERT_NE(catalog_, nullptr);
  }

  // Reads a whole listing page by page; every page but the last is full, the last has no token.
  template <typename T>
  std::vector<std::string> ReadAll(
      const std::function<absl::StatusOr<Page<T>>(int, const std::string&)>& list, int size) {
    std::vector<std::string> seen;
    std::string token;
    for (int pages = 0; pages < 100; ++pages) {
      absl::StatusOr<Page<T>> page = list(size, token);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      for (const auto& id : Ids(page->items)) seen.push_back(id);
      if (page->next_page_token.empty()) return seen;
      EXPECT_EQ(static_cast<int>(page->items.size()), size) << "a short page before the last";
      token = page->next_page_token;
    }
    ADD_FAILURE() << "the listing never ended";
    return seen;
  }

  TempDir dir_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_P(CatalogContractTest, DatasetsInsertGetDuplicateAndNotFound) {
  v1::Dataset d = MakeDataset("ds-1", "first");
  ASSERT_TRUE(catalog_->InsertDataset(d).ok());
  const v1::Dataset stored = d;
  d.set_name("changed after the insert");  // the catalogue keeps its own copy
  auto got = catalog_->GetDataset("ds-1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameProto(*got, stored));
  // A second row with the same id is refused and changes nothing.
  EXPECT_TRUE(Is(catalog_->InsertDataset(MakeDataset("ds-1", "second")),
                 absl::StatusCode::kAlreadyExists, "ds-1"));
  EXPECT_EQ(ValueOf(catalog_->GetDataset("ds-1")).name(), "first");
  EXPECT_TRUE(
      Is(catalog_->GetDataset("ds-2").status(), absl::StatusCode::kNotFound, "dataset 'ds-2'"));
  EXPECT_TRUE(Is(catalog_->GetDataset("").status(), absl::StatusCode::kNotFound));
}

TEST_P(CatalogContractTest, ModelsInsertGetDuplicateAndNotFound) {
  const v1::Model m = MakeModel("model-1");
  ASSERT_TRUE(catalog_->InsertModel(m).ok());
  auto got = catalog_->GetModel("model-1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameProto(*got, m));
  v1::Model other = MakeModel("model-1");
  other.set_validation_nll(9);
  EXPECT_TRUE(Is(catalog_->InsertModel(other), absl::StatusCode::kAlreadyExists, "model-1"));
  EXPECT_DOUBLE_EQ(ValueOf(catalog_->GetModel("model-1")).validation_nll(), 1.25);
  EXPECT_TRUE(
      Is(catalog_->GetModel("model-2").status(), absl::StatusCode::kNotFound, "model 'model-2'"));
  // Ids are per kind: a dataset may carry a model's id.
  EXPECT_TRUE(catalog_->InsertDataset(MakeDataset("model-1")).ok());
}

TEST_P(CatalogContractTest, JobsInsertUpdateGet) {
  ASSERT_TRUE(catalog_->InsertJob(MakeJob("job-1")).ok());
  EXPECT_TRUE(Is(catalog_->InsertJob(MakeJob("job-1", v1::JOB_STATE_RUNNING)),
                 absl::StatusCode::kAlreadyExists, "job-1"));
  EXPECT_EQ(ValueOf(catalog_->GetJob("job-1")).state(), v1::JOB_STATE_QUEUED);
  v1::Job updated = MakeJob("job-1", v1::JOB_STATE_SUCCEEDED);
  updated.set_model_id("model-9");
  updated.set_last_seq(4);
  ASSERT_TRUE(catalog_->UpdateJob(updated).ok());
  auto got = catalog_->GetJob("job-1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameProto(*got, updated));
  // Updating an unknown job neither succeeds nor creates it.
  EXPECT_TRUE(Is(catalog_->UpdateJob(MakeJob("job-2")), absl::StatusCode::kNotFound, "job-2"));
  EXPECT_TRUE(Is(catalog_->GetJob("job-2").status(), absl::StatusCode::kNotFound, "job 'job-2'"));
}

TEST_P(CatalogContractTest, ListingsPageNewestFirst) {
  for (int i = 1; i <= 7; ++i) {
    ASSERT_TRUE(catalog_->InsertDataset(MakeDataset(absl::StrCat("ds-", i))).ok());
    ASSERT_TRUE(catalog_->InsertJob(MakeJob(absl::StrCat("job-", i))).ok());
    ASSERT_TRUE(catalog_->InsertModel(MakeModel(absl::StrCat("model-", i))).ok());
  }
  auto expected = [](const std::string& prefix) {
    std::vector<std::string> ids;
    for (int i = 7; i >= 1; --i) ids.push_back(absl::StrCat(prefix, i));
    return ids;
  };
  auto datasets = [&](int n, const std::string& t) { return catalog_->ListDatasets("", n, t); };
  auto jobs = [&](int n, const std::string& t) { return catalog_->ListJobs("", n, t); };
  auto models = [&](int n, const std::string& t) { return catalog_->ListModels("", n, t); };
  for (int size : {1, 3, 7, 1000}) {
    SCOPED_TRACE(absl::StrCat("page size ", size));
    EXPECT_EQ(ReadAll<v1::Dataset>(datasets, size), expected("ds-"));
    EXPECT_EQ(ReadAll<v1::Job>(jobs, size), expected("job-"));
    EXPECT_EQ(ReadAll<v1::Model>(models, size), expected("model-"));
  }
  // Pages of 3: 3, 3, 1; a listing that ends exactly at a page's end has no empty extra page.
  auto first = catalog_->ListJobs("", 3, "");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(Ids(first->items), (std::vector<std::string>{"job-7", "job-6", "job-5"}));
  ASSERT_FALSE(first->next_page_token.empty());
  auto all = catalog_->ListJobs("", 7, "");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->items.size(), 7u);
  EXPECT_TRUE(all->next_page_token.empty());
  // 0 is the default page size (50).
  auto by_default = catalog_->ListModels("", 0, "");
  ASSERT_TRUE(by_default.ok());
  EXPECT_EQ(by_default->items.size(), 7u);
  EXPECT_TRUE(by_default->next_page_token.empty());
}

TEST_P(CatalogContractTest, DefaultPageIsFiftyRows) {
  for (int i = 0; i < 51; ++i) {
    ASSERT_TRUE(catalog_->InsertDataset(MakeDataset(absl::StrCat("ds-", i))).ok());
  }
  auto page = catalog_->ListDatasets("", 0, "");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->items.size(), 50u);
  ASSERT_FALSE(page->next_page_token.empty());
  auto rest = catalog_->ListDatasets("", 0, page->next_page_token);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(Ids(rest->items), std::vector<std::string>{"ds-0"});
}

TEST_P(CatalogContractTest, BadPageArgumentsAreInvalid) {
  ASSERT_TRUE(catalog_->InsertJob(MakeJob("job-1")).ok());
  for (int size : {-1, 1001}) {
    EXPECT_TRUE(Is(catalog_->ListDatasets("", size, "").status(),
                   absl::StatusCode::kInvalidArgument, "page_size"));
    EXPECT_TRUE(Is(catalog_->ListJobs("", size, "").status(), absl::StatusCode::kInvalidArgument,
                   "page_size"));
    EXPECT_TRUE(Is(catalog_->ListModels("", size, "").status(), absl::StatusCode::kInvalidArgument,
                   "page_size"));
  }
  EXPECT_TRUE(catalog_->ListJobs("", 1000, "").ok());
  for (const char* token : {"bogus", "-1", "12x", "99999999999999999999"}) {
    SCOPED_TRACE(token);
    EXPECT_TRUE(Is(catalog_->ListJobs("", 10, token).status(), absl::StatusCode::kInvalidArgument,
                   "page_token"));
    EXPECT_TRUE(Is(catalog_->ListDatasets("", 10, token).status(),
                   absl::StatusCode::kInvalidArgument, "page_token"));
    EXPECT_TRUE(Is(catalog_->ListModels("", 10, token).status(), absl::StatusCode::kInvalidArgument,
                   "page_token"));
  }
  // An empty catalogue lists nothing, without a token.
  auto none = catalog_->ListModels("", 10, "");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->items.empty());
  EXPECT_TRUE(none->next_page_token.empty());
}

// Updating a job keeps its place (listings go by creation); a page token stays good when the row
// it came from is deleted; a re-inserted id is a new row, the newest.
TEST_P(CatalogContractTest, ListingOrderIsCreationOrderThroughUpdatesAndDeletes) {
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(catalog_->InsertJob(MakeJob(absl::StrCat("j", i))).ok());
  ASSERT_TRUE(catalog_->UpdateJob(MakeJob("j1", v1::JOB_STATE_RUNNING)).ok());
  auto jobs = catalog_->ListJobs("", 10, "");
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ(Ids(jobs->items), (std::vector<std::string>{"j3", "j2", "j1"}));
  EXPECT_EQ(jobs->items[2].state(), v1::JOB_STATE_RUNNING);

  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(catalog_->InsertDataset(MakeDataset(absl::StrCat("d", i))).ok());
  }
  auto first = catalog_->ListDatasets("", 2, "");
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(Ids(first->items), (std::vector<std::string>{"d5", "d4"}));
  ASSERT_TRUE(catalog_->DeleteDataset("d4").ok());  // the row the token points after
  ASSERT_TRUE(catalog_->DeleteDataset("d2").ok());
  auto second = catalog_->ListDatasets("", 2, first->next_page_token);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(Ids(second->items), (std::vector<std::string>{"d3", "d1"}));
  EXPECT_TRUE(second->next_page_token.empty());
  // Deleting the newest row and inserting its id again: it is the newest again, listed once.
  ASSERT_TRUE(catalog_->DeleteDataset("d5").ok());
  ASSERT_TRUE(catalog_->InsertDataset(MakeDataset("d4", "again")).ok());
  auto now = catalog_->ListDatasets("", 10, "");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(Ids(now->items), (std::vector<std::string>{"d4", "d3", "d1"}));
  EXPECT_EQ(now->items[0].name(), "again");
}

// A row inserted after a page was read is newer than every row already listed: the listing's
// later pages never show it, even when the rows after the token have all been deleted.
TEST_P(CatalogContractTest, RowsInsertedWhilePagingAreNotOnLaterPages) {
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(catalog_->InsertDataset(MakeDataset(absl::StrCat("d", i))).ok());
  }
  auto first = catalog_->ListDatasets("", 1, "");
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(Ids(first->items), std::vector<std::string>{"d3"});
  ASSERT_TRUE(catalog_->DeleteDataset("d3").ok());
  ASSERT_TRUE(catalog_->DeleteDataset("d2").ok());
  ASSERT_TRUE(catalog_->InsertDataset(MakeDataset("d4")).ok());
  auto rest = catalog_->ListDatasets("", 10, first->next_page_token);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(Ids(rest->items), std::vector<std::string>{"d1"});
  auto fresh = catalog_->ListDatasets("", 10, "");
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(Ids(fresh->items), (std::vector<std::string>{"d4", "d1"}));
}

TEST_P(CatalogContractTest, DeleteDataset) {
  ASSERT_TRUE(catalog_->InsertDataset(MakeDataset("ds-1")).ok());
  ASSERT_TRUE(catalog_->InsertDataset(MakeDataset("ds-2")).ok());
  ASSERT_TRUE(catalog_->DeleteDataset("ds-1").ok());
  EXPECT_TRUE(Is(catalog_->GetDataset("ds-1").status(), absl::StatusCode::kNotFound));
  EXPECT_TRUE(Is(catalog_->DeleteDataset("ds-1"), absl::StatusCode::kNotFound, "ds-1"));
  EXPECT_TRUE(Is(catalog_->DeleteDataset("never"), absl::StatusCode::kNotFound, "never"));
  EXPECT_TRUE(catalog_->GetDataset("ds-2").ok());
  auto page = catalog_->ListDatasets("", 10, "");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(Ids(page->items), std::vector<std::string>{"ds-2"});
}

TEST_P(CatalogContractTest, JobsInStatesOldestFirstByCurrentState) {
  ASSERT_TRUE(catalog_->InsertJob(MakeJob("a", v1::JOB_STATE_QUEUED)).ok());
  ASSERT_TRUE(catalog_->InsertJob(MakeJob("b", v1::JOB_STATE_RUNNING)).ok());
  ASSERT_TRUE(catalog_->InsertJob(MakeJob("c", v1::JOB_STATE_SUCCEEDED)).ok());
  ASSERT_TRUE(catalog_->InsertJob(MakeJob("d", v1::JOB_STATE_QUEUED)).ok());
  ASSERT_TRUE(catalog_->InsertJob(MakeJob("e", v1::JOB_STATE_CANCELLED)).ok());
  // The state that counts is the latest written, by UpdateJob or AppendEvents.
  ASSERT_TRUE(catalog_->UpdateJob(MakeJob("a", v1::JOB_STATE_FAILED)).ok());
  v1::Job c = MakeJob("c", v1::JOB_STATE_RUNNING);
  c.set_last_seq(1);
  ASSERT_TRUE(catalog_->AppendEvents(c, {Progress(1, 1)}).ok());

  auto pending = catalog_->JobsInStates({v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING});
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_EQ(Ids(*pending), (std::vector<std::string>{"b", "c", "d"}));
  EXPECT_TRUE(SameProto((*pending)[1], c));
  auto ended = catalog_->JobsInStates({v1::JOB_STATE_CANCELLED, v1::JOB_STATE_FAILED});
  ASSERT_TRUE(ended.ok());
  EXPECT_EQ(Ids(*ended), (std::vector<std::string>{"a", "e"}));
  auto none = catalog_->JobsInStates({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_P(CatalogContractTest, AppendEventsWritesEventsAndTheJobRowTogether) {
  ASSERT_TRUE(catalog_->InsertJob(MakeJob("j")).ok());
  ASSERT_TRUE(catalog_->InsertJob(MakeJob("other")).ok());
  v1::Job j = MakeJob("j", v1::JOB_STATE_RUNNING);
  j.set_last_seq(2);
  j.set_step(20);
  ASSERT_TRUE(catalog_->AppendEvents(j, {Progress(1, 10), Progress(2, 20)}).ok());
  v1::Job other = MakeJob("other");
  other.set_last_seq(1);
  ASSERT_TRUE(catalog_->AppendEvents(other, {Progress(1, 99)}).ok());
  EXPECT_TRUE(SameProto(ValueOf(catalog_->GetJob("j")), j));
  j.set_last_seq(3);
  ASSERT_TRUE(catalog_->AppendEvents(j, {Progress(3, 30)}).ok());
  EXPECT_EQ(ValueOf(catalog_->GetJob("j")).last_seq(), 3);

  auto events = catalog_->ListEvents("j", 1);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(Seqs(*events), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_TRUE(SameProto((*events)[1], Progress(2, 20)));
  EXPECT_EQ(Seqs(ValueOf(catalog_->ListEvents("j", 0))), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(Seqs(ValueOf(catalog_->ListEvents("j", 3))), std::vector<int64_t>{3});
  EXPECT_TRUE(ValueOf(catalog_->ListEvents("j", 4)).empty());
  ASSERT_EQ(ValueOf(catalog_->ListEvents("other", 0)).size(), 1u);
  EXPECT_EQ((ValueOf(catalog_->ListEvents("other", 0)))[0].progress().step(), 99);
  // An unknown job has no events (not an error).
  auto unknown = catalog_->ListEvents("nobody", 0);
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_TRUE(unknown->empty());
}

// Events come back in seq order whatever order they were written in; a seq written again (a
// batch retried after an unknown outcome) replaces the event rather than doubling it.
TEST_P(CatalogContractTest, EventsAreOrderedBySeqAndARewriteReplaces) {
  ASSERT_TRUE(catalog_->InsertJob(MakeJob("j")).ok());
  v1::Job j = MakeJob("j");
  ASSERT_TRUE(catalog_->AppendEvents(j, {Progress(3, 30)}).ok());
  ASSERT_TRUE(catalog_->AppendEvents(j, {Progress(2, 20), Progress(1, 10)}).ok());
  ASSERT_TRUE(catalog_->AppendEvents(j, {Progress(2, 21)}).ok());
  auto events = catalog_->ListEvents("j", 0);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(Seqs(*events), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ((*events)[1].progress().step(), 21);
  // An empty batch still writes the row.
  j.set_step(77);
  ASSERT_TRUE(catalog_->AppendEvents(j, {}).ok());
  EXPECT_EQ(ValueOf(catalog_->GetJob("j")).step(), 77);
}

// The events of a job with no row are not written: the row and its events go together.
TEST_P(CatalogContractTest, AppendEventsForAnUnknownJobWritesNothing) {
  EXPECT_TRUE(Is(catalog_->AppendEvents(MakeJob("ghost"), {Progress(1, 1), Progress(2, 2)}),
                 absl::StatusCode::kNotFound, "ghost"));
  EXPECT_TRUE(ValueOf(catalog_->ListEvents("ghost", 0)).empty());
  EXPECT_TRUE(Is(catalog_->GetJob("ghost").status(), absl::StatusCode::kNotFound));
  // The job created later starts with no events.
  ASSERT_TRUE(catalog_->InsertJob(MakeJob("ghost")).ok());
  EXPECT_TRUE(ValueOf(catalog_->ListEvents("ghost", 0)).empty());
}

TEST_P(CatalogContractTest, CreateRequestsInsertTheResourceAndTheRequestTogether) {
  EXPECT_TRUE(Is(catalog_->GetCreateRequest("job", "default", "r1").status(),
                 absl::StatusCode::kNotFound, "job"));
  const CreateRequest r1{"job", "r1", "fingerprint-1", "job-1"};
  ASSERT_TRUE(catalog_->InsertJobForRequest(MakeJob("job-1"), r1).ok());
  auto got = catalog_->GetCreateRequest("job", "default", "r1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->kind, "job");
  EXPECT_EQ(got->request_id, "r1");
  EXPECT_EQ(got->fingerprint, "fingerprint-1");
  EXPECT_EQ(got->resource_id, "job-1");
  EXPECT_TRUE(catalog_->GetJob("job-1").ok());

  // The same request again: refused, and its job is not inserted.
  EXPECT_TRUE(Is(catalog_->InsertJobForRequest(MakeJob("job-2"), {"job", "r1", "other", "job-2"}),
                 absl::StatusCode::kAlreadyExists));
  EXPECT_TRUE(Is(catalog_->GetJob("job-2").status(), absl::StatusCode::kNotFound));
  EXPECT_EQ(ValueOf(catalog_->GetCreateRequest("job", "default", "r1")).fingerprint,
            "fingerprint-1");
  // A new request with a job id already taken: refused, and the request is not recorded.
  EXPECT_TRUE(Is(catalog_->InsertJobForRequest(MakeJob("job-1"), {"job", "r2", "f", "job-1"}),
                 absl::StatusCode::kAlreadyExists));
  EXPECT_TRUE(
      Is(catalog_->GetCreateRequest("job", "default", "r2").status(), absl::StatusCode::kNotFound));
  auto jobs = catalog_->ListJobs("", 10, "");
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ(Ids(jobs->items), std::vector<std::string>{"job-1"});

  // Datasets: the same rules, in their own namespace of request ids.
  EXPECT_TRUE(Is(catalog_->GetCreateRequest("dataset", "default", "r1").status(),
                 absl::StatusCode::kNotFound));
  ASSERT_TRUE(
      catalog_->InsertDatasetForRequest(MakeDataset("ds-1"), {"dataset", "r1", "fd", "ds-1"}).ok());
  EXPECT_EQ(ValueOf(catalog_->GetCreateRequest("dataset", "default", "r1")).resource_id, "ds-1");
  EXPECT_EQ(ValueOf(catalog_->GetCreateRequest("job", "default", "r1")).resource_id, "job-1");
  EXPECT_TRUE(catalog_->GetDataset("ds-1").ok());
  EXPECT_TRUE(
      Is(catalog_->InsertDatasetForRequest(MakeDataset("ds-2"), {"dataset", "r1", "fd", "ds-2"}),
         absl::StatusCode::kAlreadyExists));
  EXPECT_TRUE(Is(catalog_->GetDataset("ds-2").status(), absl::StatusCode::kNotFound));
  EXPECT_TRUE(
      Is(catalog_->InsertDatasetForRequest(MakeDataset("ds-1"), {"dataset", "r3", "fd", "ds-1"}),
         absl::StatusCode::kAlreadyExists));
  EXPECT_TRUE(Is(catalog_->GetCreateRequest("dataset", "default", "r3").status(),
                 absl::StatusCode::kNotFound));
  // A plain insert of an id that a request inserted is a duplicate too.
  EXPECT_TRUE(Is(catalog_->InsertDataset(MakeDataset("ds-1")), absl::StatusCode::kAlreadyExists));
}

// Deleting a dataset forgets the request that created it (a retry then uploads afresh), and only
// that one: not another dataset's, not a job request that happens to name the same id.
TEST_P(CatalogContractTest, DeleteDatasetForgetsItsCreateRequestOnly) {
  ASSERT_TRUE(
      catalog_->InsertDatasetForRequest(MakeDataset("ds-1"), {"dataset", "r1", "f1", "ds-1"}).ok());
  ASSERT_TRUE(
      catalog_->InsertDatasetForRequest(MakeDataset("ds-2"), {"dataset", "r2", "f2", "ds-2"}).ok());
  ASSERT_TRUE(catalog_->InsertJobForRequest(MakeJob("job-1"), {"job", "r1", "fj", "ds-1"}).ok());
  ASSERT_TRUE(catalog_->DeleteDataset("ds-1").ok());
  EXPECT_TRUE(Is(catalog_->GetCreateRequest("dataset", "default", "r1").status(),
                 absl::StatusCode::kNotFound));
  EXPECT_EQ(ValueOf(catalog_->GetCreateRequest("dataset", "default", "r2")).resource_id, "ds-2");
  EXPECT_EQ(ValueOf(catalog_->GetCreateRequest("job", "default", "r1")).fingerprint, "fj");
  // The request id is free again.
  EXPECT_TRUE(
      catalog_->InsertDatasetForRequest(MakeDataset("ds-3"), {"dataset", "r1", "f3", "ds-3"}).ok());
  EXPECT_EQ(ValueOf(catalog_->GetCreateRequest("dataset", "default", "r1")).resource_id, "ds-3");
}

// Many threads writing and reading at once lose nothing and tear nothing.
template <typename T>
T OwnedBy(T row, const std::string& tenant) {
  row.set_tenant(tenant);
  return row;
}

TEST_P(CatalogContractTest, ListingsFilterByTenantAndEmptyTenantIsDefault) {
  // Rows of two tenants interleaved, and one stored without a tenant (as before tenants).
  for (int i = 1; i <= 6; ++i) {
    const std::string tenant = i % 2 == 0 ? "team-b" : "team-a";
    ASSERT_TRUE(catalog_->InsertDataset(OwnedBy(MakeDataset(absl::StrCat("ds-", i)), tenant)).ok());
    ASSERT_TRUE(catalog_->InsertJob(OwnedBy(MakeJob(absl::StrCat("job-", i)), tenant)).ok());
    ASSERT_TRUE(catalog_->InsertModel(OwnedBy(MakeModel(absl::StrCat("model-", i)), tenant)).ok());
  }
  ASSERT_TRUE(catalog_->InsertDataset(MakeDataset("ds-legacy")).ok());
  ASSERT_TRUE(catalog_->InsertJob(MakeJob("job-legacy")).ok());
  ASSERT_TRUE(catalog_->InsertModel(MakeModel("model-legacy")).ok());

  auto datasets = [&](const std::string& tenant) {
    return [this, tenant](int n, const std::string& t) {
      return catalog_->ListDatasets(tenant, n, t);
    };
  };
  for (int size : {1, 2, 1000}) {
    SCOPED_TRACE(absl::StrCat("page size ", size));
    EXPECT_EQ(ReadAll<v1::Dataset>(datasets("team-a"), size),
              (std::vector<std::string>{"ds-5", "ds-3", "ds-1"}));
    EXPECT_EQ(ReadAll<v1::Dataset>(datasets("team-b"), size),
              (std::vector<std::string>{"ds-6", "ds-4", "ds-2"}));
    EXPECT_EQ(ReadAll<v1::Dataset>(datasets(kDefaultTenant), size),
              (std::vector<std::string>{"ds-legacy"}));
    EXPECT_TRUE(ReadAll<v1::Dataset>(datasets("team-c"), size).empty());
    EXPECT_EQ(ReadAll<v1::Dataset>(datasets(""), size).size(), 7u);
  }
  EXPECT_EQ(Ids(ValueOf(catalog_->ListJobs("team-b", 10, "")).items),
            (std::vector<std::string>{"job-6", "job-4", "job-2"}));
  EXPECT_EQ(Ids(ValueOf(catalog_->ListJobs(kDefaultTenant, 10, "")).items),
            (std::vector<std::string>{"job-legacy"}));
  EXPECT_EQ(Ids(ValueOf(catalog_->ListModels("team-a", 10, "")).items),
            (std::vector<std::string>{"model-5", "model-3", "model-1"}));
  EXPECT_EQ(ValueOf(catalog_->ListModels("", 10, "")).items.size(), 7u);
}

TEST_P(CatalogContractTest, StoredByCountsATenantsDatasetsAndModelsWithTheirBytes) {
  v1::Dataset a1 = OwnedBy(MakeDataset("ds-a1"), "team-a");
  a1.set_stored_bytes(1000);
  v1::Dataset a2 = OwnedBy(MakeDataset("ds-a2"), "team-a");
  a2.set_stored_bytes(24);
  v1::Dataset b1 = OwnedBy(MakeDataset("ds-b1"), "team-b");
  b1.set_stored_bytes(5);
  v1::Model am = OwnedBy(MakeModel("model-a"), "team-a");
  am.set_stored_bytes(300);
  for (const auto& d : {a1, a2, b1}) ASSERT_TRUE(catalog_->InsertDataset(d).ok());
  ASSERT_TRUE(catalog_->InsertModel(am).ok());
  v1::Dataset legacy = MakeDataset("ds-legacy");
  legacy.set_stored_bytes(7);
  ASSERT_TRUE(catalog_->InsertDataset(legacy).ok());

  const TenantStorage a = ValueOf(catalog_->StoredBy("team-a"));
  EXPECT_EQ(a.datasets, 2);
  EXPECT_EQ(a.dataset_bytes, 1024);
  EXPECT_EQ(a.models, 1);
  EXPECT_EQ(a.model_bytes, 300);
  EXPECT_EQ(a.total_bytes(), 1324);
  EXPECT_EQ(ValueOf(catalog_->StoredBy("team-b")).total_bytes(), 5);
  EXPECT_EQ(ValueOf(catalog_->StoredBy(kDefaultTenant)).datasets, 1);
  EXPECT_EQ(ValueOf(catalog_->StoredBy(kDefaultTenant)).dataset_bytes, 7);
  EXPECT_EQ(ValueOf(catalog_->StoredBy("team-c")).datasets, 0);
  ASSERT_TRUE(catalog_->DeleteDataset("ds-a1").ok());
  EXPECT_EQ(ValueOf(catalog_->StoredBy("team-a")).dataset_bytes, 24);
}

TEST_P(CatalogContractTest, EachTenantHasItsOwnRequestIds) {
  CreateRequest a{"job", "r1", "fa", "job-a", "team-a"};
  CreateRequest b{"job", "r1", "fb", "job-b", "team-b"};
  ASSERT_TRUE(catalog_->InsertJobForRequest(OwnedBy(MakeJob("job-a"), "team-a"), a).ok());
  // The same request id from another tenant is another request.
  ASSERT_TRUE(catalog_->InsertJobForRequest(OwnedBy(MakeJob("job-b"), "team-b"), b).ok());
  EXPECT_EQ(ValueOf(catalog_->GetCreateRequest("job", "team-a", "r1")).resource_id, "job-a");
  EXPECT_EQ(ValueOf(catalog_->GetCreateRequest("job", "team-b", "r1")).resource_id, "job-b");
  EXPECT_TRUE(
      Is(catalog_->GetCreateRequest("job", "team-c", "r1").status(), absl::StatusCode::kNotFound));
  EXPECT_TRUE(Is(catalog_->GetCreateRequest("job", kDefaultTenant, "r1").status(),
                 absl::StatusCode::kNotFound));
  // Within a tenant it is still used once.
  CreateRequest again{"job", "r1", "fa2", "job-a2", "team-a"};
  EXPECT_TRUE(Is(catalog_->InsertJobForRequest(OwnedBy(MakeJob("job-a2"), "team-a"), again),
                 absl::StatusCode::kAlreadyExists));
  // An empty tenant is the default one.
  CreateRequest legacy{"dataset", "r1", "f", "ds-1", ""};
  ASSERT_TRUE(catalog_->InsertDatasetForRequest(MakeDataset("ds-1"), legacy).ok());
  EXPECT_EQ(ValueOf(catalog_->GetCreateRequest("dataset", kDefaultTenant, "r1")).resource_id,
            "ds-1");
}

TEST_P(CatalogContractTest, ConcurrentCallsLoseNothing) {
  constexpr int kThreads = 4, kJobsEach = 20, kEvents = 3;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kJobsEach; ++i) {
        const std::string id = absl::StrCat("job-", t, "-", i);
        v1::Job j = MakeJob(id);
        EXPECT_TRUE(catalog_->InsertJob(j).ok());
        for (int s = 1; s <= kEvents; ++s) {
          j.set_last_seq(s);
          EXPECT_TRUE(catalog_->AppendEvents(j, {Progress(s, s * 10)}).ok());
        }
        EXPECT_TRUE(catalog_->ListJobs("", 5, "").ok());
        EXPECT_TRUE(catalog_->InsertDataset(MakeDataset(absl::StrCat("ds-", t, "-", i))).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  auto jobs = catalog_->ListJobs("", 1000, "");
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ(jobs->items.size(), static_cast<size_t>(kThreads * kJobsEach));
  for (const auto& j : jobs->items) {
    EXPECT_EQ(j.last_seq(), kEvents) << j.id();
    EXPECT_EQ(Seqs(ValueOf(catalog_->ListEvents(j.id(), 0))), (std::vector<int64_t>{1, 2, 3}))
        << j.id();
  }
  EXPECT_EQ(ValueOf(catalog_->ListDatasets("", 1000, "")).items.size(),
            static_cast<size_t>(kThreads * kJobsEach));
}

// --- Job leases (the same rules in every catalogue; shared by processes only in PostgreSQL) ---

// A job the catalogue holds under `state`, inserted with its first event.
v1::Job InsertWithEvent(Catalog* c, const std::string& id,
                        v1::JobState state = v1::JOB_STATE_QUEUED) {
  v1::Job j = MakeJob(id, state);
  j.set_last_seq(1);
  EXPECT_TRUE(c->InsertJobWithEvents(j, {Progress(1, 0)}, nullptr).ok());
  return j;
}

std::vector<std::string> ClaimableIds(Catalog* c) {
  absl::StatusOr<JobQueue> q = c->ReadQueue();
  EXPECT_TRUE(q.ok()) << q.status();
  return q.ok() ? Ids(q->claimable) : std::vector<std::string>{};
}

TEST_P(CatalogContractTest, AJobIsInsertedWithItsFirstEventsAllOrNothing) {
  const v1::Job j = InsertWithEvent(catalog_.get(), "j1");
  EXPECT_EQ(Seqs(ValueOf(catalog_->ListEvents("j1", 1))), (std::vector<int64_t>{1}));
  EXPECT_EQ(ValueOf(catalog_->GetJob("j1")).last_seq(), 1);
  // A duplicate id writes neither the row nor its events.
  v1::Job again = MakeJob("j1", v1::JOB_STATE_FAILED);
  EXPECT_TRUE(Is(catalog_->InsertJobWithEvents(again, {Progress(2, 9)}, nullptr),
                 absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(Seqs(ValueOf(catalog_->ListEvents("j1", 1))), (std::vector<int64_t>{1}));
  EXPECT_EQ(ValueOf(catalog_->GetJob("j1")).state(), v1::JOB_STATE_QUEUED);
  // With a request: both or neither.
  CreateRequest r{"job", "req-1", "fp", "j2"};
  ASSERT_TRUE(catalog_->InsertJobWithEvents(MakeJob("j2"), {Progress(1, 0)}, &r).ok());
  CreateRequest reused{"job", "req-1", "fp", "j3"};
  EXPECT_TRUE(Is(catalog_->InsertJobWithEvents(MakeJob("j3"), {Progress(1, 0)}, &reused),
                 absl::StatusCode::kAlreadyExists));
  EXPECT_TRUE(Is(catalog_->GetJob("j3").status(), absl::StatusCode::kNotFound));
  EXPECT_TRUE(ValueOf(catalog_->ListEvents("j3", 0)).empty());
}

TEST_P(CatalogContractTest, AClaimTakesAJobOnceAndTheQueueSaysWhatIsHeld) {
  InsertWithEvent(catalog_.get(), "old");
  InsertWithEvent(catalog_.get(), "new");
  InsertWithEvent(catalog_.get(), "done", v1::JOB_STATE_SUCCEEDED);
  JobQueue q = ValueOf(catalog_->ReadQueue());
  EXPECT_EQ(Ids(q.claimable), (std::vector<std::string>{"old", "new"}));
  EXPECT_EQ(q.queued(), 2);
  EXPECT_TRUE(q.leased_by_tenant.empty());

  std::optional<JobClaim> a = ValueOf(catalog_->ClaimJob("old", "replica-a", absl::Seconds(30)));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->lease.owner, "replica-a");
  EXPECT_EQ(a->lease.token, 1);
  EXPECT_EQ(a->previous_owner, "");
  EXPECT_FALSE(a->cancel_requested);
  EXPECT_EQ(a->job.id(), "old");
  // Held: nobody else gets it, not even the holder again.
  EXPECT_FALSE(ValueOf(catalog_->ClaimJob("old", "replica-b", absl::Seconds(30))).has_value());
  EXPECT_FALSE(ValueOf(catalog_->ClaimJob("old", "replica-a", absl::Seconds(30))).has_value());
  // Ended and unknown jobs are never claimable.
  EXPECT_FALSE(ValueOf(catalog_->ClaimJob("done", "replica-b", absl::Seconds(30))).has_value());
  EXPECT_FALSE(ValueOf(catalog_->ClaimJob("ghost", "replica-b", absl::Seconds(30))).has_value());
  q = ValueOf(catalog_->ReadQueue());
  EXPECT_EQ(Ids(q.claimable), (std::vector<std::string>{"new"}));
  EXPECT_EQ(q.leased_by_tenant[kDefaultTenant], 1);
  EXPECT_EQ(q.queued(), 2);  // still QUEUED in its row until its holder writes RUNNING
}

// The known pitfall of job queues: a claim must also take RUNNING jobs whose holder stopped
// renewing (pg-boss #436, graphile-worker #222), and the holder that lost the lease must be
// refused, with nothing written.
TEST_P(CatalogContractTest, AnExpiredLeaseIsReclaimedAndTheOldHolderIsFencedOut) {
  InsertWithEvent(catalog_.get(), "j");
  JobClaim a = *ValueOf(catalog_->ClaimJob("j", "replica-a", absl::Milliseconds(300)));
  JobWrite running{MakeJob("j", v1::JOB_STATE_RUNNING), {Progress(2, 10)}, a.lease.token};
  running.job.set_last_seq(2);
  ASSERT_TRUE(catalog_->WriteJob(running).ok());
  EXPECT_TRUE(ClaimableIds(catalog_.get()).empty());
  absl::SleepFor(absl::Milliseconds(600));  // replica-a is silent past its lease
  EXPECT_EQ(ClaimableIds(catalog_.get()), (std::vector<std::string>{"j"}));
  JobClaim b = *ValueOf(catalog_->ClaimJob("j", "replica-b", absl::Seconds(30)));
  EXPECT_EQ(b.lease.token, 2);
  EXPECT_EQ(b.previous_owner, "replica-a");
  EXPECT_EQ(b.job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(b.job.last_seq(), 2);

  // replica-a wakes up: its renewal and every write it tries are refused and change nothing.
  EXPECT_TRUE(IsLeaseLost(catalog_->RenewLease(a.lease, absl::Seconds(30)).status()));
  JobWrite stale{MakeJob("j", v1::JOB_STATE_SUCCEEDED), {Progress(3, 99)}, a.lease.token};
  stale.job.set_last_seq(3);
  stale.model = MakeModel("model-stale");
  stale.release_lease = true;
  absl::Status refused = catalog_->WriteJob(stale);
  EXPECT_TRUE(IsLeaseLost(refused)) << refused;
  EXPECT_TRUE(Is(refused, absl::StatusCode::kFailedPrecondition, "superseded by token 2"));
  EXPECT_EQ(ValueOf(catalog_->GetJob("j")).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(Seqs(ValueOf(catalog_->ListEvents("j", 1))), (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(Is(catalog_->GetModel("model-stale").status(), absl::StatusCode::kNotFound));
  // The new holder writes and publishes, once.
  JobWrite done{MakeJob("j", v1::JOB_STATE_SUCCEEDED), {Progress(3, 20)}, b.lease.token};
  done.job.set_last_seq(3);
  done.model = MakeModel("model-1");
  done.release_lease = true;
  ASSERT_TRUE(catalog_->WriteJob(done).ok());
  EXPECT_EQ(ValueOf(catalog_->GetModel("model-1")).job_id(), "job-of-model-1");
  EXPECT_EQ(Seqs(ValueOf(catalog_->ListEvents("j", 1))), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_TRUE(ClaimableIds(catalog_.get()).empty());
  // Its lease is over: a write with it is refused too.
  EXPECT_TRUE(IsLeaseLost(catalog_->WriteJob(done)));
}

TEST_P(CatalogContractTest, RenewalsKeepALeaseAndAnExpiredOneNobodyTookIsStillHeld) {
  InsertWithEvent(catalog_.get(), "j");
  JobClaim a = *ValueOf(catalog_->ClaimJob("j", "replica-a", absl::Milliseconds(300)));
  for (int i = 0; i < 6; ++i) {  // 600 ms, twice the lease
    absl::SleepFor(absl::Milliseconds(100));
    EXPECT_EQ(catalog_->RenewLease(a.lease, absl::Milliseconds(300)).value_or(true), false);
    EXPECT_FALSE(ValueOf(catalog_->ClaimJob("j", "replica-b", absl::Seconds(30))).has_value());
  }
  absl::SleepFor(absl::Milliseconds(500));  // expired, but claimed by nobody: still a's
  ASSERT_TRUE(catalog_->RenewLease(a.lease, absl::Seconds(30)).ok());
  EXPECT_FALSE(ValueOf(catalog_->ClaimJob("j", "replica-b", absl::Seconds(30))).has_value());
  JobWrite w{MakeJob("j", v1::JOB_STATE_RUNNING), {}, a.lease.token};
  EXPECT_TRUE(catalog_->WriteJob(w).ok());
}

TEST_P(CatalogContractTest, ReleasedLeasesMakeJobsClaimableAtOnceWithTheNextToken) {
  InsertWithEvent(catalog_.get(), "j");
  JobClaim a = *ValueOf(catalog_->ClaimJob("j", "replica-a", absl::Seconds(30)));
  // Back to the queue (a graceful stop): released in the same write.
  JobWrite requeue{MakeJob("j", v1::JOB_STATE_QUEUED), {Progress(2, 5)}, a.lease.token};
  requeue.job.set_last_seq(2);
  requeue.release_lease = true;
  ASSERT_TRUE(catalog_->WriteJob(requeue).ok());
  EXPECT_EQ(ClaimableIds(catalog_.get()), (std::vector<std::string>{"j"}));
  JobClaim b = *ValueOf(catalog_->ClaimJob("j", "replica-b", absl::Seconds(30)));
  EXPECT_EQ(b.lease.token, 2);
  EXPECT_TRUE(IsLeaseLost(catalog_->RenewLease(a.lease, absl::Seconds(30)).status()));
  // A replica restarted under its stable id gets its jobs back at once.
  ASSERT_TRUE(catalog_->ReleaseLeasesOf("replica-b").ok());
  EXPECT_EQ(ClaimableIds(catalog_.get()), (std::vector<std::string>{"j"}));
  EXPECT_TRUE(IsLeaseLost(catalog_->RenewLease(b.lease, absl::Seconds(30)).status()));
  EXPECT_EQ(ValueOf(catalog_->ClaimJob("j", "replica-b", absl::Seconds(30)))->lease.token, 3);
}

TEST_P(CatalogContractTest, ACancelRequestReachesTheHolderAndTheNextClaimer) {
  InsertWithEvent(catalog_.get(), "j");
  EXPECT_TRUE(Is(catalog_->RequestCancel("ghost"), absl::StatusCode::kNotFound));
  JobClaim a = *ValueOf(catalog_->ClaimJob("j", "replica-a", absl::Milliseconds(200)));
  EXPECT_FALSE(ValueOf(catalog_->RenewLease(a.lease, absl::Milliseconds(200))));
  ASSERT_TRUE(catalog_->RequestCancel("j").ok());
  EXPECT_TRUE(ValueOf(catalog_->RenewLease(a.lease, absl::Milliseconds(200))));
  absl::SleepFor(absl::Milliseconds(400));
  std::optional<JobClaim> b = ValueOf(catalog_->ClaimJob("j", "replica-b", absl::Seconds(30)));
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(b->cancel_requested);
}

// Claimers racing for the same jobs: each job goes to exactly one of them.
TEST_P(CatalogContractTest, ConcurrentClaimersGetEachJobOnce) {
  constexpr int kJobs = 24, kClaimers = 4;
  for (int i = 0; i < kJobs; ++i) InsertWithEvent(catalog_.get(), absl::StrCat("job-", i));
  std::vector<std::vector<std::string>> got(kClaimers);
  std::vector<std::thread> threads;
  for (int t = 0; t < kClaimers; ++t) {
    threads.emplace_back([&, t] {
      while (true) {
        absl::StatusOr<JobQueue> q = catalog_->ReadQueue();
        EXPECT_TRUE(q.ok()) << q.status();
        if (!q.ok() || q->claimable.empty()) return;
        // Everyone goes for the same (oldest) job, the worst case.
        absl::StatusOr<std::optional<JobClaim>> c = catalog_->ClaimJob(
            q->claimable.front().id(), absl::StrCat("replica-", t), absl::Seconds(30));
        EXPECT_TRUE(c.ok()) << c.status();
        if (c.ok() && *c) {
          EXPECT_EQ((*c)->lease.token, 1);
          got[t].push_back((*c)->job.id());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<std::string> all;
  for (const auto& g : got) all.insert(all.end(), g.begin(), g.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(std::unique(all.begin(), all.end()), all.end());
}

INSTANTIATE_TEST_SUITE_P(
    Catalogs, CatalogContractTest,
    ::testing::Values(Implementation{"Sqlite",
                                     [](const std::string& dir) -> std::unique_ptr<Catalog> {
                                       auto c = OpenSqliteCatalog(dir + "/catalog.db");
                                       EXPECT_TRUE(c.ok()) << c.status();
                                       return c.ok() ? std::move(*c) : nullptr;
                                     }},
                      Implementation{"Postgres",
                                     [](const std::string&) -> std::unique_ptr<Catalog> {
                                       PostgresServer* server = SharedPostgresServer();
                                       if (server == nullptr) return nullptr;
                                       auto c =
                                           OpenPostgresCatalog(server->Uri(server->NewDatabase()));
                                       EXPECT_TRUE(c.ok()) << c.status();
                                       return c.ok() ? std::move(*c) : nullptr;
                                     }},
                      Implementation{"Memory",
                                     [](const std::string&) -> std::unique_ptr<Catalog> {
                                       return std::make_unique<MemoryCatalog>();
                                     }}),
    [](const ::testing::TestParamInfo<Implementation>& info) { return info.param.name; });

}  // namespace
}  // namespace logp
