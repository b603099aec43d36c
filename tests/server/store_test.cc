// DatasetStore and Catalog without a network: durable commit, nothing visible from a failed or
// interrupted upload, orphans removed at startup.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/core/catalog.h"
#include "server/core/dataset_store.h"
#include "server/core/file_system.h"
#include "tests/server/test_util.h"

namespace logp {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/logp-store-XXXXXX";
    dir_ = mkdtemp(tmpl);
    Reopen();
  }
  void TearDown() override { system(("rm -rf " + dir_).c_str()); }
  void Reopen() {
    store_.reset();
    catalog_ = OpenSqliteCatalog(dir_ + "/catalog.db").value();
    store_ = DatasetStore::Open({dir_}, catalog_.get()).value();
  }

  // Header for N binary records of dim 12, then one chunk per record (uint8 values).
  std::vector<v1::CreateDatasetRequest> Upload(int declared, int sent) {
    std::vector<v1::CreateDatasetRequest> reqs(1);
    auto* h = reqs[0].mutable_header();
    h->set_name("t");
    h->set_kind(v1::DATA_KIND_BINARY);
    h->set_dim(12);
    h->set_num_records(declared);
    for (int r = 0; r < sent; ++r) {
      v1::CreateDatasetRequest c;
      c.mutable_chunk()->set_encoding(v1::ENCODING_UINT8);
      c.mutable_chunk()->set_num_records(1);
      c.mutable_chunk()->set_dim(12);
      std::string row(12, '\0');
      for (int i = 0; i < 12; ++i) row[i] = static_cast<char>((r + i) % 3 == 0);
      c.mutable_chunk()->set_data(row);
      reqs.push_back(c);
    }
    return reqs;
  }
  absl::StatusOr<v1::Dataset> Send(const std::vector<v1::CreateDatasetRequest>& reqs,
                                   std::function<bool()> cancelled = nullptr) {
    size_t i = 0;
    return store_->CreateFromStream(
        kDefaultTenant,
        [&](v1::CreateDatasetRequest* r) {
          if (i == reqs.size()) return false;
          *r = reqs[i++];
          return true;
        },
        cancelled);
  }
  void ExpectNothingVisible() {
    EXPECT_TRUE(store_->List("", 0, "").value().items.empty());
    EXPECT_TRUE(FileSystem::Default()->ListDir(store_->TEST_tmp_dir()).empty());
    EXPECT_TRUE(FileSystem::Default()->ListDir(store_->TEST_data_dir()).empty());
  }

  std::string dir_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<DatasetStore> store_;
};

TEST_F(StoreTest, CommittedUploadSurvivesReopenBitForBit) {
  auto ds = Send(Upload(5, 5));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->num_records(), 5u);
  auto before = store_->Load(ds->id()).value();
  ASSERT_EQ(before->rows, 5);
  std::vector<double> values;
  for (int64_t r = 0; r < before->rows; ++r) {
    for (int64_t c = 0; c < before->cols; ++c) values.push_back(before->At(r, c));
  }
  const std::vector<uint8_t> bits = before->bits;
  ASSERT_FALSE(bits.empty());
  before.reset();
  Reopen();
  auto after = store_->Load(ds->id());
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ((*after)->bits, bits);  // binary data is loaded bit-packed
  std::vector<double> again;
  for (int64_t r = 0; r < (*after)->rows; ++r) {
    for (int64_t c = 0; c < (*after)->cols; ++c) again.push_back((*after)->At(r, c));
  }
  EXPECT_EQ(again, values);
  EXPECT_EQ(store_->Get(ds->id())->content_hash(), ds->content_hash());
}

TEST_F(StoreTest, InterruptedUploadLeavesNothingVisible) {
  // The stream ends after 3 of 5 declared records (a client that died mid-upload).
  EXPECT_EQ(Send(Upload(5, 3)).status().code(), absl::StatusCode::kInvalidArgument);
  ExpectNothingVisible();
  // The client cancels after the second chunk.
  int polls = 0;
  EXPECT_EQ(Send(Upload(5, 5), [&] { return ++polls > 2; }).status().code(),
            absl::StatusCode::kCancelled);
  ExpectNothingVisible();
  // A bad value in the last chunk.
  auto reqs = Upload(5, 5);
  reqs.back().mutable_chunk()->mutable_data()->at(3) = 7;
  auto st = Send(reqs).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("record 4, column 3"), std::string::npos) << st;
  ExpectNothingVisible();
}

TEST_F(StoreTest, HeaderRulesAndDeclaredCount) {
  auto reqs = Upload(2, 2);
  EXPECT_EQ(Send({reqs[1], reqs[2]}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Send({reqs[0], reqs[1], reqs[0], reqs[2]}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Send(Upload(2, 3)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Send(Upload(0, 0)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Send({}).status().code(), absl::StatusCode::kInvalidArgument);
  ExpectNothingVisible();
}

TEST_F(StoreTest, StartupRemovesOrphans) {
  auto ds = Send(Upload(2, 2));
  ASSERT_TRUE(ds.ok());
  // What a crash can leave: a half-written upload and a renamed file whose row never committed.
  std::ofstream(store_->TEST_tmp_dir() + "/upload-deadbeef") << "half";
  std::ofstream(store_->TEST_data_dir() + "/ds-0000000000000000.ds") << "no row";
  Reopen();
  EXPECT_TRUE(FileSystem::Default()->ListDir(store_->TEST_tmp_dir()).empty());
  EXPECT_EQ(FileSystem::Default()->ListDir(store_->TEST_data_dir()),
            std::vector<std::string>{ds->id() + ".ds"});
  EXPECT_TRUE(store_->Load(ds->id()).ok());
}

TEST_F(StoreTest, Delete) {
  auto ds = Send(Upload(2, 2)).value();
  EXPECT_TRUE(store_->Delete(ds.id()).ok());
  EXPECT_EQ(store_->Get(ds.id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Delete(ds.id()).code(), absl::StatusCode::kNotFound);
  ExpectNothingVisible();
}

TEST_F(StoreTest, ListPaginatesNewestFirst) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(Send(Upload(1, 1)).value().id());
  std::vector<std::string> seen;
  std::string token;
  do {
    auto page = store_->List("", 2, token).value();
    EXPECT_LE(page.items.size(), 2u);
    for (auto& d : page.items) seen.push_back(d.id());
    token = page.next_page_token;
  } while (!token.empty());
  EXPECT_EQ(seen, std::vector<std::string>(ids.rbegin(), ids.rend()));
  EXPECT_EQ(store_->List("", -1, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->List("", 2, "bogus").status().code(), absl::StatusCode::kInvalidArgument);
}

// Runs `sql` on the SQLite file at `path` (outside the catalogue).
void RawSql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

// A catalogue written before idempotent creates (schema version 0) is upgraded in place: its
// rows stay, and create requests work.
TEST(CatalogTest, OldCatalogueIsUpgradedAndKeepsItsRows) {
  char tmpl[] = "/tmp/logp-catalog-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string path = dir + "/catalog.db";
  v1::Dataset old_ds;
  old_ds.set_id("ds-0000000000000001");
  old_ds.set_name("old");
  std::string hex;
  for (unsigned char c : old_ds.SerializeAsString()) hex += absl::StrFormat("%02x", c);
  RawSql(path, R"sql(
CREATE TABLE datasets (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, proto BLOB NOT NULL);
CREATE TABLE jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, state INTEGER NOT NULL,
  proto BLOB NOT NULL);
CREATE TABLE job_events (
  job_id TEXT NOT NULL, seq INTEGER NOT NULL, proto BLOB NOT NULL, PRIMARY KEY (job_id, seq));
CREATE TABLE models (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, proto BLOB NOT NULL);
)sql" + absl::StrCat("INSERT INTO datasets (id, proto) VALUES ('", old_ds.id(), "', x'", hex,
                     "');"));
  {
    auto catalog = OpenSqliteCatalog(path);
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    auto ds = (*catalog)->GetDataset(old_ds.id());
    ASSERT_TRUE(ds.ok()) << ds.status();
    EXPECT_EQ(ds->name(), "old");
    EXPECT_EQ((*catalog)->GetCreateRequest("job", "default", "r1").status().code(),
              absl::StatusCode::kNotFound);
    v1::Job job;
    job.set_id("job-1");
    const CreateRequest request{"job", "r1", "fingerprint", job.id()};
    ASSERT_TRUE((*catalog)->InsertJobForRequest(job, request).ok());
    // The same request again inserts nothing, not even the job.
    v1::Job second;
    second.set_id("job-2");
    EXPECT_EQ((*catalog)->InsertJobForRequest(second, {"job", "r1", "other", second.id()}).code(),
              absl::StatusCode::kAlreadyExists);
    EXPECT_EQ((*catalog)->GetJob(second.id()).status().code(), absl::StatusCode::kNotFound);
    // Request ids of datasets are another namespace; deleting the dataset forgets its request.
    v1::Dataset ds2;
    ds2.set_id("ds-2");
    ASSERT_TRUE((*catalog)->InsertDatasetForRequest(ds2, {"dataset", "r1", "f", ds2.id()}).ok());
    ASSERT_TRUE((*catalog)->DeleteDataset(ds2.id()).ok());
    EXPECT_EQ((*catalog)->GetCreateRequest("dataset", "default", "r1").status().code(),
              absl::StatusCode::kNotFound);
  }
  // Reopened (no second upgrade), the request is still there.
  {
    auto catalog = OpenSqliteCatalog(path);
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    auto request = (*catalog)->GetCreateRequest("job", "default", "r1");
    ASSERT_TRUE(request.ok()) << request.status();
    EXPECT_EQ(request->fingerprint, "fingerprint");
    EXPECT_EQ(request->resource_id, "job-1");
    EXPECT_TRUE((*catalog)->GetDataset(old_ds.id()).ok());
  }
  // Version 1 -> 2 (tenants): what was there belongs to "default", request ids included.
  {
    auto catalog = OpenSqliteCatalog(path);
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    EXPECT_EQ(ValueOf((*catalog)->ListDatasets(kDefaultTenant, 10, "")).items.size(), 1u);
    EXPECT_TRUE(ValueOf((*catalog)->ListDatasets("team-a", 10, "")).items.empty());
    EXPECT_EQ(ValueOf((*catalog)->ListJobs(kDefaultTenant, 10, "")).items.size(), 1u);
    EXPECT_EQ(ValueOf((*catalog)->StoredBy(kDefaultTenant)).datasets, 1);
    EXPECT_EQ((*catalog)->GetCreateRequest("job", "team-a", "r1").status().code(),
              absl::StatusCode::kNotFound);
  }
  // A catalogue from a newer logpd is refused rather than misread.
  RawSql(path, "PRAGMA user_version = 99;");
  EXPECT_EQ(OpenSqliteCatalog(path).status().code(), absl::StatusCode::kFailedPrecondition);
  system(("rm -rf " + dir).c_str());
}

// A catalogue of schema version 1 (before tenants), rows and a create request in it.
TEST(CatalogTest, VersionOneCatalogueGivesItsRowsAndRequestsToTheDefaultTenant) {
  char tmpl[] = "/tmp/logp-catalog-v1-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string path = dir + "/catalog.db";
  auto hex = [](const google::protobuf::MessageLite& m) {
    std::string out;
    for (unsigned char c : m.SerializeAsString()) out += absl::StrFormat("%02x", c);
    return out;
  };
  v1::Dataset ds;
  ds.set_id("ds-old");
  ds.set_stored_bytes(100);
  v1::Job job;
  job.set_id("job-old");
  v1::Model model;
  model.set_id("model-old");
  RawSql(path,
         absl::StrCat(R"sql(
CREATE TABLE datasets (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, proto BLOB NOT NULL);
CREATE TABLE jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, state INTEGER NOT NULL,
  proto BLOB NOT NULL);
CREATE TABLE job_events (
  job_id TEXT NOT NULL, seq INTEGER NOT NULL, proto BLOB NOT NULL, PRIMARY KEY (job_id, seq));
CREATE TABLE models (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, proto BLOB NOT NULL);
CREATE TABLE create_requests (
  kind TEXT NOT NULL, request_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
  resource_id TEXT NOT NULL, PRIMARY KEY (kind, request_id));
CREATE INDEX create_requests_by_resource ON create_requests (resource_id);
PRAGMA user_version = 1;
)sql",
                      "INSERT INTO datasets (id, proto) VALUES ('ds-old', x'", hex(ds), "');",
                      "INSERT INTO jobs (id, state, proto) VALUES ('job-old', 1, x'", hex(job),
                      "');", "INSERT INTO models (id, proto) VALUES ('model-old', x'", hex(model),
                      "');", "INSERT INTO create_requests VALUES ('job', 'r1', 'fp', 'job-old');"));
  {
    auto catalog = OpenSqliteCatalog(path);
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    EXPECT_EQ(ValueOf((*catalog)->ListDatasets(kDefaultTenant, 10, "")).items.size(), 1u);
    EXPECT_EQ(ValueOf((*catalog)->ListJobs(kDefaultTenant, 10, "")).items.size(), 1u);
    EXPECT_EQ(ValueOf((*catalog)->ListModels(kDefaultTenant, 10, "")).items.size(), 1u);
    EXPECT_TRUE(ValueOf((*catalog)->ListDatasets("team-a", 10, "")).items.empty());
    EXPECT_EQ(ValueOf((*catalog)->StoredBy(kDefaultTenant)).dataset_bytes, 100);
    const CreateRequest request =
        ValueOf((*catalog)->GetCreateRequest("job", kDefaultTenant, "r1"));
    EXPECT_EQ(request.resource_id, "job-old");
    EXPECT_EQ(request.fingerprint, "fp");
    EXPECT_EQ((*catalog)->GetCreateRequest("job", "team-a", "r1").status().code(),
              absl::StatusCode::kNotFound);
    // Another tenant may now use the same request id.
    v1::Job other;
    other.set_id("job-a");
    other.set_tenant("team-a");
    EXPECT_TRUE(
        (*catalog)->InsertJobForRequest(other, {"job", "r1", "fa", other.id(), "team-a"}).ok());
  }
  system(("rm -rf " + dir).c_str());
}

TEST(FilesTest, WriteFileDurablyReplacesWholeFiles) {
  char tmpl[] = "/tmp/logp-files-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  ASSERT_TRUE(WriteFileDurably(FileSystem::Default(), dir + "/a", "first").ok());
  ASSERT_TRUE(WriteFileDurably(FileSystem::Default(), dir + "/a", "second").ok());
  EXPECT_EQ(FileSystem::Default()->ReadFile(dir + "/a").value(), "second");
  EXPECT_EQ(FileSystem::Default()->ListDir(dir), std::vector<std::string>{"a"});
  EXPECT_EQ(FileSystem::Default()->ReadFile(dir + "/missing").status().code(),
            absl::StatusCode::kNotFound);
  system(("rm -rf " + dir).c_str());
}

}  // namespace
}  // namespace logp
