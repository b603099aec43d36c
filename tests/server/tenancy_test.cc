// Tenants in the core, through TenantView on a Core over a MemoryCatalog: two tenants cannot see,
// use or change each other's datasets, jobs and models (another tenant's id is answered exactly
// as an unknown one), an admin sees everything, request ids are per tenant, quotas refuse with
// RESOURCE_EXHAUSTED naming the quota, and the training queue is fair across tenants.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "server/core/core.h"
#include "server/core/memory_catalog.h"
#include "server/core/tenant_view.h"
#include "tests/server/test_util.h"

namespace logp {
namespace {

// Quotas a test can change while the core runs.
class TestQuotas {
 public:
  void Set(const std::string& tenant, TenantQuota quota) {
    absl::MutexLock lock(&mu_);
    quotas_[tenant] = quota;
  }
  QuotaFn Fn() {
    return [this](const std::string& tenant) {
      absl::MutexLock lock(&mu_);
      auto it = quotas_.find(tenant);
      return it == quotas_.end() ? TenantQuota{} : it->second;
    };
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, TenantQuota> quotas_ ABSL_GUARDED_BY(mu_);
};

class TenancyTest : public ::testing::Test {
 protected:
  TenancyTest() {
    options_.data_dir = dir_.path();
    options_.catalog = &catalog_;
    options_.jobs.training_slots = 1;
    options_.jobs.threads_per_slot = 1;
    options_.jobs.checkpoint_interval_seconds = 0;
    options_.quotas = quotas_.Fn();
  }
  void SetUp() override { Open(); }
  void Open() {
    core_.reset();
    absl::StatusOr<std::unique_ptr<Core>> core = Core::Open(options_);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = std::move(*core);
  }

  TenantView View(const std::string& tenant) {
    return TenantView(core_.get(), Scope::Tenant(tenant));
  }
  TenantView Admin() { return TenantView(core_.get(), Scope::AllTenants("ops")); }

  absl::StatusOr<v1::Dataset> Upload(TenantView view,
                                     const std::vector<v1::CreateDatasetRequest>& reqs) {
    size_t i = 0;
    return view.CreateDataset([&](v1::CreateDatasetRequest* r) {
      if (i == reqs.size()) return false;
      *r = reqs[i++];
      return true;
    });
  }
  v1::Dataset Store(TenantView view) {
    return ValueOf(Upload(view, UploadOf(v1::DATA_KIND_BINARY, kTinyDim, TinyRecords())));
  }
  // A job that trains until cancelled (MADE, one record per step), past its fifth step.
  v1::Job StartBlocker(TenantView view) {
    const v1::Dataset data = ValueOf(Upload(view, RandomBinaryUpload(200, 1)));
    v1::JobSpec spec;
    spec.set_dataset_id(data.id());
    spec.set_validation_fraction(0.2);
    spec.mutable_model()->set_family(v1::MODEL_FAMILY_MADE);
    spec.mutable_model()->mutable_made()->set_hidden_units(8);
    spec.set_batch_size(1);
    spec.set_epochs(10000);
    absl::StatusOr<v1::Job> job = view.CreateJob(spec, "");
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return v1::Job();
    return WaitForJob(core_->jobs(), job->id(), [](const v1::Job& j) {
      return j.state() == v1::JOB_STATE_RUNNING && j.step() >= 5;
    });
  }

  TempDir dir_;
  MemoryCatalog catalog_;
  TestQuotas quotas_;
  CoreOptions options_;
  std::unique_ptr<Core> core_;
};

// `got` is NOT_FOUND with exactly the message an unknown id of the same length gets.
::testing::AssertionResult LooksUnknown(const absl::Status& got, const absl::Status& unknown,
                                        const std::string& id, const std::string& unknown_id) {
  if (got.code() != absl::StatusCode::kNotFound) {
    return ::testing::AssertionFailure() << "expected NOT_FOUND, got " << got;
  }
  const std::string normalised = absl::StrReplaceAll(got.message(), {{id, unknown_id}});
  if (normalised != unknown.message() || unknown.code() != got.code()) {
    return ::testing::AssertionFailure() << "another tenant's id answers \"" << got.message()
                                         << "\", an unknown one \"" << unknown.message() << "\"";
  }
  return ::testing::AssertionSuccess();
}

// An id of the same shape and length as `id` that exists nowhere.
std::string UnknownLike(const std::string& id) {
  std::string out = id;
  const size_t dash = out.find('-');
  for (size_t i = dash + 1; i < out.size(); ++i) out[i] = '0';
  return out;
}

TEST_F(TenancyTest, AnotherTenantsObjectsAreAnsweredAsUnknownIds) {
  TenantView a = View("team-a");
  TenantView b = View("team-b");
  const v1::Dataset ds = Store(a);
  EXPECT_EQ(ds.tenant(), "team-a");
  const v1::Job created = ValueOf(a.CreateJob(TinyBernoulliSpec(ds.id()), ""));
  EXPECT_EQ(created.tenant(), "team-a");
  const v1::Job job = WaitForEnd(core_->jobs(), created.id());
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.error();
  const v1::Model model = ValueOf(a.GetModel(job.model_id()));
  EXPECT_EQ(model.tenant(), "team-a");

  const std::string ds0 = UnknownLike(ds.id()), job0 = UnknownLike(job.id()),
                    model0 = UnknownLike(model.id());
  // Every call on an id, by B, on A's object and on an unknown id.
  EXPECT_TRUE(
      LooksUnknown(b.GetDataset(ds.id()).status(), b.GetDataset(ds0).status(), ds.id(), ds0));
  EXPECT_TRUE(LooksUnknown(b.DeleteDataset(ds.id()), b.DeleteDataset(ds0), ds.id(), ds0));
  EXPECT_TRUE(LooksUnknown(b.GetJob(job.id()).status(), b.GetJob(job0).status(), job.id(), job0));
  EXPECT_TRUE(
      LooksUnknown(b.CancelJob(job.id()).status(), b.CancelJob(job0).status(), job.id(), job0));
  EXPECT_TRUE(LooksUnknown(b.GetModel(model.id()).status(), b.GetModel(model0).status(), model.id(),
                           model0));
  EXPECT_TRUE(LooksUnknown(b.ResolveModel(model.id(), "").status(),
                           b.ResolveModel(model0, "").status(), model.id(), model0));
  EXPECT_TRUE(LooksUnknown(b.ResolveModel("", job.id()).status(), b.ResolveModel("", job0).status(),
                           job.id(), job0));
  const CallControl call;
  v1::ScoreRequest score;
  *score.mutable_records() = TinyBlock();
  score.set_model_id(model.id());
  v1::ScoreRequest score0 = score;
  score0.set_model_id(model0);
  EXPECT_TRUE(LooksUnknown(b.Score(score, call).status(), b.Score(score0, call).status(),
                           model.id(), model0));
  score.clear_model_id();
  score.set_job_id(job.id());
  score0.clear_model_id();
  score0.set_job_id(job0);
  EXPECT_TRUE(
      LooksUnknown(b.Score(score, call).status(), b.Score(score0, call).status(), job.id(), job0));
  // Evaluate: B's own model on A's dataset, and A's model on B's dataset.
  const v1::Dataset b_ds = Store(b);
  const v1::Job b_job =
      WaitForEnd(core_->jobs(), ValueOf(b.CreateJob(TinyBernoulliSpec(b_ds.id()), "")).id());
  ASSERT_EQ(b_job.state(), v1::JOB_STATE_SUCCEEDED);
  v1::EvaluateRequest evaluate;
  evaluate.set_model_id(b_job.model_id());
  evaluate.set_dataset_id(ds.id());
  v1::EvaluateRequest evaluate0 = evaluate;
  evaluate0.set_dataset_id(ds0);
  EXPECT_TRUE(LooksUnknown(b.Evaluate(evaluate, call).status(),
                           b.Evaluate(evaluate0, call).status(), ds.id(), ds0));
  evaluate.set_model_id(model.id());
  evaluate.set_dataset_id(b_ds.id());
  evaluate0 = evaluate;
  evaluate0.set_model_id(model0);
  EXPECT_TRUE(LooksUnknown(b.Evaluate(evaluate, call).status(),
                           b.Evaluate(evaluate0, call).status(), model.id(), model0));
  v1::SampleRequest sample;
  sample.set_model_id(model.id());
  sample.set_num_samples(3);
  v1::SampleRequest sample0 = sample;
  sample0.set_model_id(model0);
  int written = 0;
  auto write = [&](const v1::SampleResponse&) { return ++written > 0; };
  EXPECT_TRUE(LooksUnknown(b.Sample(sample, write, call), b.Sample(sample0, write, call),
                           model.id(), model0));
  EXPECT_EQ(written, 0);
  v1::ExportModelRequest export_model;
  export_model.set_id(model.id());
  v1::ExportModelRequest export_model0;
  export_model0.set_id(model0);
  EXPECT_TRUE(LooksUnknown(b.ExportModel(export_model).status(),
                           b.ExportModel(export_model0).status(), model.id(), model0));
  EXPECT_TRUE(a.ExportModel(export_model).ok());
  // A job naming A's dataset, for training or for validation.
  v1::JobSpec spec = TinyBernoulliSpec(ds.id());
  spec.set_validation_dataset_id(b_ds.id());
  EXPECT_TRUE(LooksUnknown(b.CreateJob(spec, "").status(),
                           b.CreateJob(TinyBernoulliSpec(ds0), "").status(), ds.id(), ds0));
  spec = TinyBernoulliSpec(b_ds.id());
  spec.set_validation_dataset_id(ds.id());
  EXPECT_TRUE(Is(b.CreateJob(spec, "").status(), absl::StatusCode::kNotFound, ds.id()));

  // Nothing of A's was touched; A still uses it all.
  EXPECT_TRUE(a.GetDataset(ds.id()).ok());
  EXPECT_TRUE(a.ResolveModel(model.id(), "").ok());
  v1::ScoreRequest own;
  *own.mutable_records() = TinyBlock();
  own.set_model_id(model.id());
  EXPECT_TRUE(a.Score(own, call).ok());
  EXPECT_TRUE(b.Score(
                   [&] {
                     v1::ScoreRequest r = own;
                     r.set_model_id(b_job.model_id());
                     return r;
                   }(),
                   call)
                  .ok());
}

TEST_F(TenancyTest, ListingsShowOnlyTheCallersOwnAndAnAdminSeesEveryone) {
  TenantView a = View("team-a");
  TenantView b = View("team-b");
  const v1::Dataset a1 = Store(a), a2 = Store(a), b1 = Store(b);
  const v1::Job ja =
      WaitForEnd(core_->jobs(), ValueOf(a.CreateJob(TinyBernoulliSpec(a1.id()), "")).id());
  const v1::Job jb =
      WaitForEnd(core_->jobs(), ValueOf(b.CreateJob(TinyBernoulliSpec(b1.id()), "")).id());
  auto ids = [](const auto& items) {
    std::vector<std::string> out;
    for (const auto& i : items) out.push_back(i.id());
    return out;
  };
  EXPECT_EQ(ids(ValueOf(a.ListDatasets(0, "")).items),
            (std::vector<std::string>{a2.id(), a1.id()}));
  EXPECT_EQ(ids(ValueOf(b.ListDatasets(0, "")).items), (std::vector<std::string>{b1.id()}));
  EXPECT_EQ(ids(ValueOf(a.ListJobs(0, "")).items), (std::vector<std::string>{ja.id()}));
  EXPECT_EQ(ids(ValueOf(b.ListJobs(0, "")).items), (std::vector<std::string>{jb.id()}));
  EXPECT_EQ(ids(ValueOf(a.ListModels(0, "")).items), (std::vector<std::string>{ja.model_id()}));
  EXPECT_EQ(ids(ValueOf(b.ListModels(0, "")).items), (std::vector<std::string>{jb.model_id()}));
  EXPECT_TRUE(ValueOf(View("team-c").ListDatasets(0, "")).items.empty());
  // Paging A's datasets one at a time never shows B's.
  const Page<v1::Dataset> first = ValueOf(a.ListDatasets(1, ""));
  ASSERT_EQ(first.items.size(), 1u);
  ASSERT_FALSE(first.next_page_token.empty());
  EXPECT_EQ(ids(ValueOf(a.ListDatasets(1, first.next_page_token)).items),
            (std::vector<std::string>{a1.id()}));

  TenantView admin = Admin();
  EXPECT_EQ(ValueOf(admin.ListDatasets(0, "")).items.size(), 3u);
  EXPECT_EQ(ValueOf(admin.ListJobs(0, "")).items.size(), 2u);
  EXPECT_TRUE(admin.GetDataset(b1.id()).ok());
  EXPECT_EQ(ValueOf(admin.GetJob(ja.id())).tenant(), "team-a");
  EXPECT_TRUE(admin.ResolveModel(jb.model_id(), "").ok());
  // An admin creates for its own tenant, from anyone's dataset.
  const v1::Job by_admin = ValueOf(admin.CreateJob(TinyBernoulliSpec(a1.id()), ""));
  EXPECT_EQ(by_admin.tenant(), "ops");
  EXPECT_TRUE(Is(a.GetJob(by_admin.id()).status(), absl::StatusCode::kNotFound));
  WaitForEnd(core_->jobs(), by_admin.id());
  ASSERT_TRUE(admin.DeleteDataset(b1.id()).ok());
  EXPECT_TRUE(Is(b.GetDataset(b1.id()).status(), absl::StatusCode::kNotFound));
}

TEST_F(TenancyTest, ObjectsStoredBeforeTenantsBelongToDefault) {
  v1::Dataset legacy = Store(View(kDefaultTenant));
  legacy.clear_tenant();  // as a row written before tenants
  ASSERT_TRUE(catalog_.DeleteDataset(legacy.id()).ok());
  ASSERT_TRUE(catalog_.InsertDataset(legacy).ok());
  EXPECT_EQ(ValueOf(View(kDefaultTenant).GetDataset(legacy.id())).tenant(), kDefaultTenant);
  EXPECT_EQ(ValueOf(View(kDefaultTenant).ListDatasets(0, "")).items.size(), 1u);
  EXPECT_EQ(ValueOf(View(kDefaultTenant).ListDatasets(0, "")).items[0].tenant(), kDefaultTenant);
  EXPECT_TRUE(Is(View("team-a").GetDataset(legacy.id()).status(), absl::StatusCode::kNotFound));
}

TEST_F(TenancyTest, RequestIdsArePerTenant) {
  TenantView a = View("team-a");
  TenantView b = View("team-b");
  const v1::Dataset da = Store(a), db = Store(b);
  const v1::Job ja = ValueOf(a.CreateJob(TinyBernoulliSpec(da.id()), "nightly"));
  // B's request with the same id is B's own: a new job, not A's.
  const v1::Job jb = ValueOf(b.CreateJob(TinyBernoulliSpec(db.id()), "nightly"));
  EXPECT_NE(ja.id(), jb.id());
  EXPECT_EQ(jb.tenant(), "team-b");
  // Each tenant's retry returns its own job.
  EXPECT_EQ(ValueOf(a.CreateJob(TinyBernoulliSpec(da.id()), "nightly")).id(), ja.id());
  EXPECT_EQ(ValueOf(b.CreateJob(TinyBernoulliSpec(db.id()), "nightly")).id(), jb.id());
  // B cannot learn A's job by replaying A's request (A's dataset is unknown to B).
  EXPECT_TRUE(Is(b.CreateJob(TinyBernoulliSpec(da.id()), "nightly").status(),
                 absl::StatusCode::kAlreadyExists));
  // Uploads too.
  auto upload = UploadOf(v1::DATA_KIND_BINARY, kTinyDim, TinyRecords());
  upload[0].mutable_header()->set_request_id("u1");
  const v1::Dataset ua = ValueOf(Upload(a, upload));
  const v1::Dataset ub = ValueOf(Upload(b, upload));
  EXPECT_NE(ua.id(), ub.id());
  EXPECT_EQ(ValueOf(Upload(b, upload)).id(), ub.id());
  WaitForEnd(core_->jobs(), ja.id());
  WaitForEnd(core_->jobs(), jb.id());
}

TEST_F(TenancyTest, DatasetAndStoredBytesQuotas) {
  TenantQuota quota;
  quota.datasets = 2;
  quotas_.Set("team-a", quota);
  TenantView a = View("team-a");
  const v1::Dataset first = Store(a);
  Store(a);
  EXPECT_TRUE(Is(Upload(a, UploadOf(v1::DATA_KIND_BINARY, kTinyDim, TinyRecords())).status(),
                 absl::StatusCode::kResourceExhausted,
                 "tenant 'team-a' is at its quota datasets: limit 2, in use 2"));
  Store(View("team-b"));  // others are not limited
  ASSERT_TRUE(a.DeleteDataset(first.id()).ok());
  const v1::Dataset again = Store(a);  // a place freed is a place taken
  EXPECT_FALSE(again.id().empty());

  // stored_bytes: what is stored plus the upload, refused at the header.
  const int64_t each = static_cast<int64_t>(again.stored_bytes());
  quota.datasets.reset();
  quota.stored_bytes = 3 * each - 1;
  quotas_.Set("team-a", quota);
  EXPECT_TRUE(Is(Upload(a, UploadOf(v1::DATA_KIND_BINARY, kTinyDim, TinyRecords())).status(),
                 absl::StatusCode::kResourceExhausted,
                 absl::StrCat("quota stored_bytes: limit ", 3 * each - 1, " bytes, in use ",
                              2 * each, " bytes, this upload ", each, " bytes")));
  quota.stored_bytes = 3 * each;
  quotas_.Set("team-a", quota);
  Store(a);
  // At the limit, a job (whose model would add bytes) is refused too.
  EXPECT_TRUE(Is(a.CreateJob(TinyBernoulliSpec(again.id()), "").status(),
                 absl::StatusCode::kResourceExhausted, "quota stored_bytes"));
  EXPECT_TRUE(ValueOf(a.ListJobs(0, "")).items.empty());
}

// Uploads that pass the header check together are counted again at the commit: 8 at once
// against a quota of 3 datasets store exactly 3.
TEST_F(TenancyTest, ConcurrentUploadsCannotOverrunTheDatasetsQuota) {
  TenantQuota quota;
  quota.datasets = 3;
  quotas_.Set("team-a", quota);
  std::vector<absl::Status> results(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] {
      results[i] =
          Upload(View("team-a"), RandomBinaryUpload(2000, static_cast<uint32_t>(i))).status();
    });
  }
  for (auto& t : threads) t.join();
  int stored = 0;
  for (const absl::Status& st : results) {
    if (st.ok()) {
      ++stored;
    } else {
      EXPECT_TRUE(Is(st, absl::StatusCode::kResourceExhausted, "quota datasets: limit 3"));
    }
  }
  EXPECT_EQ(stored, 3);
  EXPECT_EQ(ValueOf(View("team-a").ListDatasets(0, "")).items.size(), 3u);
}

TEST_F(TenancyTest, QueuedJobsQuota) {
  TenantView a = View("team-a");
  TenantView b = View("team-b");
  const v1::Job blocker = StartBlocker(View("ops"));
  ASSERT_EQ(blocker.state(), v1::JOB_STATE_RUNNING);
  TenantQuota quota;
  quota.queued_jobs = 2;
  quotas_.Set("team-a", quota);
  const v1::Dataset da = Store(a), db = Store(b);
  const v1::Job q1 = ValueOf(a.CreateJob(TinyBernoulliSpec(da.id()), ""));
  ValueOf(a.CreateJob(TinyBernoulliSpec(da.id()), ""));
  EXPECT_TRUE(Is(a.CreateJob(TinyBernoulliSpec(da.id()), "").status(),
                 absl::StatusCode::kResourceExhausted,
                 "tenant 'team-a' is at its quota queued_jobs: limit 2, in use 2"));
  EXPECT_TRUE(b.CreateJob(TinyBernoulliSpec(db.id()), "").ok());
  ASSERT_TRUE(a.CancelJob(q1.id()).ok());
  EXPECT_TRUE(a.CreateJob(TinyBernoulliSpec(da.id()), "").ok());
  ASSERT_TRUE(core_->jobs().CancelJob(blocker.id()).ok());
}

// The running_jobs quota caps how many of a tenant's jobs train at once; the others wait queued,
// and another tenant's job takes the free slot.
TEST_F(TenancyTest, RunningJobsQuotaKeepsJobsQueued) {
  options_.jobs.training_slots = 2;
  Open();
  TenantQuota quota;
  quota.running_jobs = 1;
  quotas_.Set("team-a", quota);
  TenantView a = View("team-a");
  const v1::Job first = StartBlocker(a);
  ASSERT_EQ(first.state(), v1::JOB_STATE_RUNNING);
  const v1::Dataset da = Store(a);
  const v1::Job second = ValueOf(a.CreateJob(TinyBernoulliSpec(da.id()), ""));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(ValueOf(a.GetJob(second.id())).state(), v1::JOB_STATE_QUEUED);
  // Team B's job runs on the free slot meanwhile.
  TenantView b = View("team-b");
  const v1::Job jb =
      WaitForEnd(core_->jobs(), ValueOf(b.CreateJob(TinyBernoulliSpec(Store(b).id()), "")).id());
  EXPECT_EQ(jb.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(ValueOf(a.GetJob(second.id())).state(), v1::JOB_STATE_QUEUED);
  // Raising the quota (a reload of the quotas file) lets it start.
  quota.running_jobs = 2;
  quotas_.Set("team-a", quota);
  EXPECT_EQ(WaitForEnd(core_->jobs(), second.id()).state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_TRUE(a.CancelJob(first.id()).ok());
}

// Tenant A queues 5 jobs, then tenant B queues 1: B's job starts second, not sixth.
TEST_F(TenancyTest, QueueIsRoundRobinAcrossTenants) {
  TenantView a = View("team-a");
  TenantView b = View("team-b");
  const v1::Job blocker = StartBlocker(View("ops"));
  ASSERT_EQ(blocker.state(), v1::JOB_STATE_RUNNING);
  const v1::Dataset da = Store(a), db = Store(b);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i)
    ids.push_back(ValueOf(a.CreateJob(TinyBernoulliSpec(da.id()), "")).id());
  ids.push_back(ValueOf(b.CreateJob(TinyBernoulliSpec(db.id()), "")).id());
  ASSERT_TRUE(core_->jobs().CancelJob(blocker.id()).ok());
  std::vector<std::pair<absl::Time, std::string>> starts;
  for (const std::string& id : ids) {
    const v1::Job done = WaitForEnd(core_->jobs(), id);
    ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
    starts.emplace_back(absl::FromUnixSeconds(done.start_time().seconds()) +
                            absl::Nanoseconds(done.start_time().nanos()),
                        OwnerOf(done.tenant()));
  }
  std::sort(starts.begin(), starts.end());
  std::vector<std::string> order;
  for (const auto& [time, tenant] : starts) order.push_back(tenant);
  // After the blocker ("ops"), A's oldest job, then B's (B had never started one), then A's rest.
  EXPECT_EQ(order,
            (std::vector<std::string>{"team-a", "team-b", "team-a", "team-a", "team-a", "team-a"}));
  // Within A, creation order.
  std::vector<std::pair<absl::Time, std::string>> a_starts;
  for (int i = 0; i < 5; ++i) {
    const v1::Job j = ValueOf(a.GetJob(ids[i]));
    a_starts.emplace_back(
        absl::FromUnixSeconds(j.start_time().seconds()) + absl::Nanoseconds(j.start_time().nanos()),
        j.id());
  }
  std::sort(a_starts.begin(), a_starts.end());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(a_starts[i].second, ids[i]);
}

}  // namespace
}  // namespace logp
