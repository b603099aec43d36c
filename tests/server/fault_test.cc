// Storage faults, injected through the FileSystem seam (FaultyFileSystem) into a Core with a real
// SQLite catalogue and no network: each failure gets its exact status, nothing stored changes,
// and everything else keeps working.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/core/core.h"
#include "server/core/faulty_catalog.h"
#include "server/core/faulty_file_system.h"
#include "tests/server/test_util.h"

namespace logp {
namespace {

using Fault = FaultyFileSystem::Fault;
using Op = FaultyFileSystem::Op;

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sqlite = OpenSqliteCatalog(dir_ + "/catalog.db");
    ASSERT_TRUE(sqlite.ok()) << sqlite.status();
    sqlite_ = std::move(*sqlite);
    catalog_ = std::make_unique<FaultyCatalog>(sqlite_.get());
    Open();
  }
  void Open() {
    core_.reset();
    CoreOptions o;
    o.data_dir = dir_;
    o.fs = &fs_;
    o.catalog = catalog_.get();
    o.jobs.checkpoint_interval_steps = checkpoint_interval_steps_;
    o.jobs.checkpoint_interval_seconds = 0;
    o.jobs.progress_interval_seconds = 0.05;
    auto core = Core::Open(o);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = std::move(*core);
  }
  absl::StatusOr<v1::Dataset> Store(int64_t n, uint32_t seed = 1) {
    return StoreUpload(core_->datasets(), RandomBinaryUpload(n, seed));
  }
  v1::JobSpec Spec(const std::string& dataset_id, int64_t max_steps) {
    v1::JobSpec spec;
    spec.set_dataset_id(dataset_id);
    spec.set_validation_fraction(0.2);
    spec.mutable_model()->set_family(v1::MODEL_FAMILY_MADE);
    spec.mutable_model()->mutable_made()->set_hidden_units(16);
    spec.set_batch_size(1);
    spec.set_epochs(1000);
    spec.set_max_steps(max_steps);
    spec.set_seed(3);
    return spec;
  }
  v1::Job WaitFor(const std::string& id, const std::function<bool(const v1::Job&)>& done) {
    return WaitForJob(core_->jobs(), id, done);
  }
  v1::Job WaitForEnd(const std::string& id) { return logp::WaitForEnd(core_->jobs(), id); }
  std::vector<v1::JobEvent> Events(const std::string& id) { return AllEvents(core_->jobs(), id); }
  std::vector<std::string> Files(const std::string& sub) {
    return FileSystem::Default()->ListDir(dir_ + "/" + sub);
  }
  int64_t Datasets() { return core_->datasets().List("", 100, "").value().items.size(); }
  int64_t Models() { return core_->models().List("", 100, "").value().items.size(); }

  int64_t checkpoint_interval_steps_ = 0;
  // Destroyed in reverse: the core, the catalogues, then the directory they used.
  TempDir tmp_;
  const std::string dir_ = tmp_.path();
  FaultyFileSystem fs_;
  std::unique_ptr<Catalog> sqlite_;
  std::unique_ptr<FaultyCatalog> catalog_;
  std::unique_ptr<Core> core_;
};

// An upload that runs out of space, or whose fsync or rename fails, stores nothing: no row, no
// dataset file, no temporary file; the next upload works.
TEST_F(FaultTest, UploadStorageFailuresLeaveNothing) {
  struct Case {
    const char* name;
    Fault fault;
    absl::StatusCode code;
    const char* message;
  };
  std::vector<Case> cases = {
      {"ENOSPC after 1,000 bytes",
       {Op::kWrite, "upload-", ENOSPC, 1000},
       absl::StatusCode::kResourceExhausted,
       "no space left on device"},
      {"ENOSPC on the header",
       {Op::kWrite, "upload-", ENOSPC, 0},
       absl::StatusCode::kResourceExhausted,
       "no space left on device"},
      {"create fails",
       {Op::kCreate, "upload-", ENOSPC},
       absl::StatusCode::kResourceExhausted,
       "no space left on device"},
      {"fsync fails", {Op::kSync, "upload-", EIO}, absl::StatusCode::kInternal, "storing"},
      {"rename fails", {Op::kRename, "upload-", EIO}, absl::StatusCode::kInternal, "storing"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    fs_.Inject(c.fault);
    EXPECT_TRUE(Is(Store(2000).status(), c.code, c.message));
    fs_.Clear();
    EXPECT_EQ(Datasets(), 0);
    EXPECT_TRUE(Files("tmp").empty());
    EXPECT_TRUE(Files("datasets").empty());
  }
  ASSERT_TRUE(Store(2000).ok());
  EXPECT_EQ(Datasets(), 1);
}

// A checkpoint that cannot be written is a warning on the job's stream; training goes on, the
// next checkpoint is written, and while checkpoints keep failing the last good one stays the one
// a restart resumes from.
TEST_F(FaultTest, CheckpointFailureWarnsTrainingGoesOnAndTheLastGoodOneResumes) {
  checkpoint_interval_steps_ = 50;
  Open();
  auto ds = Store(400);
  ASSERT_TRUE(ds.ok()) << ds.status();
  // The second checkpoint (step 100) runs out of space; the third is written.
  fs_.Inject({Op::kWrite, "/checkpoints/", ENOSPC, 100, {}, /*skip=*/1, /*times=*/1});
  auto job = core_->jobs().CreateJob(Scope::AllTenants(), Spec(ds->id(), 100000));
  ASSERT_TRUE(job.ok()) << job.status();
  v1::Job j = WaitFor(job->id(), [](const v1::Job& j) { return j.checkpoint_step() >= 150; });
  ASSERT_EQ(j.state(), v1::JOB_STATE_RUNNING);
  int warnings = 0;
  for (const auto& e : Events(job->id())) {
    if (!e.has_warning()) continue;
    ++warnings;
    EXPECT_EQ(e.warning().message(),
              "checkpoint at step 100 not written: no space left on device; training goes on, a "
              "restart resumes from the checkpoint at step 50");
  }
  EXPECT_EQ(warnings, 1);
  // From now on every checkpoint fails (the suspend's too): the restart resumes from the last
  // one written.
  fs_.Inject({Op::kCreate, "/checkpoints/", ENOSPC});
  const int64_t at_inject = core_->jobs().GetJob(job->id())->step();
  WaitFor(job->id(), [&](const v1::Job& j) { return j.step() >= at_inject + 200; });
  const int64_t good = core_->jobs().GetJob(job->id())->checkpoint_step();
  Open();  // graceful: the running job is suspended
  fs_.Clear();
  // The RUNNING event may land just after the job row says RUNNING: poll the events.
  const std::string resuming = absl::StrCat("resuming from the checkpoint at step ", good);
  bool resumed_from_good = false;
  for (int i = 0; i < 2000 && !resumed_from_good; ++i) {
    for (const auto& e : Events(job->id())) {
      if (e.has_state_change() && e.state_change().state() == v1::JOB_STATE_RUNNING &&
          e.seq() > 3) {
        EXPECT_EQ(e.state_change().message(), resuming);
        resumed_from_good = true;
      }
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(resumed_from_good) << "did not resume from step " << good;
  EXPECT_TRUE(core_->jobs().CancelJob(job->id()).ok());
  EXPECT_EQ(WaitForEnd(job->id()).state(), v1::JOB_STATE_CANCELLED);
}

// A model that cannot be written fails its job with the reason; no model row, no model file.
TEST_F(FaultTest, PublishFailureFailsTheJobAndLeavesNoModel) {
  auto ds = Store(400);
  ASSERT_TRUE(ds.ok()) << ds.status();
  struct Case {
    Fault fault;
    const char* error;
  };
  for (const Case& c :
       std::vector<Case>{{{Op::kWrite, "/models/", ENOSPC, 4096},
                          "publishing the model: no space left on device"},
                         {{Op::kSync, "/models/", EIO}, "publishing the model: I/O error"},
                         {{Op::kRename, "/models/", EIO}, "publishing the model: I/O error"}}) {
    SCOPED_TRACE(c.error);
    fs_.Inject(c.fault);
    auto job = core_->jobs().CreateJob(Scope::AllTenants(), Spec(ds->id(), 20));
    ASSERT_TRUE(job.ok()) << job.status();
    const v1::Job end = WaitForEnd(job->id());
    fs_.Clear();
    EXPECT_EQ(end.state(), v1::JOB_STATE_FAILED);
    EXPECT_TRUE(absl::StartsWith(end.error(), c.error)) << end.error();
    EXPECT_TRUE(end.model_id().empty());
    EXPECT_EQ(Models(), 0);
    EXPECT_TRUE(Files("models").empty());
  }
  auto job = core_->jobs().CreateJob(Scope::AllTenants(), Spec(ds->id(), 20));
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(WaitForEnd(job->id()).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(Models(), 1);
}

// A stored file that cannot be read, comes back short or has a flipped bit is DATA_LOSS naming
// the object; the other objects keep loading.
TEST_F(FaultTest, UnreadableOrCorruptFilesAreDataLossNamingTheObject) {
  auto a = Store(400, 1), b = Store(400, 2);
  ASSERT_TRUE(a.ok() && b.ok());
  auto ja = core_->jobs().CreateJob(Scope::AllTenants(), Spec(a->id(), 20));
  ASSERT_TRUE(ja.ok());
  const std::string ma = WaitForEnd(ja->id()).model_id();
  auto jb = core_->jobs().CreateJob(Scope::AllTenants(), Spec(b->id(), 20));
  ASSERT_TRUE(jb.ok());
  const std::string mb = WaitForEnd(jb->id()).model_id();
  ASSERT_FALSE(ma.empty() || mb.empty());
  struct Case {
    Fault fault;
    const char* message;
  };
  using RF = FaultyFileSystem::ReadFault;
  for (const Case& c : std::vector<Case>{{{Op::kRead, "", EIO, 0, RF::kError}, "cannot be read"},
                                         {{Op::kRead, "", EIO, 100, RF::kShort}, ""},
                                         {{Op::kRead, "", EIO, 0, RF::kFlipBit}, ""}}) {
    Open();  // nothing cached
    Fault f = c.fault;
    f.path_contains = ma;
    fs_.Inject(f);
    f.path_contains = a->id();
    fs_.Inject(f);
    auto model = core_->ResolveModel(ma, "");
    EXPECT_TRUE(Is(model.status(), absl::StatusCode::kDataLoss, "model " + ma));
    auto data = core_->datasets().Load(a->id());
    EXPECT_TRUE(Is(data.status(), absl::StatusCode::kDataLoss, "dataset " + a->id()));
    EXPECT_TRUE(absl::StrContains(data.status().message(), c.message)) << data.status();
    // The others are unaffected.
    EXPECT_TRUE(core_->ResolveModel(mb, "").ok());
    EXPECT_TRUE(core_->datasets().Load(b->id()).ok());
    fs_.Clear();
    EXPECT_TRUE(core_->ResolveModel(ma, "").ok());
    EXPECT_TRUE(core_->datasets().Load(a->id()).ok());
  }
}

// The same for files really damaged on disk: a model file with one byte changed, a dataset file
// cut short. Nothing is repaired or deleted: the rest keeps serving.
TEST_F(FaultTest, DamagedFilesOnDiskAreDetectedNotTrusted) {
  auto a = Store(400, 1);
  ASSERT_TRUE(a.ok());
  auto job = core_->jobs().CreateJob(Scope::AllTenants(), Spec(a->id(), 20));
  ASSERT_TRUE(job.ok());
  const std::string model = WaitForEnd(job->id()).model_id();
  ASSERT_FALSE(model.empty());
  core_.reset();
  {
    const std::string path = dir_ + "/models/" + model + ".model";
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const auto size = static_cast<std::streamoff>(f.tellg());
    f.seekp(size - 10);
    char c;
    f.seekg(size - 10);
    f.read(&c, 1);
    c ^= 0x01;
    f.seekp(size - 10);
    f.write(&c, 1);
  }
  ASSERT_EQ(truncate((dir_ + "/datasets/" + a->id() + ".ds").c_str(), 100), 0);
  Open();
  EXPECT_TRUE(Is(core_->ResolveModel(model, "").status(), absl::StatusCode::kDataLoss,
                 "checksum mismatch"));
  EXPECT_TRUE(
      Is(core_->datasets().Load(a->id()).status(), absl::StatusCode::kDataLoss, "content hash"));
  EXPECT_TRUE(core_->models().Get(model).ok());  // the rows stay: nothing is deleted silently
  auto b = Store(400, 2);
  EXPECT_TRUE(b.ok()) << b.status();
}

// The catalogue failing (SQLite full: RESOURCE_EXHAUSTED; an I/O error: UNAVAILABLE) leaves
// nothing half-committed: no dataset file without its row, no job that runs without its row, no
// model file without its row; events it refused are written later, with no gap.
TEST_F(FaultTest, CatalogueFailuresLeaveNothingHalfCommitted) {
  const absl::Status full =
      absl::ResourceExhaustedError("catalogue: database or disk is full (no space left on device)");
  const absl::Status io = absl::UnavailableError("catalogue: disk I/O error");
  // Uploads: the file is written, the row is refused, the file goes.
  catalog_->Fail("InsertDataset", full, 1);
  EXPECT_TRUE(
      Is(Store(400).status(), absl::StatusCode::kResourceExhausted, "no space left on device"));
  catalog_->Fail("InsertDataset", io, 1);
  EXPECT_TRUE(Is(Store(400).status(), absl::StatusCode::kUnavailable, "I/O error"));
  EXPECT_EQ(Datasets(), 0);
  EXPECT_TRUE(Files("datasets").empty());
  EXPECT_TRUE(Files("tmp").empty());
  auto ds = Store(400);
  ASSERT_TRUE(ds.ok()) << ds.status();
  // A job whose row cannot be written does not exist and never runs.
  catalog_->Fail("InsertJob", full, 1);
  EXPECT_TRUE(Is(core_->jobs().CreateJob(Scope::AllTenants(), Spec(ds->id(), 20)).status(),
                 absl::StatusCode::kResourceExhausted, "no space left on device"));
  EXPECT_TRUE(core_->jobs().ListJobs("", 100, "")->items.empty());
  // A model whose row is refused once is published by the retry of the job's last write, once.
  catalog_->Fail("InsertModel", io, 1);
  auto retried = core_->jobs().CreateJob(Scope::AllTenants(), Spec(ds->id(), 20));
  ASSERT_TRUE(retried.ok()) << retried.status();
  const v1::Job published = WaitForEnd(retried->id());
  EXPECT_EQ(published.state(), v1::JOB_STATE_SUCCEEDED) << published.error();
  EXPECT_EQ(Models(), 1);
  EXPECT_EQ(Files("models").size(), 2u);  // <id>.model and <id>.reference
  // A model whose row can never be written (every retry refused): the job fails, the file goes.
  catalog_->Fail("InsertModel", io);
  auto failing = core_->jobs().CreateJob(Scope::AllTenants(), Spec(ds->id(), 20));
  ASSERT_TRUE(failing.ok()) << failing.status();
  const v1::Job failed = WaitForEnd(failing->id());
  catalog_->Clear();
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_TRUE(absl::StrContains(failed.error(), "I/O error")) << failed.error();
  EXPECT_EQ(Models(), 1);
  // The failed job's files go right after its FAILED state is written (which WaitForEnd sees).
  for (int i = 0; i < 200 && Files("models").size() != 2u; ++i)
    absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(Files("models").size(), 2u);  // the published one's two; none of the failed job's
  // Events refused five times in a row are written with later ones: the stored history of the
  // finished job, read back after a restart, runs 1..N with nothing missing.
  catalog_->Fail("AppendEvents", full, 5);
  auto job = core_->jobs().CreateJob(Scope::AllTenants(), Spec(ds->id(), 300));
  ASSERT_TRUE(job.ok()) << job.status();
  const v1::Job done = WaitForEnd(job->id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  catalog_->Clear();
  Open();
  const std::vector<v1::JobEvent> stored = sqlite_->ListEvents(job->id(), 1).value();
  ASSERT_EQ(static_cast<int64_t>(stored.size()), done.last_seq());
  for (size_t i = 0; i < stored.size(); ++i)
    EXPECT_EQ(stored[i].seq(), static_cast<int64_t>(i + 1));
  EXPECT_EQ(sqlite_->GetJob(job->id())->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(core_->jobs().GetJob(failed.id())->state(), v1::JOB_STATE_FAILED);
}

}  // namespace
}  // namespace logp
