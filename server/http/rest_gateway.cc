#include "server/http/rest_gateway.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "logp/v1/dataset_service.grpc.pb.h"
#include "logp/v1/job_service.grpc.pb.h"
#include "logp/v1/model_service.grpc.pb.h"
#include "server/grpc/authentication.h"

namespace logp {
namespace {

using google::protobuf::Message;

constexpr char kJson[] = "application/json";
// How often an idle event stream gets a comment line.
constexpr auto kKeepAlive = std::chrono::seconds(15);

grpc::Status InvalidArgument(std::string message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(message));
}

// The request's headers a gRPC call carries on: every Authorization header (more than one is
// refused by the server's Authentication, as on gRPC).
void ForwardHeaders(const httplib::Request& req, grpc::ClientContext* ctx) {
  auto range = req.headers.equal_range("Authorization");
  for (auto it = range.first; it != range.second; ++it)
    ctx->AddMetadata("authorization", it->second);
}

// Sets the string field `name` of `message` (which must have one).
void SetString(Message* message, const std::string& name, const std::string& value) {
  const auto* field = message->GetDescriptor()->FindFieldByName(name);
  message->GetReflection()->SetString(message, field, value);
}

// Fills `message` from the body (POST: JSON of the message; empty: nothing) or the query
// parameters (GET: each a field by its proto or JSON name, converted by the JSON parser).
grpc::Status ParseRequest(const httplib::Request& req, Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  std::string json;
  if (req.method == "GET") {
    google::protobuf::Struct fields;
    for (const auto& [name, value] : req.params) {
      (*fields.mutable_fields())[name].set_string_value(value);
    }
    if (fields.fields().empty()) return grpc::Status::OK;
    google::protobuf::util::MessageToJsonString(fields, &json);
  } else {
    json = req.body;
    if (json.find_first_not_of(" \t\r\n") == std::string::npos) return grpc::Status::OK;
  }
  const auto parsed = google::protobuf::util::JsonStringToMessage(json, message, options);
  if (!parsed.ok()) {
    return InvalidArgument(
        absl::StrCat(req.method == "GET" ? "query parameters" : "the body", " do not parse as ",
                     message->GetDescriptor()->full_name(),
                     " in protobuf's JSON mapping: ", parsed.message().ToString()));
  }
  return grpc::Status::OK;
}

void ReplyJson(const Message& message, httplib::Response* response) {
  response->status = 200;
  response->set_content(ToJson(message), kJson);
}

// A route: the request message is made from the path (`path_field`, set from the first capture
// when not empty) and the body or query, then `call` runs it.
template <class Request, class Response>
httplib::Server::Handler Unary(
    std::string path_field,
    std::function<grpc::Status(grpc::ClientContext*, const Request&, Response*)> call) {
  return [path_field, call](const httplib::Request& req, httplib::Response& res) {
    Request request;
    if (grpc::Status parsed = ParseRequest(req, &request); !parsed.ok()) {
      ReplyError(parsed, &res);
      return;
    }
    if (!path_field.empty()) SetString(&request, path_field, req.matches[1]);
    grpc::ClientContext ctx;
    ForwardHeaders(req, &ctx);
    Response response;
    grpc::Status status = call(&ctx, request, &response);
    if (!status.ok()) {
      ReplyError(status, &res);
      return;
    }
    ReplyJson(response, &res);
  };
}

// Events of one WatchJob call, read by a thread of their own so that the HTTP side can send
// keep-alive comments (and notice a client that left) while the job is quiet.
class EventPump {
 public:
  EventPump(v1::JobService::Stub* stub, const httplib::Request& req,
            const v1::WatchJobRequest& request) {
    ForwardHeaders(req, &ctx_);
    reader_ = stub->WatchJob(&ctx_, request);
    thread_ = std::thread([this] {
      v1::JobEvent event;
      while (reader_->Read(&event)) {
        std::lock_guard<std::mutex> lock(mu_);
        events_.push_back(std::move(event));
        cv_.notify_one();
      }
      grpc::Status status = reader_->Finish();
      std::lock_guard<std::mutex> lock(mu_);
      status_ = std::move(status);
      done_ = true;
      cv_.notify_one();
    });
  }
  ~EventPump() {
    ctx_.TryCancel();
    thread_.join();
  }

  // Waits up to `wait` for events; returns them (empty on a timeout), and sets `*status` once
  // the stream ended (after its last events were returned).
  std::deque<v1::JobEvent> Next(std::chrono::milliseconds wait, std::optional<grpc::Status>* end) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, wait, [this] { return !events_.empty() || done_; });
    std::deque<v1::JobEvent> out;
    out.swap(events_);
    if (done_ && out.empty()) *end = status_;
    return out;
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::JobEvent> events_;
  bool done_ = false;
  grpc::Status status_;
};

bool WriteAll(httplib::DataSink& sink, const std::string& text) {
  return sink.is_writable() && sink.write(text.data(), text.size());
}

}  // namespace

int HttpStatusOf(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::CANCELLED:
      return 499;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    default:  // UNKNOWN, INTERNAL, DATA_LOSS
      return 500;
  }
}

std::string ToJson(const Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string json;
  google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

std::string ErrorJson(const grpc::Status& status) {
  google::protobuf::Struct body;
  google::protobuf::Struct* error = (*body.mutable_fields())["error"].mutable_struct_value();
  auto& fields = *error->mutable_fields();
  fields["code"].set_number_value(HttpStatusOf(status.error_code()));
  fields["message"].set_string_value(status.error_message());
  fields["status"].set_string_value(StatusCodeName(status.error_code()));
  return ToJson(body);
}

void ReplyError(const grpc::Status& status, httplib::Response* response) {
  response->status = HttpStatusOf(status.error_code());
  response->set_content(ErrorJson(status), kJson);
}

struct RestGateway::Stubs {
  std::unique_ptr<v1::DatasetService::Stub> datasets;
  std::unique_ptr<v1::JobService::Stub> jobs;
  std::unique_ptr<v1::ModelService::Stub> models;
};

RestGateway::RestGateway(std::shared_ptr<grpc::Channel> channel) : stubs_(new Stubs) {
  stubs_->datasets = v1::DatasetService::NewStub(channel);
  stubs_->jobs = v1::JobService::NewStub(channel);
  stubs_->models = v1::ModelService::NewStub(channel);
}

RestGateway::~RestGateway() = default;

void RestGateway::Register(httplib::Server* server) {
  auto* d = stubs_->datasets.get();
  auto* j = stubs_->jobs.get();
  auto* m = stubs_->models.get();
  const std::string id = "([^/:]+)";
  server->Get("/v1/datasets",
              Unary<v1::ListDatasetsRequest, v1::ListDatasetsResponse>(
                  "", [d](auto* c, auto& r, auto* o) { return d->ListDatasets(c, r, o); }));
  server->Get("/v1/datasets/" + id,
              Unary<v1::GetDatasetRequest, v1::Dataset>(
                  "id", [d](auto* c, auto& r, auto* o) { return d->GetDataset(c, r, o); }));
  server->Get("/v1/jobs", Unary<v1::ListJobsRequest, v1::ListJobsResponse>(
                              "", [j](auto* c, auto& r, auto* o) { return j->ListJobs(c, r, o); }));
  server->Post("/v1/jobs", Unary<v1::CreateJobRequest, v1::Job>("", [j](auto* c, auto& r, auto* o) {
                 return j->CreateJob(c, r, o);
               }));
  server->Get("/v1/jobs/" + id,
              Unary<v1::GetJobRequest, v1::Job>(
                  "id", [j](auto* c, auto& r, auto* o) { return j->GetJob(c, r, o); }));
  server->Post("/v1/jobs/" + id + ":cancel",
               Unary<v1::CancelJobRequest, v1::Job>(
                   "id", [j](auto* c, auto& r, auto* o) { return j->CancelJob(c, r, o); }));
  server->Get("/v1/models",
              Unary<v1::ListModelsRequest, v1::ListModelsResponse>(
                  "", [m](auto* c, auto& r, auto* o) { return m->ListModels(c, r, o); }));
  server->Get("/v1/models/" + id,
              Unary<v1::GetModelRequest, v1::Model>(
                  "id", [m](auto* c, auto& r, auto* o) { return m->GetModel(c, r, o); }));
  server->Post(
      "/v1/models/" + id + ":compare",
      Unary<v1::CompareModelsRequest, v1::CompareModelsResponse>(
          "model_a_id", [m](auto* c, auto& r, auto* o) { return m->CompareModels(c, r, o); }));
  for (const auto& [kind, field] : {std::pair<std::string, std::string>{"models", "model_id"},
                                    std::pair<std::string, std::string>{"jobs", "job_id"}}) {
    const std::string base = "/v1/" + kind + "/" + id;
    server->Post(base + ":score",
                 Unary<v1::ScoreRequest, v1::ScoreResponse>(
                     field, [m](auto* c, auto& r, auto* o) { return m->Score(c, r, o); }));
    server->Post(base + ":evaluate",
                 Unary<v1::EvaluateRequest, v1::EvaluateResponse>(
                     field, [m](auto* c, auto& r, auto* o) { return m->Evaluate(c, r, o); }));
    // Conditionals (conditional.proto).
    server->Post(base + ":marginal",
                 Unary<v1::MarginalRequest, v1::MarginalResponse>(
                     field, [m](auto* c, auto& r, auto* o) { return m->Marginal(c, r, o); }));
    server->Post(base + ":impute",
                 Unary<v1::ImputeRequest, v1::ImputeResponse>(
                     field, [m](auto* c, auto& r, auto* o) { return m->Impute(c, r, o); }));
    // The chunks of one Sample call merged into one block (rows start on a byte boundary in
    // every encoding, so the chunks' bytes concatenate).
    server->Post(base + ":sample",
                 Unary<v1::SampleRequest, v1::SampleResponse>(
                     field, [m](grpc::ClientContext* c, const v1::SampleRequest& r,
                                v1::SampleResponse* out) {
                       auto reader = m->Sample(c, r);
                       v1::SampleResponse chunk;
                       v1::RecordBlock* all = out->mutable_records();
                       while (reader->Read(&chunk)) {
                         const v1::RecordBlock& b = chunk.records();
                         all->set_encoding(b.encoding());
                         all->set_dim(b.dim());
                         all->set_num_records(all->num_records() + b.num_records());
                         all->mutable_data()->append(b.data());
                       }
                       return reader->Finish();
                     }));
  }
  server->Get("/v1/jobs/" + id + ":watch", [j](const httplib::Request& req,
                                               httplib::Response& res) {
    v1::WatchJobRequest request;
    if (grpc::Status parsed = ParseRequest(req, &request); !parsed.ok()) {
      ReplyError(parsed, &res);
      return;
    }
    request.set_id(req.matches[1]);
    if (const std::string last = req.get_header_value("Last-Event-ID"); !last.empty()) {
      int64_t seq = 0;
      if (!absl::SimpleAtoi(last, &seq) || seq < 0) {
        ReplyError(InvalidArgument("Last-Event-ID must be an event's seq"), &res);
        return;
      }
      request.set_from_seq(seq + 1);
    }
    // The job first, so that an unknown or invisible job (or bad credentials) is an HTTP error,
    // not an event stream that fails.
    {
      v1::GetJobRequest get;
      get.set_id(request.id());
      grpc::ClientContext ctx;
      ForwardHeaders(req, &ctx);
      v1::Job job;
      if (grpc::Status status = j->GetJob(&ctx, get, &job); !status.ok()) {
        ReplyError(status, &res);
        return;
      }
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [j, req, request](
                                                              size_t, httplib::DataSink& sink) {
      EventPump pump(j, req, request);
      if (!WriteAll(sink, ": logp job events\n\n")) return false;
      while (true) {
        std::optional<grpc::Status> end;
        std::string text;
        for (const v1::JobEvent& e : pump.Next(kKeepAlive, &end)) {
          absl::StrAppend(&text, "id: ", e.seq(), "\nevent: job_event\ndata: ", ToJson(e), "\n\n");
        }
        if (end.has_value()) {
          text += end->ok() ? "event: end\ndata: {}\n\n"
                            : absl::StrCat("event: error\ndata: ", ErrorJson(*end), "\n\n");
        } else if (text.empty()) {
          text = ": keep-alive\n\n";
        }
        if (!WriteAll(sink, text)) return false;  // the client left: the pump cancels
        if (end.has_value()) {
          sink.done();
          return true;
        }
      }
    });
  });
}

}  // namespace logp
