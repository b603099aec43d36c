// RestGateway: logp's main calls over HTTP/JSON, translated to gRPC calls on an in-process
// channel to the same server, so that authentication, authorization, quotas, audit, field limits
// and every status are exactly those of the gRPC API.
//
// Requests and responses are the services' messages in protobuf's JSON mapping (lowerCamelCase
// names, every field printed, enums by name, 64-bit integers as strings, bytes in base64):
//
//   GET  /v1/datasets                   ListDatasets   (?page_size=&page_token=)
//   GET  /v1/datasets/{id}              GetDataset
//   GET  /v1/jobs                       ListJobs       (?page_size=&page_token=)
//   POST /v1/jobs                       CreateJob      (body: CreateJobRequest)
//   GET  /v1/jobs/{id}                  GetJob
//   POST /v1/jobs/{id}:cancel           CancelJob
//   GET  /v1/jobs/{id}:watch            WatchJob as server-sent events (?from_seq=; a
//                                       reconnecting client's Last-Event-ID resumes after it)
//   GET  /v1/models                     ListModels     (?page_size=&page_token=)
//   GET  /v1/models/{id}                GetModel
//   POST /v1/models/{id}:score          Score          (body: ScoreRequest; "rows" or "records")
//   POST /v1/models/{id}:evaluate       Evaluate       (body: EvaluateRequest)
//   POST /v1/models/{id}:sample         Sample: one SampleResponse, the streamed chunks merged
//   POST /v1/jobs/{id}:score, :evaluate, :sample   the same with a job's newest checkpoint
//   POST /v1/models/{a}:compare         CompareModels  (body: CompareModelsRequest, e.g.
//                                       {"modelBId": "model-...", "datasetId": "ds-..."})
//
// The id in the path fills the request's id (or model_id / job_id); GET requests take the
// request's fields as query parameters. `Authorization: Bearer TOKEN` is passed on as gRPC's
// authorization header. Errors: the HTTP status that Google's API guidelines give the gRPC code
// (NOT_FOUND 404, INVALID_ARGUMENT 400, UNAUTHENTICATED 401, ...), body
// {"error": {"code": 404, "message": "...", "status": "NOT_FOUND"}}; a body that is not JSON of
// the request message is 400 INVALID_ARGUMENT naming the parser's complaint.
//
// Server-sent events: each JobEvent as `id: SEQ`, `event: job_event`, `data: JSON`; the end of
// the job's stream as `event: end`; a failure after the stream started as `event: error` with
// the error body; a comment line every 15 s keeps idle connections open (and notices a client
// that left, whose gRPC call is then cancelled).
#ifndef LOGP_SERVER_HTTP_REST_GATEWAY_H_
#define LOGP_SERVER_HTTP_REST_GATEWAY_H_

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <memory>
#include <string>

namespace logp {

// The HTTP status of a gRPC code (google/rpc/code.proto's mapping; CANCELLED is 499).
int HttpStatusOf(grpc::StatusCode code);

// `message` in protobuf's JSON mapping as the gateway prints it (one line).
std::string ToJson(const google::protobuf::Message& message);

// The error body {"error": {"code", "message", "status"}} of `status`.
std::string ErrorJson(const grpc::Status& status);

// Sets `response` to `status`'s HTTP status and error body.
void ReplyError(const grpc::Status& status, httplib::Response* response);

class RestGateway {
 public:
  explicit RestGateway(std::shared_ptr<grpc::Channel> channel);
  ~RestGateway();

  // Adds the routes above to `server`. The gateway must outlive the server's handling.
  void Register(httplib::Server* server);

 private:
  struct Stubs;
  std::unique_ptr<Stubs> stubs_;
};

}  // namespace logp

#endif  // LOGP_SERVER_HTTP_REST_GATEWAY_H_
