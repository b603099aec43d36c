// The HTTP port (server/http/): every REST endpoint against the same call over gRPC, server-sent
// events, bad input, authentication and roles, /metrics' gate, static files.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "proto/cc/records.h"
#include "server/core/core.h"
#include "server/grpc/server.h"
#include "server/http/http_server.h"
#include "server/http/rest_gateway.h"
#include "tests/temp_dir.h"

namespace logp {
namespace {

constexpr char kReader[] = "reader-7c1e9a30d52b48f6";
constexpr char kWriter[] = "writer-2f8b6d04c9e1a357";
constexpr char kAdmin[] = "admin-e3b9107a6c4d25f8";
constexpr char kOtherWriter[] = "other-5a0c2e8f1b7d3946";
constexpr int kDim = 6;

RecordMatrix Records(int n, uint32_t seed) {
  RecordMatrix m = *RecordMatrix::Empty(v1::DATA_KIND_BINARY, kDim, 2);
  std::mt19937 rng(seed);
  for (int i = 0; i < n; ++i) {
    for (int d = 0; d < kDim; ++d) m.u8.push_back(rng() % 10 < static_cast<unsigned>(d + 2));
  }
  m.rows = n;
  return m;
}

template <typename T>
T FromJson(const std::string& json) {
  T out;
  const auto st = google::protobuf::util::JsonStringToMessage(json, &out);
  EXPECT_TRUE(st.ok()) << st.message() << " in " << json;
  return out;
}

// The error body's status name ("NOT_FOUND"), or "" when the body is not an error.
std::string ErrorStatus(const std::string& body) {
  google::protobuf::Struct s = FromJson<google::protobuf::Struct>(body);
  auto it = s.fields().find("error");
  if (it == s.fields().end()) return "";
  return it->second.struct_value().fields().at("status").string_value();
}

struct Event {
  std::string type;  // job_event, end, error
  std::string id;
  std::string data;
};

// Parses server-sent events (comment lines skipped).
std::vector<Event> ParseEvents(const std::string& text) {
  std::vector<Event> out;
  for (absl::string_view block : absl::StrSplit(text, "\n\n", absl::SkipEmpty())) {
    Event e;
    for (absl::string_view line : absl::StrSplit(block, '\n')) {
      if (absl::ConsumePrefix(&line, "event: ")) e.type = std::string(line);
      if (absl::ConsumePrefix(&line, "id: ")) e.id = std::string(line);
      if (absl::ConsumePrefix(&line, "data: ")) e.data = std::string(line);
    }
    if (!e.type.empty()) out.push_back(e);
  }
  return out;
}

class HttpTest : public ::testing::Test {
 protected:
  void Start(bool with_tokens) {
    CoreOptions core;
    core.data_dir = dir_.path() + "/data";
    core.jobs.training_slots = 1;
    core.jobs.threads_per_slot = 1;
    auto opened = Core::Open(core);
    ASSERT_TRUE(opened.ok()) << opened.status();
    core_ = std::move(*opened);
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    if (with_tokens) {
      const std::string path = dir_.path() + "/tokens";
      std::ofstream(path) << kReader << " team-a reader\n"
                          << kWriter << " team-a writer\n"
                          << kAdmin << " ops admin\n"
                          << kOtherWriter << " team-b writer\n";
      auto tokens = AuthTokensFile::Open(path);
      ASSERT_TRUE(tokens.ok()) << tokens.status();
      tokens_ = std::move(*tokens);
      options.auth_tokens = tokens_.get();
    }
    auto server = LogpServer::Start(core_.get(), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    HttpOptions http;
    http.listen_address = "127.0.0.1:0";
    http.auth_tokens = tokens_.get();
    http.metrics = [] { return std::string("# TYPE logp_test gauge\nlogp_test 1\n"); };
    http.static_files = [](std::string_view path) -> std::optional<StaticFile> {
      if (path == "/") return StaticFile{"text/html", "<html>logp</html>"};
      return std::nullopt;
    };
    auto started = HttpServer::Start(http, server_->InProcessChannel());
    ASSERT_TRUE(started.ok()) << started.status();
    http_ = std::move(*started);
    ClientOptions client_options;
    if (with_tokens) client_options.token = kWriter;
    grpc_ = Client::Connect(absl::StrCat("127.0.0.1:", server_->port()), client_options).value();
  }
  void TearDown() override {
    if (server_) server_->Drain(absl::Seconds(1));
    if (http_) http_->Stop();
    if (server_) server_->Close();
  }

  httplib::Client Http() {
    httplib::Client c("127.0.0.1", http_->port());
    c.set_read_timeout(60, 0);
    return c;
  }
  static httplib::Headers Bearer(const std::string& token) {
    return {{"Authorization", "Bearer " + token}};
  }
  // A trained Bernoulli model of Records(400, 1).
  v1::Job TrainedJob(const httplib::Headers& headers = {}) {
    v1::Dataset ds = grpc_->UploadDataset("d", Records(400, 1)).value();
    auto res = Http().Post("/v1/jobs", headers,
                           absl::StrCat(R"({"spec": {"datasetId": ")", ds.id(),
                                        R"(", "model": {"family": "MODEL_FAMILY_BERNOULLI"},)",
                                        R"( "epochs": 3, "validationFraction": 0.25}})"),
                           "application/json");
    EXPECT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
    v1::Job job = FromJson<v1::Job>(res->body);
    return grpc_->WaitForJob(job.id()).value();
  }

  TempDir dir_;
  std::unique_ptr<AuthTokensFile> tokens_;
  std::unique_ptr<Core> core_;
  std::unique_ptr<LogpServer> server_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<Client> grpc_;
};

TEST(HttpStatusTest, GoogleApiMappingOfEveryCode) {
  const std::vector<std::pair<grpc::StatusCode, int>> expected = {
      {grpc::StatusCode::OK, 200},
      {grpc::StatusCode::CANCELLED, 499},
      {grpc::StatusCode::UNKNOWN, 500},
      {grpc::StatusCode::INVALID_ARGUMENT, 400},
      {grpc::StatusCode::DEADLINE_EXCEEDED, 504},
      {grpc::StatusCode::NOT_FOUND, 404},
      {grpc::StatusCode::ALREADY_EXISTS, 409},
      {grpc::StatusCode::PERMISSION_DENIED, 403},
      {grpc::StatusCode::RESOURCE_EXHAUSTED, 429},
      {grpc::StatusCode::FAILED_PRECONDITION, 400},
      {grpc::StatusCode::ABORTED, 409},
      {grpc::StatusCode::OUT_OF_RANGE, 400},
      {grpc::StatusCode::UNIMPLEMENTED, 501},
      {grpc::StatusCode::INTERNAL, 500},
      {grpc::StatusCode::UNAVAILABLE, 503},
      {grpc::StatusCode::DATA_LOSS, 500},
      {grpc::StatusCode::UNAUTHENTICATED, 401}};
  for (const auto& [code, http] : expected) EXPECT_EQ(HttpStatusOf(code), http) << code;
}

TEST_F(HttpTest, EveryEndpointAnswersAsItsGrpcCall) {
  Start(/*with_tokens=*/false);
  v1::Job job = TrainedJob();
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  httplib::Client http = Http();

  auto datasets = http.Get("/v1/datasets");
  ASSERT_TRUE(datasets);
  EXPECT_EQ(datasets->get_header_value("Content-Type"), "application/json");
  auto ds_list = FromJson<v1::ListDatasetsResponse>(datasets->body);
  ASSERT_EQ(ds_list.datasets_size(), 1);
  auto ds = http.Get("/v1/datasets/" + job.spec().dataset_id());
  EXPECT_EQ(FromJson<v1::Dataset>(ds->body).SerializeAsString(),
            grpc_->GetDataset(job.spec().dataset_id())->SerializeAsString());
  // Every primitive field is printed, 64-bit integers as strings.
  EXPECT_TRUE(absl::StrContains(ds->body, R"("numRecords":"400")")) << ds->body;

  auto jobs = FromJson<v1::ListJobsResponse>(http.Get("/v1/jobs?page_size=1")->body);
  ASSERT_EQ(jobs.jobs_size(), 1);
  EXPECT_EQ(jobs.jobs(0).id(), job.id());
  EXPECT_EQ(FromJson<v1::Job>(http.Get("/v1/jobs/" + job.id())->body).SerializeAsString(),
            grpc_->GetJob(job.id())->SerializeAsString());

  auto models = FromJson<v1::ListModelsResponse>(http.Get("/v1/models")->body);
  ASSERT_EQ(models.models_size(), 1);
  const std::string model = models.models(0).id();
  EXPECT_EQ(model, job.model_id());
  EXPECT_EQ(FromJson<v1::Model>(http.Get("/v1/models/" + model)->body).SerializeAsString(),
            grpc_->GetModel(model)->SerializeAsString());

  // Score with plain rows and with an encoded block: both equal gRPC's Score of the records.
  const RecordMatrix records = Records(5, 9);
  const std::vector<double> expected = grpc_->Score(model, records).value();
  std::string rows = "[";
  for (int r = 0; r < records.rows; ++r) {
    absl::StrAppend(&rows, r ? "," : "", "[");
    for (int d = 0; d < kDim; ++d) absl::StrAppend(&rows, d ? "," : "", records.At(r, d));
    rows += "]";
  }
  rows += "]";
  for (const std::string& body :
       {absl::StrCat(R"({"rows": )", rows, "}"),
        absl::StrCat(R"({"records": )", ToJson(Encode(records, 0, records.rows)), "}")}) {
    auto scored = http.Post("/v1/models/" + model + ":score", body, "application/json");
    ASSERT_EQ(scored->status, 200) << scored->body;
    auto response = FromJson<v1::ScoreResponse>(scored->body);
    ASSERT_EQ(response.log_prob_size(), 5);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(response.log_prob(i), expected[i]) << i;
    EXPECT_EQ(response.score_kind(), v1::SCORE_KIND_EXACT);
  }
  // The job's newest checkpoint is the published model here.
  auto by_job = http.Post("/v1/jobs/" + job.id() + ":score",
                          absl::StrCat(R"({"rows": )", rows, "}"), "application/json");
  ASSERT_EQ(by_job->status, 200) << by_job->body;
  EXPECT_EQ(FromJson<v1::ScoreResponse>(by_job->body).log_prob(0), expected[0]);
  // Analytics options through the JSON mapping: the same p-values and typicality as gRPC's.
  {
    auto analysed =
        http.Post("/v1/models/" + model + ":score",
                  absl::StrCat(R"({"rows": )", rows,
                               R"(, "anomaly": {"alpha": 0.5}, "typicality": {"seed": "3"}})"),
                  "application/json");
    ASSERT_EQ(analysed->status, 200) << analysed->body;
    auto got = FromJson<v1::ScoreResponse>(analysed->body);
    v1::ScoreRequest request;
    request.set_model_id(model);
    *request.mutable_records() = Encode(records, 0, records.rows);
    request.mutable_anomaly()->set_alpha(0.5);
    request.mutable_typicality()->set_seed(3);
    auto want = grpc_->ScoreRaw(request).value();
    ASSERT_EQ(got.p_value_size(), 5);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(got.p_value(i), want.p_value(i)) << i;
    EXPECT_EQ(got.alpha_flagged_size(), 5);
    EXPECT_EQ(got.typicality().threshold(), want.typicality().threshold());
    EXPECT_GT(got.num_reference_scores(), 0u);
    auto bad = http.Post("/v1/models/" + model + ":score",
                         absl::StrCat(R"({"rows": )", rows, R"(, "anomaly": {"fdrQ": 2}})"),
                         "application/json");
    EXPECT_EQ(bad->status, 400) << bad->body;
    EXPECT_EQ(ErrorStatus(bad->body), "INVALID_ARGUMENT");
  }

  // Marginal over every dimension is Score's value; an index past dim is INVALID_ARGUMENT.
  std::string all_dims = "[";
  for (int d = 0; d < kDim; ++d) absl::StrAppend(&all_dims, d ? "," : "", d);
  all_dims += "]";
  auto marginal =
      http.Post("/v1/models/" + model + ":marginal",
                absl::StrCat(R"({"rows": )", rows, R"(, "observedDims": )", all_dims, "}"),
                "application/json");
  ASSERT_EQ(marginal->status, 200) << marginal->body;
  EXPECT_EQ(FromJson<v1::MarginalResponse>(marginal->body).log_prob(0), expected[0]);
  auto bad_dims = http.Post("/v1/models/" + model + ":impute",
                            absl::StrCat(R"({"rows": )", rows, R"(, "observedDims": [99]})"),
                            "application/json");
  EXPECT_EQ(bad_dims->status, 400) << bad_dims->body;

  auto evaluated = http.Post("/v1/models/" + model + ":evaluate",
                             absl::StrCat(R"({"datasetId": ")", job.spec().dataset_id(), "\"}"),
                             "application/json");
  ASSERT_EQ(evaluated->status, 200) << evaluated->body;
  auto evaluation = FromJson<v1::EvaluateResponse>(evaluated->body);
  auto grpc_evaluation = grpc_->Evaluate(model, job.spec().dataset_id()).value();
  EXPECT_EQ(evaluation.mean_nll(), grpc_evaluation.mean_nll());
  EXPECT_EQ(evaluation.num_records(), 400u);

  // Sample: the chunks merged into one block, the same records as gRPC's with the same seed.
  auto sampled = http.Post("/v1/models/" + model + ":sample", R"({"numSamples": "7", "seed": "5"})",
                           "application/json");
  ASSERT_EQ(sampled->status, 200) << sampled->body;
  auto block = FromJson<v1::SampleResponse>(sampled->body).records();
  RecordMatrix got = *RecordMatrix::Empty(v1::DATA_KIND_BINARY, kDim, 2);
  ASSERT_TRUE(DecodeAppend(block, 0, &got).ok());
  RecordMatrix want = grpc_->Sample(model, 7, 5).value();
  ASSERT_EQ(got.rows, 7);
  for (int r = 0; r < 7; ++r) {
    for (int d = 0; d < kDim; ++d) EXPECT_EQ(got.At(r, d), want.At(r, d));
  }

  // The static files hook.
  auto page = http.Get("/");
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->body, "<html>logp</html>");
  EXPECT_EQ(http.Get("/nope.js")->status, 404);
  EXPECT_EQ(ErrorStatus(http.Get("/nope.js")->body), "NOT_FOUND");
}

TEST_F(HttpTest, WatchStreamsTheJobsEventsAsServerSentEvents) {
  Start(/*with_tokens=*/false);
  v1::Job job = TrainedJob();
  std::vector<v1::JobEvent> expected;
  ASSERT_TRUE(grpc_
                  ->WatchJob(job.id(), 0,
                             [&](const v1::JobEvent& e) {
                               expected.push_back(e);
                               return true;
                             })
                  .ok());
  ASSERT_GE(expected.size(), 4u);
  httplib::Client http = Http();
  auto res = http.Get("/v1/jobs/" + job.id() + ":watch");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(absl::StartsWith(res->get_header_value("Content-Type"), "text/event-stream"));
  std::vector<Event> events = ParseEvents(res->body);
  ASSERT_EQ(events.size(), expected.size() + 1);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(events[i].type, "job_event");
    EXPECT_EQ(events[i].id, std::to_string(expected[i].seq()));
    EXPECT_EQ(FromJson<v1::JobEvent>(events[i].data).SerializeAsString(),
              expected[i].SerializeAsString());
  }
  EXPECT_EQ(events.back().type, "end");

  // Resuming: from_seq, and a reconnecting EventSource's Last-Event-ID.
  auto from = ParseEvents(http.Get("/v1/jobs/" + job.id() + ":watch?from_seq=3")->body);
  ASSERT_EQ(from.size(), expected.size() - 2 + 1);
  EXPECT_EQ(from[0].id, "3");
  auto after =
      ParseEvents(http.Get("/v1/jobs/" + job.id() + ":watch", {{"Last-Event-ID", "3"}})->body);
  ASSERT_EQ(after.size(), expected.size() - 3 + 1);
  EXPECT_EQ(after[0].id, "4");
  // An unknown job is an HTTP error, not a stream.
  auto unknown = http.Get("/v1/jobs/job-0000:watch");
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(ErrorStatus(unknown->body), "NOT_FOUND");
  EXPECT_EQ(http.Get("/v1/jobs/" + job.id() + ":watch", {{"Last-Event-ID", "x"}})->status, 400);
}

TEST_F(HttpTest, ALiveWatchGetsNewEventsAndLeavingItCancelsTheCall) {
  Start(/*with_tokens=*/false);
  v1::Dataset ds = grpc_->UploadDataset("d", Records(2000, 2)).value();
  v1::JobSpec spec;
  spec.set_dataset_id(ds.id());
  spec.mutable_model()->set_family(v1::MODEL_FAMILY_MADE);
  spec.set_epochs(10000);
  spec.set_batch_size(10);
  spec.set_validation_fraction(0.1);
  v1::Job job = grpc_->CreateJob(spec).value();
  const int calls_before = server_->TEST_CallsInFlight();
  httplib::Client http = Http();
  std::string text;
  int summaries = 0;
  // Reads until three epoch summaries arrived, then leaves.
  auto res = http.Get("/v1/jobs/" + job.id() + ":watch", [&](const char* data, size_t n) {
    text.append(data, n);
    summaries = 0;
    for (const Event& e : ParseEvents(text)) {
      if (e.type == "job_event" && absl::StrContains(e.data, "epochSummary")) ++summaries;
    }
    return summaries < 3;
  });
  EXPECT_EQ(summaries, 3);
  // The server notices at its next write (a progress event within a second) and cancels the
  // gRPC call.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (server_->TEST_CallsInFlight() > calls_before && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(server_->TEST_CallsInFlight(), calls_before);

  // Cancel over HTTP.
  auto cancelled = http.Post("/v1/jobs/" + job.id() + ":cancel", "", "application/json");
  ASSERT_EQ(cancelled->status, 200) << cancelled->body;
  EXPECT_EQ(grpc_->WaitForJob(job.id())->state(), v1::JOB_STATE_CANCELLED);
  // Cancelling a finished job is FAILED_PRECONDITION: 400.
  auto again = http.Post("/v1/jobs/" + job.id() + ":cancel", "{}", "application/json");
  EXPECT_EQ(again->status, 400);
  EXPECT_EQ(ErrorStatus(again->body), "FAILED_PRECONDITION");
}

TEST_F(HttpTest, BadInputGetsThePreciseStatusAndTheServerGoesOn) {
  Start(/*with_tokens=*/false);
  v1::Job job = TrainedJob();
  const std::string score = "/v1/models/" + job.model_id() + ":score";
  httplib::Client http = Http();
  struct Case {
    std::string path, body;
    int status;
    std::string code, message;
  };
  const std::vector<Case> cases = {
      {"/v1/jobs", "{not json", 400, "INVALID_ARGUMENT",
       "do not parse as logp.v1.CreateJobRequest"},
      {"/v1/jobs", R"({"spek": {}})", 400, "INVALID_ARGUMENT", "spek"},
      {"/v1/jobs", R"({"spec": {"datasetId": "ds-0"}})", 404, "NOT_FOUND", "ds-0"},
      {score, R"({"rows": [[0, 1, 0, 1, 0, 0.5]]})", 400, "INVALID_ARGUMENT",
       "record 0, column 5: 0.5 is not an integer"},
      {score, R"({"rows": [[0, 1]]})", 400, "INVALID_ARGUMENT", "record 0 has 2 values"},
      {score, R"({"rows": [[0, 1, 0, 1, 0, 2]]})", 400, "INVALID_ARGUMENT", "column 5"},
      {score, R"({"rows": [[0, 1, 0, 1, 0, "1"]]})", 400, "INVALID_ARGUMENT", "a string"},
      {score, R"({"rows": [7]})", 400, "INVALID_ARGUMENT", "record 0 is nothing"},
      {score,
       R"({"rows": [[0,0,0,0,0,0]], "records": {"encoding": "ENCODING_UINT8", "numRecords": 1,)"
       R"( "dim": 6, "data": "AAAAAAAA"}})",
       400, "INVALID_ARGUMENT", "not both"},
      {"/v1/models/model-0:score", R"({"rows": []})", 404, "NOT_FOUND", "model-0"},
      {"/v1/models/" + job.model_id() + ":sample", R"({"numSamples": "100000000"})", 429,
       "RESOURCE_EXHAUSTED", ""},
      {"/v1/models/" + job.model_id() + ":evaluate", "{}", 400, "INVALID_ARGUMENT",
       "dataset_id is required"},
  };
  for (const Case& c : cases) {
    auto res = http.Post(c.path, c.body, "application/json");
    ASSERT_TRUE(res) << c.body;
    EXPECT_EQ(res->status, c.status) << c.body << " -> " << res->body;
    EXPECT_EQ(ErrorStatus(res->body), c.code) << c.body << " -> " << res->body;
    EXPECT_TRUE(absl::StrContains(res->body, c.message)) << c.body << " -> " << res->body;
  }
  // A JSON value that is a number where rows holds a number: "record 0 is nothing" above is a
  // bare number (kind_case kNumberValue is not a list).
  // Unknown routes and query fields.
  EXPECT_EQ(http.Get("/v1/nothing")->status, 404);
  auto bad_query = http.Get("/v1/jobs?page_sise=3");
  EXPECT_EQ(bad_query->status, 400);
  EXPECT_EQ(ErrorStatus(bad_query->body), "INVALID_ARGUMENT");
  EXPECT_EQ(http.Get("/v1/jobs?page_size=x")->status, 400);
  // Still serving, and nothing changed.
  auto jobs = FromJson<v1::ListJobsResponse>(http.Get("/v1/jobs")->body);
  EXPECT_EQ(jobs.jobs_size(), 1);
}

TEST_F(HttpTest, TokensAndRolesApplyAsOnGrpc) {
  Start(/*with_tokens=*/true);
  v1::Job job = TrainedJob(Bearer(kWriter));
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  httplib::Client http = Http();
  // No or bad credentials: 401.
  for (const httplib::Headers& headers :
       {httplib::Headers{}, Bearer("nope-nope-nope"), httplib::Headers{{"Authorization", kWriter}},
        httplib::Headers{{"Authorization", std::string("Bearer ") + kWriter},
                         {"Authorization", std::string("Bearer ") + kReader}}}) {
    auto res = http.Get("/v1/jobs", headers);
    EXPECT_EQ(res->status, 401) << res->body;
    EXPECT_EQ(ErrorStatus(res->body), "UNAUTHENTICATED");
    EXPECT_EQ(http.Get("/v1/jobs/" + job.id() + ":watch", headers)->status, 401);
  }
  // A reader reads but may not create or cancel.
  EXPECT_EQ(http.Get("/v1/jobs/" + job.id(), Bearer(kReader))->status, 200);
  auto created = http.Post("/v1/jobs", Bearer(kReader),
                           absl::StrCat(R"({"spec": {"datasetId": ")", job.spec().dataset_id(),
                                        R"(", "model": {"family": "MODEL_FAMILY_BERNOULLI"}}})"),
                           "application/json");
  EXPECT_EQ(created->status, 403) << created->body;
  EXPECT_EQ(ErrorStatus(created->body), "PERMISSION_DENIED");
  EXPECT_EQ(http.Post("/v1/jobs/" + job.id() + ":cancel", Bearer(kReader), "", "application/json")
                ->status,
            403);
  // Another tenant sees none of it.
  EXPECT_EQ(http.Get("/v1/jobs/" + job.id(), Bearer(kOtherWriter))->status, 404);
  EXPECT_EQ(http.Get("/v1/jobs/" + job.id() + ":watch", Bearer(kOtherWriter))->status, 404);
  EXPECT_EQ(FromJson<v1::ListModelsResponse>(http.Get("/v1/models", Bearer(kOtherWriter))->body)
                .models_size(),
            0);
  EXPECT_EQ(http.Post("/v1/models/" + job.model_id() + ":score", Bearer(kOtherWriter),
                      R"({"rows": [[0,0,0,0,0,0]]})", "application/json")
                ->status,
            404);
  // /metrics: admins only.
  EXPECT_EQ(http.Get("/metrics")->status, 401);
  EXPECT_EQ(http.Get("/metrics", Bearer(kWriter))->status, 403);
  auto metrics = http.Get("/metrics", Bearer(kAdmin));
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->body, "# TYPE logp_test gauge\nlogp_test 1\n");
  EXPECT_TRUE(absl::StartsWith(metrics->get_header_value("Content-Type"), "text/plain"));
  // The page needs no token.
  EXPECT_EQ(http.Get("/")->status, 200);
}

}  // namespace
}  // namespace logp
