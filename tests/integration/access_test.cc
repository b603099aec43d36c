// Authentication and authorization through a real in-process logpd on 127.0.0.1:0 with a tokens
// file: the full matrix of every RPC x {no credentials, a wrong token, reader, writer, admin,
// another tenant's writer} with the exact code each gets; two tenants that cannot reach each
// other's objects by id or by guessing; the audit log of every mutating call; a token removed
// from the file stops working without a restart; health and reflection stay open.
//
// Every call is sent as raw bytes (RawCall) with the `authorization` header set by hand, so the
// test does not depend on the client library's handling of credentials.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "server/auth/audit.h"
#include "server/auth/credentials.h"
#include "server/auth/quotas.h"
#include "server/core/core.h"
#include "server/grpc/server.h"
#include "tests/integration/raw_call.h"
#include "tests/integration/test_catalog.h"
#include "tests/server/test_util.h"

namespace logp {
namespace {

constexpr char kReaderA[] = "reader-a-7f3e9c21d4b8a605";
constexpr char kWriterA[] = "writer-a-1c9d2e7b40f3a8e6";
constexpr char kAdmin[] = "admin-ops-5b8e3f0a9c2d71e4";
constexpr char kWriterB[] = "writer-b-e2a7c4f19b3d8065";
constexpr char kWriterQ[] = "writer-q-93c0b7e2a5d14f68";     // a tenant under quotas
constexpr char kWrongToken[] = "writer-a-1c9d2e7b40f3a8e7";  // one character off kWriterA

std::string HexDigest(const std::string& token) {
  const Sha256Digest digest = Sha256(token);
  std::string hex;
  for (uint8_t b : digest) absl::StrAppend(&hex, absl::Hex(b, absl::kZeroPad2));
  return hex;
}

// The tokens file: A's reader and writer, an admin given by its digest, B's writer.
std::string TokensFile(bool with_writer_b = true) {
  std::string text =
      absl::StrCat("# logp test credentials\n", kReaderA, " team-a reader\n", kWriterA,
                   " team-a writer  # the writer\n", "sha256:", HexDigest(kAdmin), " ops admin\n");
  if (with_writer_b) absl::StrAppend(&text, kWriterB, " team-b writer\n");
  absl::StrAppend(&text, kWriterQ, " team-q writer\n");
  return text;
}

void WriteFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << text;
  ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0);
}

std::vector<std::string> UploadMessages(const std::vector<v1::CreateDatasetRequest>& upload) {
  std::vector<std::string> out;
  for (const auto& r : upload) out.push_back(r.SerializeAsString());
  return out;
}

// Who calls: the metadata sent.
struct Caller {
  std::string name;
  std::vector<std::pair<std::string, std::string>> metadata;
};
Caller WithToken(const std::string& name, const std::string& token) {
  return {name, {{"authorization", absl::StrCat("Bearer ", token)}}};
}

class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokens_path_ = dir_.path() + "/tokens";
    WriteFile(tokens_path_, TokensFile());
    auto tokens = AuthTokensFile::Open(tokens_path_, absl::ZeroDuration());
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    tokens_ = std::move(*tokens);
    quotas_path_ = dir_.path() + "/quotas";
    WriteFile(quotas_path_, "team-q datasets=1 records_scored_per_second=5\n");
    auto quotas = QuotasFile::Open(quotas_path_, absl::ZeroDuration());
    ASSERT_TRUE(quotas.ok()) << quotas.status();
    quotas_ = std::move(*quotas);
    CoreOptions core;
    core.quotas = quotas_->AsQuotaFn();
    core.data_dir = dir_.path() + "/data";
    core.jobs.training_slots = 1;
    core.jobs.threads_per_slot = 1;
    auto catalog = catalog_.Open(core.data_dir);
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    core.catalog = *catalog;
    auto opened = Core::Open(core);
    ASSERT_TRUE(opened.ok()) << opened.status();
    core_ = std::move(*opened);
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.auth_tokens = tokens_.get();
    options.audit = &audit_;
    auto server = LogpServer::Start(core_.get(), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(1));
  }

  RawReply Call(const Caller& who, const std::string& method,
                const std::vector<std::string>& messages) {
    return RawCall(channel_, method, messages, who.metadata);
  }
  template <typename T>
  T Parse(const RawReply& reply) {
    T out;
    EXPECT_TRUE(reply.status.ok()) << reply.status.error_message();
    if (!reply.responses.empty()) EXPECT_TRUE(out.ParseFromString(reply.responses.back()));
    return out;
  }
  v1::Dataset Upload(const Caller& who) {
    return Parse<v1::Dataset>(
        Call(who, "/logp.v1.DatasetService/CreateDataset",
             UploadMessages(UploadOf(v1::DATA_KIND_BINARY, kTinyDim, TinyRecords()))));
  }
  v1::Job CreateJob(const Caller& who, const v1::JobSpec& spec) {
    v1::CreateJobRequest req;
    *req.mutable_spec() = spec;
    return Parse<v1::Job>(Call(who, "/logp.v1.JobService/CreateJob", {req.SerializeAsString()}));
  }
  v1::Job GetJob(const Caller& who, const std::string& id) {
    v1::GetJobRequest req;
    req.set_id(id);
    return Parse<v1::Job>(Call(who, "/logp.v1.JobService/GetJob", {req.SerializeAsString()}));
  }
  // Polls until the job has ended (at most 60 s).
  v1::Job WaitForEnd(const Caller& who, const std::string& id) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    v1::Job job;
    while (absl::Now() < deadline) {
      job = GetJob(who, id);
      if (IsFinalState(job.state())) return job;
      absl::SleepFor(absl::Milliseconds(10));
    }
    ADD_FAILURE() << "job " << id << " did not end";
    return job;
  }
  // A job that trains until cancelled, so that jobs created after it stay QUEUED.
  v1::Job StartBlocker(const Caller& who) {
    const v1::Dataset data = Parse<v1::Dataset>(Call(who, "/logp.v1.DatasetService/CreateDataset",
                                                     UploadMessages(RandomBinaryUpload(200, 1))));
    v1::JobSpec spec;
    spec.set_dataset_id(data.id());
    spec.set_validation_fraction(0.2);
    spec.mutable_model()->set_family(v1::MODEL_FAMILY_MADE);
    spec.mutable_model()->mutable_made()->set_hidden_units(8);
    spec.set_batch_size(1);
    spec.set_epochs(10000);
    return CreateJob(who, spec);
  }

  const Caller kNobody{"no credentials", {}};
  const Caller kWrong = WithToken("a wrong token", kWrongToken);
  const Caller kReader = WithToken("team-a reader", kReaderA);
  const Caller kWriter = WithToken("team-a writer", kWriterA);
  const Caller kAdminCaller = WithToken("admin", kAdmin);
  const Caller kOther = WithToken("team-b writer", kWriterB);

  TempDir dir_;
  std::string tokens_path_, quotas_path_;
  std::unique_ptr<AuthTokensFile> tokens_;
  std::unique_ptr<QuotasFile> quotas_;
  RecordingAuditSink audit_;
  TestCatalog catalog_;  // outlives core_
  std::unique_ptr<Core> core_;
  std::unique_ptr<LogpServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

// One RPC of the matrix: the request sent (made fresh per caller when the call consumes what it
// names, as DeleteDataset and CancelJob do) and whether it writes.
struct Rpc {
  std::string method;  // "/logp.v1.Service/Method"
  bool writes;
  std::function<std::vector<std::string>()> request;
};

TEST_F(AccessTest, EveryRpcForEveryKindOfCallerGetsItsExactCode) {
  // Team A's objects: a dataset, a finished job and its model; then a job that keeps the only
  // slot busy, so that a job created later stays QUEUED (cancellable).
  const v1::Dataset ds = Upload(kWriter);
  ASSERT_FALSE(ds.id().empty());
  const v1::Job job = WaitForEnd(kWriter, CreateJob(kWriter, TinyBernoulliSpec(ds.id())).id());
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.error();
  const v1::Job blocker = StartBlocker(kWriter);
  ASSERT_FALSE(blocker.id().empty());

  auto id_request = [](auto message, const std::string& id) {
    message.set_id(id);
    return std::vector<std::string>{message.SerializeAsString()};
  };
  const std::vector<Rpc> rpcs = {
      {"/logp.v1.DatasetService/CreateDataset", true,
       [] { return UploadMessages(UploadOf(v1::DATA_KIND_BINARY, kTinyDim, TinyRecords())); }},
      {"/logp.v1.DatasetService/GetDataset", false,
       [&] { return id_request(v1::GetDatasetRequest(), ds.id()); }},
      {"/logp.v1.DatasetService/ListDatasets", false,
       [] { return std::vector<std::string>{v1::ListDatasetsRequest().SerializeAsString()}; }},
      {"/logp.v1.DatasetService/DeleteDataset", true,
       [&] { return id_request(v1::DeleteDatasetRequest(), Upload(kWriter).id()); }},
      {"/logp.v1.JobService/CreateJob", true,
       [&] {
         v1::CreateJobRequest req;
         *req.mutable_spec() = TinyBernoulliSpec(ds.id());
         return std::vector<std::string>{req.SerializeAsString()};
       }},
      {"/logp.v1.JobService/GetJob", false,
       [&] { return id_request(v1::GetJobRequest(), job.id()); }},
      {"/logp.v1.JobService/ListJobs", false,
       [] { return std::vector<std::string>{v1::ListJobsRequest().SerializeAsString()}; }},
      {"/logp.v1.JobService/CancelJob", true,
       [&] {
         return id_request(v1::CancelJobRequest(),
                           CreateJob(kWriter, TinyBernoulliSpec(ds.id())).id());
       }},
      {"/logp.v1.JobService/WatchJob", false,
       [&] { return id_request(v1::WatchJobRequest(), job.id()); }},
      {"/logp.v1.ModelService/GetModel", false,
       [&] { return id_request(v1::GetModelRequest(), job.model_id()); }},
      {"/logp.v1.ModelService/ListModels", false,
       [] { return std::vector<std::string>{v1::ListModelsRequest().SerializeAsString()}; }},
      {"/logp.v1.ModelService/Score", false,
       [&] {
         v1::ScoreRequest req;
         req.set_model_id(job.model_id());
         *req.mutable_records() = TinyBlock();
         return std::vector<std::string>{req.SerializeAsString()};
       }},
      {"/logp.v1.ModelService/Evaluate", false,
       [&] {
         v1::EvaluateRequest req;
         req.set_model_id(job.model_id());
         req.set_dataset_id(ds.id());
         return std::vector<std::string>{req.SerializeAsString()};
       }},
      {"/logp.v1.ModelService/Sample", false,
       [&] {
         v1::SampleRequest req;
         req.set_model_id(job.model_id());
         req.set_num_samples(2);
         return std::vector<std::string>{req.SerializeAsString()};
       }},
      {"/logp.v1.ModelService/ExportModel", false,
       [&] { return id_request(v1::ExportModelRequest(), job.model_id()); }},
      {"/logp.v1.ModelService/CompareModels", false,
       [&] {
         v1::CompareModelsRequest req;
         req.set_model_a_id(job.model_id());
         req.set_model_b_id(job.model_id());
         req.set_dataset_id(ds.id());
         return std::vector<std::string>{req.SerializeAsString()};
       }},
      // Conditionals (conditional.proto).
      {"/logp.v1.ModelService/Marginal", false,
       [&] {
         v1::MarginalRequest req;
         req.set_model_id(job.model_id());
         *req.mutable_records() = TinyBlock();
         req.add_observed_dims(0);
         return std::vector<std::string>{req.SerializeAsString()};
       }},
      {"/logp.v1.ModelService/Impute", false,
       [&] {
         v1::ImputeRequest req;
         req.set_model_id(job.model_id());
         *req.mutable_records() = TinyBlock();
         req.add_observed_dims(0);
         req.set_num_samples(2);
         return std::vector<std::string>{req.SerializeAsString()};
       }},
  };
  // The methods of the three services, all of them in the matrix.
  int methods = 0;
  for (const char* service :
       {"logp.v1.DatasetService", "logp.v1.JobService", "logp.v1.ModelService"}) {
    methods += google::protobuf::DescriptorPool::generated_pool()
                   ->FindServiceByName(service)
                   ->method_count();
  }
  ASSERT_EQ(static_cast<int>(rpcs.size()), methods);

  const std::vector<Caller> callers = {kNobody, kWrong, kReader, kWriter, kAdminCaller, kOther};
  // The objects team B may not name: it creates datasets and lists (its own, none of A's), and
  // everything that names A's objects is NOT_FOUND.
  auto expected = [&](const Rpc& rpc, const Caller& who) {
    using C = grpc::StatusCode;
    if (&who == &callers[0] || &who == &callers[1]) return C::UNAUTHENTICATED;
    if (&who == &callers[2]) return rpc.writes ? C::PERMISSION_DENIED : C::OK;
    if (&who == &callers[3] || &who == &callers[4]) return C::OK;
    const bool names_nothing =
        absl::StrContains(rpc.method, "/List") || absl::StrContains(rpc.method, "/CreateDataset");
    return names_nothing ? C::OK : C::NOT_FOUND;
  };
  int cells = 0;
  size_t audited = 0;
  for (const Rpc& rpc : rpcs) {
    for (const Caller& who : callers) {
      SCOPED_TRACE(absl::StrCat(rpc.method, " by ", who.name));
      const RawReply reply = Call(who, rpc.method, rpc.request());
      ++cells;
      EXPECT_EQ(reply.status.error_code(), expected(rpc, who)) << reply.status.error_message();
      if (who.name == "team-b writer" && reply.status.ok()) {
        for (const std::string& r : reply.responses) {  // nothing of A's in what B got
          for (const std::string& id : {ds.id(), job.id(), job.model_id(), blocker.id()}) {
            EXPECT_FALSE(absl::StrContains(r, id)) << id;
          }
        }
      }
      if (rpc.writes) ++audited;
    }
  }
  EXPECT_EQ(cells, static_cast<int>(rpcs.size() * callers.size()));

  // One audit record per mutating call of the matrix (and of the setup), tokens nowhere.
  const std::vector<AuditRecord> records = audit_.records();
  size_t of_matrix = 0;
  for (const AuditRecord& r : records) {
    if (r.code == "UNAUTHENTICATED") {
      EXPECT_EQ(r.tenant, "");
      EXPECT_EQ(r.role, "");
    }
    if (r.code == "PERMISSION_DENIED") {
      EXPECT_EQ(r.tenant, "team-a");
      EXPECT_EQ(r.role, "reader");
      EXPECT_EQ(r.via, "token");
    }
    if (r.code != "OK" || r.tenant == "team-b" || r.tenant == "ops") ++of_matrix;
  }
  EXPECT_GE(records.size(), audited);
  // Each of the 4 writing RPCs: refused twice as unauthenticated, once as denied to the reader,
  // done by the admin ("ops"), and refused (or, for an upload, done) for team B.
  EXPECT_EQ(of_matrix, 4u * 5u);
  for (const std::string& line : audit_.lines()) {
    for (const char* token : {kReaderA, kWriterA, kAdmin, kWriterB, kWrongToken}) {
      EXPECT_FALSE(absl::StrContains(line, token)) << line;
    }
  }
  bool saw_cancel = false;
  for (const AuditRecord& r : records) {
    if (r.method == "CancelJob" && r.tenant == "ops" && r.code == "OK") {
      saw_cancel = absl::StartsWith(r.resource_id, "job-");
    }
  }
  EXPECT_TRUE(saw_cancel) << "the admin's CancelJob names its job";
  Call(kWriter, "/logp.v1.JobService/CancelJob", id_request(v1::CancelJobRequest(), blocker.id()));
}

TEST_F(AccessTest, TenantsCannotReachEachOthersObjectsByIdOrByGuessing) {
  const v1::Dataset a_ds = Upload(kWriter);
  const v1::Dataset b_ds = Upload(kOther);
  const v1::Job a_job = WaitForEnd(kWriter, CreateJob(kWriter, TinyBernoulliSpec(a_ds.id())).id());
  const v1::Job b_job = WaitForEnd(kOther, CreateJob(kOther, TinyBernoulliSpec(b_ds.id())).id());
  ASSERT_EQ(a_job.state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(b_job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(a_job.tenant(), "team-a");
  EXPECT_EQ(b_job.tenant(), "team-b");

  // Each way round, A's id by B answers exactly as an id that exists nowhere.
  struct Named {
    std::string method, id;
    std::function<std::string(const std::string&)> request;
  };
  auto by_id = [](auto message) {
    return [message](const std::string& id) mutable {
      message.set_id(id);
      return message.SerializeAsString();
    };
  };
  auto score = [](const std::string& id) {
    v1::ScoreRequest req;
    req.set_model_id(id);
    *req.mutable_records() = TinyBlock();
    return req.SerializeAsString();
  };
  for (const auto& [mine, them] :
       {std::make_pair(&a_job, &kOther), std::make_pair(&b_job, &kWriter)}) {
    // Score's background model (reference_model_id): the caller's own model against another
    // tenant's.
    const std::string own = (mine == &a_job ? b_job : a_job).model_id();
    auto background = [own](const std::string& id) {
      v1::ScoreRequest req;
      req.set_model_id(own);
      req.set_reference_model_id(id);
      *req.mutable_records() = TinyBlock();
      return req.SerializeAsString();
    };
    const std::vector<Named> named = {
        {"/logp.v1.DatasetService/GetDataset", mine->spec().dataset_id(),
         by_id(v1::GetDatasetRequest())},
        {"/logp.v1.DatasetService/DeleteDataset", mine->spec().dataset_id(),
         by_id(v1::DeleteDatasetRequest())},
        {"/logp.v1.JobService/GetJob", mine->id(), by_id(v1::GetJobRequest())},
        {"/logp.v1.JobService/CancelJob", mine->id(), by_id(v1::CancelJobRequest())},
        {"/logp.v1.JobService/WatchJob", mine->id(), by_id(v1::WatchJobRequest())},
        {"/logp.v1.ModelService/GetModel", mine->model_id(), by_id(v1::GetModelRequest())},
        {"/logp.v1.ModelService/Score", mine->model_id(), score},
        {"/logp.v1.ModelService/Score", mine->model_id(), background},
    };
    for (const Named& n : named) {
      SCOPED_TRACE(absl::StrCat(n.method, " of ", n.id));
      std::string unknown = n.id;
      for (size_t i = unknown.find('-') + 1; i < unknown.size(); ++i) unknown[i] = '0';
      const RawReply got = Call(*them, n.method, {n.request(n.id)});
      const RawReply none = Call(*them, n.method, {n.request(unknown)});
      EXPECT_EQ(got.status.error_code(), grpc::StatusCode::NOT_FOUND);
      EXPECT_EQ(none.status.error_code(), grpc::StatusCode::NOT_FOUND);
      EXPECT_EQ(absl::StrReplaceAll(got.status.error_message(), {{n.id, unknown}}),
                none.status.error_message());
    }
  }
  // Guessing: ids of the right shape, none of them anyone's, and the other tenant's real ones.
  std::mt19937_64 rng(42);
  int found = 0;
  for (int i = 0; i < 200; ++i) {
    const std::string guess = absl::StrCat("ds-", absl::Hex(rng(), absl::kZeroPad16));
    v1::GetDatasetRequest req;
    req.set_id(guess);
    if (Call(kOther, "/logp.v1.DatasetService/GetDataset", {req.SerializeAsString()}).status.ok()) {
      ++found;
    }
  }
  EXPECT_EQ(found, 0);
  // Both still have all of their own.
  v1::GetModelRequest get;
  get.set_id(a_job.model_id());
  EXPECT_TRUE(
      Call(kWriter, "/logp.v1.ModelService/GetModel", {get.SerializeAsString()}).status.ok());
  get.set_id(b_job.model_id());
  EXPECT_TRUE(
      Call(kOther, "/logp.v1.ModelService/GetModel", {get.SerializeAsString()}).status.ok());
  EXPECT_TRUE(Call(kOther, "/logp.v1.DatasetService/GetDataset",
                   {by_id(v1::GetDatasetRequest())(b_ds.id())})
                  .status.ok());
}

TEST_F(AccessTest, MalformedAuthorizationHeadersAreUnauthenticated) {
  const std::string list = v1::ListDatasetsRequest().SerializeAsString();
  for (const std::string& header :
       {std::string(""), std::string("Bearer"), std::string("Bearer "), std::string(kWriterA),
        absl::StrCat("Basic ", kWriterA), absl::StrCat("Bearer  ", kWriterA),
        absl::StrCat("Bearer ", kWriterA, " extra")}) {
    SCOPED_TRACE(header);
    const RawReply reply = RawCall(channel_, "/logp.v1.DatasetService/ListDatasets", {list},
                                   {{"authorization", header}});
    EXPECT_EQ(reply.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_FALSE(absl::StrContains(reply.status.error_message(), kWriterA));
  }
  // Two headers, even both good, are refused.
  const RawReply two = RawCall(channel_, "/logp.v1.DatasetService/ListDatasets", {list},
                               {{"authorization", absl::StrCat("Bearer ", kWriterA)},
                                {"authorization", absl::StrCat("Bearer ", kWriterA)}});
  EXPECT_EQ(two.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // The scheme's case does not matter.
  EXPECT_TRUE(RawCall(channel_, "/logp.v1.DatasetService/ListDatasets", {list},
                      {{"authorization", absl::StrCat("bearer ", kWriterA)}})
                  .status.ok());
}

// A quota over the wire: RESOURCE_EXHAUSTED naming the quota, its limit and the use; others are
// not limited; a rewrite of the quotas file applies without a restart.
TEST_F(AccessTest, QuotasAreResourceExhaustedNamingTheQuota) {
  const Caller q = WithToken("team-q writer", kWriterQ);
  const v1::Dataset ds = Upload(q);
  ASSERT_FALSE(ds.id().empty());
  const RawReply second =
      Call(q, "/logp.v1.DatasetService/CreateDataset",
           UploadMessages(UploadOf(v1::DATA_KIND_BINARY, kTinyDim, TinyRecords())));
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(second.status.error_message(),
            "tenant 'team-q' is at its quota datasets: limit 1, in use 1");
  EXPECT_FALSE(Upload(kWriter).id().empty());  // team-a has no quota

  // records_scored_per_second = 5: a call of 6 records passes (the bucket goes into debt), the
  // next one waits until the debt is paid back.
  const v1::Job job = WaitForEnd(q, CreateJob(q, TinyBernoulliSpec(ds.id())).id());
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  v1::ScoreRequest score;
  score.set_model_id(job.model_id());
  *score.mutable_records() = TinyBlock();  // 6 records
  EXPECT_TRUE(Call(q, "/logp.v1.ModelService/Score", {score.SerializeAsString()}).status.ok());
  const RawReply limited = Call(q, "/logp.v1.ModelService/Score", {score.SerializeAsString()});
  EXPECT_EQ(limited.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(limited.status.error_message(),
                                "tenant 'team-q' is at its quota records_scored_per_second: "
                                "limit 5"))
      << limited.status.error_message();
  EXPECT_TRUE(absl::StrContains(limited.status.error_message(), "retry in"));

  // Raised in the file: the next upload is taken, with no restart.
  WriteFile(quotas_path_, "team-q datasets=2\n");
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(Upload(q).id().empty());
}

TEST_F(AccessTest, HealthAndReflectionNeedNoCredentials) {
  RawReply health = RawCall(channel_, "/grpc.health.v1.Health/Check", {""});
  ASSERT_TRUE(health.status.ok()) << health.status.error_message();
  EXPECT_EQ(health.responses, std::vector<std::string>{std::string("\x08\x01")});  // SERVING
  RawReply reflection =
      RawCall(channel_, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
              {{"\x3a\x00", 2}});
  ASSERT_TRUE(reflection.status.ok()) << reflection.status.error_message();
  ASSERT_EQ(reflection.responses.size(), 1u);
  EXPECT_TRUE(absl::StrContains(reflection.responses[0], "logp.v1.JobService"));
}

// The tokens file is re-read when it changes: B's token removed stops working, a token added
// works, with no restart and while the channel stays connected.
TEST_F(AccessTest, RemovedTokenStopsWorkingWithoutARestart) {
  const std::string list = v1::ListDatasetsRequest().SerializeAsString();
  const std::string method = "/logp.v1.DatasetService/ListDatasets";
  ASSERT_TRUE(Call(kOther, method, {list}).status.ok());
  const std::string added = "writer-c-0a1b2c3d4e5f6789";
  WriteFile(tokens_path_, TokensFile(/*with_writer_b=*/false) + added + " team-c writer\n");
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  grpc::StatusCode code = grpc::StatusCode::OK;
  while (absl::Now() < deadline) {
    code = Call(kOther, method, {list}).status.error_code();
    if (code == grpc::StatusCode::UNAUTHENTICATED) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(code, grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(Call(WithToken("c", added), method, {list}).status.ok());
  EXPECT_TRUE(Call(kWriter, method, {list}).status.ok());
  // A broken rewrite keeps the last good table (logged), rather than locking everyone out.
  WriteFile(tokens_path_, "this line is not a credential\n");
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_TRUE(Call(kWriter, method, {list}).status.ok());
  EXPECT_EQ(Call(kOther, method, {list}).status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

}  // namespace
}  // namespace logp
