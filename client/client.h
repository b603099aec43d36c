// liblogp_client: a thin C++ client for logpd. Every call returns absl::Status / StatusOr with the
// server's gRPC status code and message carried over unchanged.
//
// Thread-safety: a Client may be used from several threads at once (gRPC stubs are thread-safe).
#ifndef LOGP_CLIENT_CLIENT_H_
#define LOGP_CLIENT_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "logp/v1/dataset_service.grpc.pb.h"
#include "logp/v1/job_service.grpc.pb.h"
#include "logp/v1/model_service.grpc.pb.h"
#include "proto/cc/records.h"

namespace logp {

// True for a server-issued job id ("job-..."), which Score, Evaluate and Sample accept in place
// of a model id.
bool IsJobId(const std::string& id);

// Converts a grpc::Status to an absl::Status with the same code and message.
absl::Status FromGrpcStatus(const grpc::Status& status);

struct ClientOptions {
  // Deadline of unary calls (uploads, watches and sample streams have none by default).
  absl::Duration rpc_timeout = absl::Seconds(60);
  // Largest message the client accepts or sends (default 64 MiB).
  int max_message_bytes = 64 << 20;
  // Bytes of records per upload chunk (default 1 MiB).
  int64_t upload_chunk_bytes = 1 << 20;
  // Calls that are safe to repeat (Get*, List*, Score, Evaluate, and CreateJob / UploadDataset
  // with a request_id) are tried up to `max_attempts` times while the server answers UNAVAILABLE
  // (restarting, shutting down, not yet listening), waiting `initial_backoff` before the second
  // attempt and twice as long before each further one (at most `max_backoff`, +-20% jitter).
  // 1 turns retries off. Each attempt has its own rpc_timeout.
  int max_attempts = 5;
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(2);

  // --- transport security (Connect only) ---
  // TLS is on when use_tls is true or any tls_* field below is set; plaintext otherwise (the
  // default).
  bool use_tls = false;
  // PEM CA certificates the server's certificate must chain to; empty with TLS on: the
  // system's roots.
  std::string tls_ca_file;
  // PEM client certificate chain and its private key, for servers that require client
  // certificates (mutual TLS). Both or neither.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The name the server's certificate must carry, instead of the host of the target (e.g. when
  // connecting by IP address to a certificate issued for a DNS name).
  std::string tls_server_name;
  bool tls() const {
    return use_tls || !tls_ca_file.empty() || !tls_cert_file.empty() || !tls_key_file.empty() ||
           !tls_server_name.empty();
  }

  // If set, every call carries the metadata "authorization: Bearer <token>" (over TLS or
  // plaintext alike). The client never logs or prints it.
  std::string token;

  // --- several replicas (Connect only) ---
  // How calls spread over the addresses the target stands for: "round_robin" (each call to the
  // next reachable address) or "pick_first" (gRPC's default: one address until it fails).
  // Empty: round_robin for a target of several addresses, pick_first otherwise. A call that is
  // safe to repeat and meets UNAVAILABLE (a replica going down) is retried, and round_robin
  // sends the retry to another replica.
  std::string load_balancing;
};

// The gRPC target for Connect's `target`: "HOST:PORT" and gRPC URIs ("dns:///NAME:PORT",
// "ipv4:...", "unix:...") as they are; several addresses separated by commas
// ("10.0.0.1:50051,10.0.0.2:50051", or IPv6 as "[::1]:50051,[::1]:50052") become one ipv4: or
// ipv6: target. INVALID_ARGUMENT for an empty entry, an entry without a port, a host name in a
// list (use a DNS name that resolves to every replica instead: dns:///NAME:PORT) or a list mixing
// IPv4 and IPv6.
absl::StatusOr<std::string> GrpcTarget(const std::string& target);

// How to score families without an exact likelihood (the VAE); exact families ignore it.
struct ScoringOptions {
  // Unset: the model's default; 0: the ELBO; k >= 1: importance-weighted estimate with k samples.
  std::optional<int32_t> importance_samples;
  // Seed of the importance samples.
  uint64_t seed = 0;
  // --- analytics (ScoreRequest.reference_model_id, .anomaly, .typicality; Score only) ---
  // A background model: the response carries log_ratio.
  std::string reference_model_id;
  // Anomaly p-values (and BH / alpha flags), the typicality test of all the records as one
  // batch. With either, ScoreAll sends the records in one request (BH and the batch test are
  // over one request's records), so at most the server's per-request record limit.
  std::optional<v1::AnomalyOptions> anomaly;
  std::optional<v1::TypicalityOptions> typicality;
};

// Called during uploads with (records sent, total records).
using UploadProgressFn = std::function<void(int64_t sent, int64_t total)>;
// Called for every watched event; return false to stop watching (the call then returns OK).
using JobEventFn = std::function<bool(const v1::JobEvent& event)>;

class Client {
 public:
  // Connects (lazily) to `target`, e.g. "localhost:50051", in plaintext or over TLS (see
  // ClientOptions::tls()). INVALID_ARGUMENT if a TLS file cannot be read or a client certificate
  // comes without its key (or the reverse).
  //
  // When the connection fails because one side speaks TLS and the other does not, or the TLS
  // handshake fails, calls return UNAVAILABLE with a message that says so and what to change,
  // naming the settings by logpctl's flags (--tls_ca_file for tls_ca_file, and so on); gRPC's
  // own message follows in brackets:
  // - plaintext client, the server closes the connection at once (a TLS server does):
  //   "the server at T closed the connection during the handshake: it may require TLS; ...";
  // - TLS client, the server answers something else than TLS ("wrong version number"):
  //   "TLS handshake with T failed: it may not serve TLS; ...";
  // - TLS client, the server's certificate does not verify: "... is not trusted ...";
  // - TLS client, the server closes the connection during the handshake (a mutual-TLS server
  //   refusing a missing, expired or foreign client certificate): "... it may require a client
  //   certificate signed by a CA it trusts ...".
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const std::string& target,
                                                         const ClientOptions& options = {});
  // Uses an existing channel (in-process tests).
  explicit Client(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options = {});

  // --- datasets ---
  // Uploads `records` (kind, cols and num_categories taken from it) in chunks. With a
  // `request_id` (see DatasetHeader.request_id) the upload is idempotent and is retried whole
  // while the server is UNAVAILABLE.
  absl::StatusOr<v1::Dataset> UploadDataset(const std::string& name, const RecordMatrix& records,
                                            const v1::ImageShape* image_shape = nullptr,
                                            const UploadProgressFn& progress = nullptr,
                                            const std::string& request_id = "");
  // Sends exactly the given requests as one CreateDataset stream (for tests of malformed input).
  absl::StatusOr<v1::Dataset> UploadRaw(const std::vector<v1::CreateDatasetRequest>& requests);
  absl::StatusOr<v1::Dataset> GetDataset(const std::string& id);
  absl::StatusOr<v1::ListDatasetsResponse> ListDatasets(int32_t page_size = 0,
                                                        const std::string& page_token = "");
  absl::Status DeleteDataset(const std::string& id);

  // --- jobs ---
  // With a `request_id` (see CreateJobRequest.request_id) the call is idempotent and is retried
  // while the server is UNAVAILABLE; without one it is tried once.
  absl::StatusOr<v1::Job> CreateJob(const v1::JobSpec& spec, const std::string& request_id = "");
  absl::StatusOr<v1::Job> GetJob(const std::string& id);
  absl::StatusOr<v1::ListJobsResponse> ListJobs(int32_t page_size = 0,
                                                const std::string& page_token = "");
  absl::StatusOr<v1::Job> CancelJob(const std::string& id);
  // Streams the job's events from `from_seq` to `on_event` until the job ends (the stream
  // closes), on_event returns false, or an error occurs.
  absl::Status WatchJob(const std::string& id, int64_t from_seq, const JobEventFn& on_event);
  // Watches until the job ends and returns its final state.
  absl::StatusOr<v1::Job> WaitForJob(const std::string& id, const JobEventFn& on_event = nullptr);

  // --- models ---
  absl::StatusOr<v1::Model> GetModel(const std::string& id);
  absl::StatusOr<v1::ListModelsResponse> ListModels(int32_t page_size = 0,
                                                    const std::string& page_token = "");
  // Score, ScoreAll, Evaluate and Sample take a model id, or a job id ("job-...") to use that
  // job's newest checkpoint (a running job) or its model (a finished one).
  // log p(x) in nats for every row of `records` (sent in requests of at most `batch` records).
  absl::StatusOr<std::vector<double>> Score(const std::string& model_id,
                                            const RecordMatrix& records, int64_t batch = 10000);
  // Scores with their kind, importance samples and standard errors (ESTIMATE), concatenated
  // over requests of at most `batch` records.
  absl::StatusOr<v1::ScoreResponse> ScoreAll(const std::string& model_id,
                                             const RecordMatrix& records,
                                             const ScoringOptions& options, int64_t batch = 10000);
  // Sends one ScoreRequest as given (for tests and benchmarks).
  absl::StatusOr<v1::ScoreResponse> ScoreRaw(const v1::ScoreRequest& request);
  // Per-dimension explanations (client/client_explain.cc): log_prob and dimension_log_prob
  // (N x D row-major, log p(x_d | x_<d)) of every record, concatenated over requests that stay
  // within the server's per-request cap on terms. FAILED_PRECONDITION for a family without them.
  absl::StatusOr<v1::ScoreResponse> ScorePerDimension(const std::string& model_id,
                                                      const RecordMatrix& records);
  absl::StatusOr<v1::EvaluateResponse> Evaluate(const std::string& model_id,
                                                const std::string& dataset_id,
                                                const ScoringOptions& options = {});
  // Draws `n` samples; the result has the model's kind, dim and categories.
  absl::StatusOr<RecordMatrix> Sample(const std::string& model_id, uint64_t n, uint64_t seed);
  // Writes the published model `model_id` as a TorchScript file (torch.jit.load) to `path`,
  // atomically: the chunks go to a temporary file beside it, which is flushed and renamed over
  // `path` only when the whole stream arrived; on any error `path` is untouched. Returns the
  // file's size in bytes. NOT_FOUND for an unknown model; UNIMPLEMENTED for a family the server
  // cannot export; INTERNAL (errno text) when the file cannot be written.
  absl::StatusOr<int64_t> ExportModel(const std::string& model_id, const std::string& path);
  // CompareModels: the paired test of two published models' log-likelihoods on a stored
  // dataset (compare.proto). Retried on UNAVAILABLE like Evaluate.
  absl::StatusOr<v1::CompareModelsResponse> CompareModels(const std::string& model_a_id,
                                                          const std::string& model_b_id,
                                                          const std::string& dataset_id,
                                                          const ScoringOptions& options = {});

  // --- conditionals (client_conditional.cc) ---
  // One Marginal / Impute request as given (conditional.proto); retried while UNAVAILABLE.
  absl::StatusOr<v1::MarginalResponse> Marginal(const v1::MarginalRequest& request);
  absl::StatusOr<v1::ImputeResponse> Impute(const v1::ImputeRequest& request);

  // --- health ---
  // Asks the standard health service (grpc.health.v1 Check) about `service` ("": the server as
  // a whole): true if SERVING, false if NOT_SERVING (starting, or draining on its way down);
  // NOT_FOUND for a service the server does not know, and the call's error when it cannot be
  // reached. One attempt, rpc_timeout; no token needed (logpd answers health unauthenticated).
  absl::StatusOr<bool> Health(const std::string& service = "");

 private:
  // Every call's context is prepared here: rpc_timeout if `deadline`, the token if any.
  void Prepare(grpc::ClientContext* context, bool deadline = true) const;
  // A call's status, with a connection failure that looks like a TLS mismatch explained (see
  // Connect).
  absl::Status StatusOf(const grpc::Status& status) const;
  // Runs `attempt` (with a fresh context, carrying rpc_timeout if `deadline`) once, or, if `retry`,
  // again with backoff while it returns UNAVAILABLE (see ClientOptions::max_attempts).
  absl::Status Call(const std::function<grpc::Status(grpc::ClientContext*)>& attempt, bool retry,
                    bool deadline = true) const;

  ClientOptions options_;
  std::string target_ = "the server";  // as given to Connect, for messages
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DatasetService::Stub> datasets_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::ModelService::Stub> models_;
};

}  // namespace logp

#endif  // LOGP_CLIENT_CLIENT_H_
