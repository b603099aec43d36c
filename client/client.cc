#include "client/client.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "proto/cc/status_macros.h"

namespace logp {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  // grpc::StatusCode and absl::StatusCode share their numeric values.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

namespace {

// The contents of a PEM file named by `flag`.
absl::StatusOr<std::string> ReadPemFile(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", flag, " ", path, ": ", std::strerror(errno)));
  }
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat("cannot read ", flag, " ", path));
  if (!absl::StrContains(bytes, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, " is not a PEM file"));
  }
  return bytes;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TlsCredentials(
    const ClientOptions& options) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert_file and --tls_key_file go together: a client certificate needs its key");
  }
  grpc::SslCredentialsOptions ssl;  // empty roots: the system's
  if (!options.tls_ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile("--tls_ca_file", options.tls_ca_file));
  }
  if (!options.tls_cert_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPemFile("--tls_cert_file", options.tls_cert_file));
    ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPemFile("--tls_key_file", options.tls_key_file));
  }
  return grpc::SslCredentials(ssl);
}

// gRPC sends metadata values of visible ASCII characters and spaces only.
bool IsValidToken(const std::string& token) {
  return std::all_of(token.begin(), token.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

}  // namespace

absl::StatusOr<std::string> GrpcTarget(const std::string& target) {
  if (target.find(',') == std::string::npos) return target;
  // gRPC's own URIs, lists included ("ipv4:A:P,B:P"), are gRPC's to parse.
  const std::string scheme = target.substr(0, target.find(':'));
  for (const char* own : {"dns", "ipv4", "ipv6", "unix", "unix-abstract"}) {
    if (scheme == own) return target;
  }
  std::string v4, v6;
  for (absl::string_view entry : absl::StrSplit(target, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    const std::string quoted = absl::StrCat("'", entry, "' in the server list '", target, "'");
    const size_t last = entry.rfind(':');
    if (entry.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the server list '", target, "' has an empty entry"));
    }
    if (last == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(quoted, " has no port (IP:PORT)"));
    }
    int port = 0;
    if (!absl::SimpleAtoi(entry.substr(last + 1), &port) || port <= 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(quoted, " has no valid port"));
    }
    absl::string_view host = entry.substr(0, last);
    const bool bracketed = absl::ConsumePrefix(&host, "[") && absl::ConsumeSuffix(&host, "]");
    unsigned char ip[16];
    const std::string h(host);
    std::string* list = nullptr;
    if (!bracketed && ::inet_pton(AF_INET, h.c_str(), ip) == 1) {
      list = &v4;
    } else if (bracketed && ::inet_pton(AF_INET6, h.c_str(), ip) == 1) {
      list = &v6;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          quoted,
          " is not an IP address and port: a list of servers takes IP addresses ([...] for "
          "IPv6); for host names use one DNS name that resolves to every server, "
          "dns:///NAME:PORT"));
    }
    absl::StrAppend(list, list->empty() ? "" : ",", entry);
  }
  if (!v4.empty() && !v6.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the server list '", target, "' mixes IPv4 and IPv6 addresses"));
  }
  return v4.empty() ? "ipv6:" + v6 : "ipv4:" + v4;
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const std::string& target,
                                                        const ClientOptions& options) {
  if (target.empty()) return absl::InvalidArgumentError("empty server address");
  if (!IsValidToken(options.token)) {
    // Never quote the token.
    return absl::InvalidArgumentError(
        "the token holds a character other than visible ASCII and spaces (a line break?)");
  }
  ASSIGN_OR_RETURN(const std::string grpc_target, GrpcTarget(target));
  grpc::ChannelArguments args;
  const bool several = grpc_target != target;
  std::string policy = options.load_balancing;
  if (policy.empty()) policy = several ? "round_robin" : "";
  if (!policy.empty() && policy != "round_robin" && policy != "pick_first") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown load-balancing policy '", policy, "' (round_robin or pick_first)"));
  }
  if (!policy.empty()) args.SetLoadBalancingPolicyName(policy);
  if (several) {
    // The name TLS checks the servers' certificates against, and the :authority of calls: the
    // first address's host (without it gRPC would take the whole list).
    std::string first(target.substr(0, target.find(',')));
    first = std::string(absl::StripAsciiWhitespace(first));
    std::string host = first.substr(0, first.rfind(':'));
    if (absl::StartsWith(host, "[")) host = host.substr(1, host.size() - 2);
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, first);
    if (options.tls() && options.tls_server_name.empty()) args.SetSslTargetNameOverride(host);
  }
  args.SetMaxSendMessageSize(options.max_message_bytes);
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  // Reconnect about as often as calls are retried (gRPC's own first reconnect waits 1 s).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options.initial_backoff)));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options.max_backoff)));
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (options.tls()) {
    ASSIGN_OR_RETURN(credentials, TlsCredentials(options));
    if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(grpc_target, credentials, args);
  if (channel == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot create a channel to ", target));
  }
  auto client = std::make_unique<Client>(std::move(channel), options);
  client->target_ = target;
  return client;
}

Client::Client(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options)
    : options_(options),
      channel_(std::move(channel)),
      datasets_(v1::DatasetService::NewStub(channel_)),
      jobs_(v1::JobService::NewStub(channel_)),
      models_(v1::ModelService::NewStub(channel_)) {}

void Client::Prepare(grpc::ClientContext* context, bool deadline) const {
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
  if (!deadline || options_.rpc_timeout == absl::InfiniteDuration()) return;
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(options_.rpc_timeout));
}

absl::Status Client::StatusOf(const grpc::Status& grpc_status) const {
  absl::Status status = FromGrpcStatus(grpc_status);
  if (!absl::IsUnavailable(status)) return status;
  const std::string original(status.message());
  // What gRPC 1.51 reports when the connection, not the call, failed: with pick_first, and
  // with round_robin (a list of servers).
  if (!absl::StrContains(original, "failed to connect") &&
      !absl::StrContains(original, "connections to all backends failing")) {
    return status;
  }
  const std::string server = target_.empty() ? "the server" : "the server at " + target_;
  const std::string with = target_.empty() ? "the server" : target_;
  const bool closed = absl::StrContains(original, "Socket closed") ||
                      absl::StrContains(original, "Connection reset");
  std::string explained;
  if (!options_.tls()) {
    if (closed) {
      explained = absl::StrCat(
          server,
          " closed the connection during the handshake: it may require TLS; connect with TLS "
          "(--tls_ca_file=CA.pem, or --tls to trust the system's CAs)");
    }
  } else if (absl::StrContains(absl::AsciiStrToLower(original), "wrong version number")) {
    explained = absl::StrCat("TLS handshake with ", with,
                             " failed: it may not serve TLS; connect in plaintext (without the "
                             "--tls* flags)");
  } else if (absl::StrContains(original, "certificate verify failed")) {
    explained = absl::StrCat(
        "TLS handshake with ", with, " failed: its certificate is not signed by a trusted CA (",
        options_.tls_ca_file.empty() ? std::string("the system's; pass --tls_ca_file=CA.pem")
                                     : "--tls_ca_file " + options_.tls_ca_file,
        ")");
  } else if (absl::StrContains(original, "not in peer certificate")) {
    explained = absl::StrCat(
        "TLS handshake with ", with, " failed: its certificate does not carry the name ",
        options_.tls_server_name.empty()
            ? "connected to; connect by a name it carries, or pass --tls_server_name=NAME"
            : options_.tls_server_name + " (--tls_server_name)");
  } else if (closed) {
    explained = absl::StrCat(
        server, " closed the connection during the TLS handshake: ",
        options_.tls_cert_file.empty()
            ? "it may require a client certificate (--tls_cert_file and --tls_key_file)"
            : "it may refuse the client certificate --tls_cert_file " + options_.tls_cert_file +
                  " (expired, or not signed by a CA it trusts)");
  }
  if (explained.empty()) return status;
  return absl::UnavailableError(absl::StrCat(explained, " [gRPC: ", original, "]"));
}

absl::Status Client::Call(const std::function<grpc::Status(grpc::ClientContext*)>& attempt,
                          bool retry, bool deadline) const {
  thread_local std::mt19937_64 rng(std::random_device{}());
  absl::Duration backoff = options_.initial_backoff;
  for (int n = 1;; ++n) {
    grpc::ClientContext context;
    Prepare(&context, deadline);
    absl::Status status = StatusOf(attempt(&context));
    if (!retry || !absl::IsUnavailable(status) || n >= options_.max_attempts) return status;
    absl::SleepFor(backoff * std::uniform_real_distribution<double>(0.8, 1.2)(rng));
    backoff = std::min(options_.max_backoff, backoff * 2);
  }
}

// --- datasets ---

absl::StatusOr<v1::Dataset> Client::UploadDataset(const std::string& name,
                                                  const RecordMatrix& records,
                                                  const v1::ImageShape* image_shape,
                                                  const UploadProgressFn& progress,
                                                  const std::string& request_id) {
  v1::CreateDatasetRequest header_request;
  v1::DatasetHeader* header = header_request.mutable_header();
  header->set_name(name);
  header->set_kind(records.kind);
  header->set_dim(static_cast<uint32_t>(records.cols));
  header->set_num_categories(static_cast<uint32_t>(records.num_categories));
  header->set_num_records(static_cast<uint64_t>(records.rows));
  if (image_shape != nullptr) *header->mutable_image_shape() = *image_shape;
  header->set_request_id(request_id);

  const int64_t row_bytes = std::max<int64_t>(
      1, RowBytes(CanonicalEncoding(records.kind, records.num_categories), records.cols));
  const int64_t rows_per_chunk = std::max<int64_t>(1, options_.upload_chunk_bytes / row_bytes);

  v1::Dataset dataset;
  absl::Status status = Call(
      [&](grpc::ClientContext* context) {
        std::unique_ptr<grpc::ClientWriter<v1::CreateDatasetRequest>> writer =
            datasets_->CreateDataset(context, &dataset);
        // A failed Write means the stream is broken; Finish then reports why.
        bool writing = writer->Write(header_request);
        v1::CreateDatasetRequest chunk_request;
        for (int64_t begin = 0; writing && begin < records.rows; begin += rows_per_chunk) {
          const int64_t end = std::min(records.rows, begin + rows_per_chunk);
          *chunk_request.mutable_chunk() = Encode(records, begin, end);
          writing = writer->Write(chunk_request);
          if (writing && progress) progress(end, records.rows);
        }
        if (writing) writer->WritesDone();
        return writer->Finish();
      },
      /*retry=*/!request_id.empty(), /*deadline=*/false);
  if (!status.ok()) return status;
  return dataset;
}

absl::StatusOr<v1::Dataset> Client::UploadRaw(
    const std::vector<v1::CreateDatasetRequest>& requests) {
  grpc::ClientContext context;
  Prepare(&context, /*deadline=*/false);
  v1::Dataset dataset;
  std::unique_ptr<grpc::ClientWriter<v1::CreateDatasetRequest>> writer =
      datasets_->CreateDataset(&context, &dataset);
  bool writing = true;
  for (const v1::CreateDatasetRequest& request : requests) {
    if (!(writing = writer->Write(request))) break;
  }
  if (writing) writer->WritesDone();
  absl::Status status = StatusOf(writer->Finish());
  if (!status.ok()) return status;
  return dataset;
}

absl::StatusOr<v1::Dataset> Client::GetDataset(const std::string& id) {
  v1::GetDatasetRequest request;
  request.set_id(id);
  v1::Dataset response;
  absl::Status status = Call(
      [&](grpc::ClientContext* context) {
        return datasets_->GetDataset(context, request, &response);
      },
      /*retry=*/true);
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::ListDatasetsResponse> Client::ListDatasets(int32_t page_size,
                                                              const std::string& page_token) {
  v1::ListDatasetsRequest request;
  request.set_page_size(page_size);
  request.set_page_token(page_token);
  v1::ListDatasetsResponse response;
  absl::Status status = Call(
      [&](grpc::ClientContext* context) {
        return datasets_->ListDatasets(context, request, &response);
      },
      /*retry=*/true);
  if (!status.ok()) return status;
  return response;
}

absl::Status Client::DeleteDataset(const std::string& id) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::DeleteDatasetRequest request;
  request.set_id(id);
  v1::DeleteDatasetResponse response;
  return StatusOf(datasets_->DeleteDataset(&context, request, &response));
}

// --- jobs ---

absl::StatusOr<v1::Job> Client::CreateJob(const v1::JobSpec& spec, const std::string& request_id) {
  v1::CreateJobRequest request;
  *request.mutable_spec() = spec;
  request.set_request_id(request_id);
  v1::Job response;
  absl::Status status = Call(
      [&](grpc::ClientContext* context) { return jobs_->CreateJob(context, request, &response); },
      /*retry=*/!request_id.empty());
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::Job> Client::GetJob(const std::string& id) {
  v1::GetJobRequest request;
  request.set_id(id);
  v1::Job response;
  absl::Status status =
      Call([&](grpc::ClientContext* context) { return jobs_->GetJob(context, request, &response); },
           /*retry=*/true);
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::ListJobsResponse> Client::ListJobs(int32_t page_size,
                                                      const std::string& page_token) {
  v1::ListJobsRequest request;
  request.set_page_size(page_size);
  request.set_page_token(page_token);
  v1::ListJobsResponse response;
  absl::Status status = Call(
      [&](grpc::ClientContext* context) { return jobs_->ListJobs(context, request, &response); },
      /*retry=*/true);
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::Job> Client::CancelJob(const std::string& id) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::CancelJobRequest request;
  request.set_id(id);
  v1::Job response;
  absl::Status status = StatusOf(jobs_->CancelJob(&context, request, &response));
  if (!status.ok()) return status;
  return response;
}

absl::Status Client::WatchJob(const std::string& id, int64_t from_seq, const JobEventFn& on_event) {
  grpc::ClientContext context;
  Prepare(&context, /*deadline=*/false);
  v1::WatchJobRequest request;
  request.set_id(id);
  request.set_from_seq(from_seq);
  std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader = jobs_->WatchJob(&context, request);
  v1::JobEvent event;
  while (reader->Read(&event)) {
    if (on_event && !on_event(event)) {
      // The caller is done: the CANCELLED status that Finish reports is expected.
      context.TryCancel();
      (void)reader->Finish();
      return absl::OkStatus();
    }
  }
  return StatusOf(reader->Finish());
}

absl::StatusOr<v1::Job> Client::WaitForJob(const std::string& id, const JobEventFn& on_event) {
  absl::Status status = WatchJob(id, 0, on_event);
  if (!status.ok()) return status;
  return GetJob(id);
}

// --- models ---

absl::StatusOr<v1::Model> Client::GetModel(const std::string& id) {
  v1::GetModelRequest request;
  request.set_id(id);
  v1::Model response;
  absl::Status status = Call(
      [&](grpc::ClientContext* context) { return models_->GetModel(context, request, &response); },
      /*retry=*/true);
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::ListModelsResponse> Client::ListModels(int32_t page_size,
                                                          const std::string& page_token) {
  v1::ListModelsRequest request;
  request.set_page_size(page_size);
  request.set_page_token(page_token);
  v1::ListModelsResponse response;
  absl::Status status = Call(
      [&](grpc::ClientContext* context) {
        return models_->ListModels(context, request, &response);
      },
      /*retry=*/true);
  if (!status.ok()) return status;
  return response;
}

bool IsJobId(const std::string& id) { return absl::StartsWith(id, "job-"); }

namespace {

// Server-issued ids say what they name: "job-..." targets a job's newest checkpoint.
template <typename Request>
void SetTarget(const std::string& id, Request* request) {
  if (IsJobId(id)) {
    request->set_job_id(id);
  } else {
    request->set_model_id(id);
  }
}

}  // namespace

absl::StatusOr<std::vector<double>> Client::Score(const std::string& model_id,
                                                  const RecordMatrix& records, int64_t batch) {
  absl::StatusOr<v1::ScoreResponse> all = ScoreAll(model_id, records, ScoringOptions{}, batch);
  if (!all.ok()) return all.status();
  return std::vector<double>(all->log_prob().begin(), all->log_prob().end());
}

absl::StatusOr<v1::ScoreResponse> Client::ScoreAll(const std::string& model_id,
                                                   const RecordMatrix& records,
                                                   const ScoringOptions& options, int64_t batch) {
  if (batch <= 0 || options.anomaly || options.typicality) {
    batch = std::max<int64_t>(1, records.rows);
  }
  v1::ScoreResponse all;
  v1::ScoreRequest request;
  SetTarget(model_id, &request);
  if (options.importance_samples) request.set_importance_samples(*options.importance_samples);
  request.set_reference_model_id(options.reference_model_id);
  if (options.anomaly) *request.mutable_anomaly() = *options.anomaly;
  if (options.typicality) *request.mutable_typicality() = *options.typicality;
  for (int64_t begin = 0; begin < records.rows; begin += batch) {
    const int64_t end = std::min(records.rows, begin + batch);
    *request.mutable_records() = Encode(records, begin, end);
    // Distinct importance samples per request, reproducible from the caller's seed.
    request.set_seed(options.seed + static_cast<uint64_t>(begin));
    absl::StatusOr<v1::ScoreResponse> response = ScoreRaw(request);
    if (!response.ok()) return response.status();
    if (response->log_prob_size() != end - begin) {
      return absl::InternalError(absl::StrCat("server returned ", response->log_prob_size(),
                                              " scores for ", end - begin, " records"));
    }
    all.mutable_log_prob()->MergeFrom(response->log_prob());
    all.mutable_standard_error()->MergeFrom(response->standard_error());
    all.set_score_kind(response->score_kind());
    all.set_importance_samples(response->importance_samples());
    all.set_checkpoint_step(response->checkpoint_step());
    // Analytics: per-record fields concatenate; the batch-level ones come from the one request.
    all.mutable_log_ratio()->MergeFrom(response->log_ratio());
    all.mutable_p_value()->MergeFrom(response->p_value());
    all.mutable_fdr_flagged()->MergeFrom(response->fdr_flagged());
    all.mutable_alpha_flagged()->MergeFrom(response->alpha_flagged());
    if (response->has_typicality()) *all.mutable_typicality() = response->typicality();
    all.set_fdr_threshold(response->fdr_threshold());
    all.set_num_fdr_flagged(response->num_fdr_flagged());
    all.set_num_reference_scores(response->num_reference_scores());
  }
  return all;
}

absl::StatusOr<v1::ScoreResponse> Client::ScoreRaw(const v1::ScoreRequest& request) {
  v1::ScoreResponse response;
  absl::Status status = Call(
      [&](grpc::ClientContext* context) { return models_->Score(context, request, &response); },
      /*retry=*/true);
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::EvaluateResponse> Client::Evaluate(const std::string& model_id,
                                                      const std::string& dataset_id,
                                                      const ScoringOptions& options) {
  v1::EvaluateRequest request;
  SetTarget(model_id, &request);
  request.set_dataset_id(dataset_id);
  if (options.importance_samples) request.set_importance_samples(*options.importance_samples);
  request.set_seed(options.seed);
  v1::EvaluateResponse response;
  absl::Status status = Call(
      [&](grpc::ClientContext* context) { return models_->Evaluate(context, request, &response); },
      /*retry=*/true);
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::CompareModelsResponse> Client::CompareModels(const std::string& model_a_id,
                                                                const std::string& model_b_id,
                                                                const std::string& dataset_id,
                                                                const ScoringOptions& options) {
  v1::CompareModelsRequest request;
  request.set_model_a_id(model_a_id);
  request.set_model_b_id(model_b_id);
  request.set_dataset_id(dataset_id);
  if (options.importance_samples) request.set_importance_samples(*options.importance_samples);
  request.set_seed(options.seed);
  v1::CompareModelsResponse response;
  absl::Status status = Call(
      [&](grpc::ClientContext* context) {
        return models_->CompareModels(context, request, &response);
      },
      /*retry=*/true);
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<RecordMatrix> Client::Sample(const std::string& model_id, uint64_t n,
                                            uint64_t seed) {
  // The kind and dim of the samples: the model's, or a job's training data's.
  v1::Model model;
  if (IsJobId(model_id)) {
    absl::StatusOr<v1::Job> job = GetJob(model_id);
    if (!job.ok()) return job.status();
    absl::StatusOr<v1::Dataset> ds = GetDataset(job->spec().dataset_id());
    if (!ds.ok()) return ds.status();
    model.set_kind(ds->kind());
    model.set_dim(ds->dim());
    model.set_num_categories(ds->num_categories());
  } else {
    absl::StatusOr<v1::Model> m = GetModel(model_id);
    if (!m.ok()) return m.status();
    model = *std::move(m);
  }
  absl::StatusOr<RecordMatrix> samples =
      RecordMatrix::Empty(model.kind(), model.dim(), static_cast<int32_t>(model.num_categories()));
  if (!samples.ok()) return samples.status();
  samples->Reserve(static_cast<int64_t>(n));

  grpc::ClientContext context;
  Prepare(&context, /*deadline=*/false);
  v1::SampleRequest request;
  SetTarget(model_id, &request);
  request.set_num_samples(n);
  request.set_seed(seed);
  std::unique_ptr<grpc::ClientReader<v1::SampleResponse>> reader =
      models_->Sample(&context, request);
  v1::SampleResponse response;
  while (reader->Read(&response)) {
    absl::Status status = DecodeAppend(response.records(), samples->rows, &*samples);
    if (!status.ok()) {
      context.TryCancel();
      (void)reader->Finish();
      return absl::InternalError(absl::StrCat("server sent malformed samples: ", status.message()));
    }
  }
  absl::Status status = StatusOf(reader->Finish());
  if (!status.ok()) return status;
  if (samples->rows != static_cast<int64_t>(n)) {
    return absl::InternalError(
        absl::StrCat("server sent ", samples->rows, " samples, expected ", n));
  }
  return samples;
}

absl::StatusOr<int64_t> Client::ExportModel(const std::string& model_id, const std::string& path) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create ", tmp, ": ", std::strerror(errno)));
  }
  auto fail = [&](absl::Status status) {
    std::fclose(f);
    std::remove(tmp.c_str());
    return status;
  };
  grpc::ClientContext context;
  Prepare(&context, /*deadline=*/false);
  v1::ExportModelRequest request;
  request.set_id(model_id);
  std::unique_ptr<grpc::ClientReader<v1::ExportModelResponse>> reader =
      models_->ExportModel(&context, request);
  v1::ExportModelResponse response;
  int64_t size = 0;
  while (reader->Read(&response)) {
    if (std::fwrite(response.data().data(), 1, response.data().size(), f) !=
        response.data().size()) {
      const int err = errno;
      context.TryCancel();
      (void)reader->Finish();
      return fail(absl::InternalError(absl::StrCat("writing ", tmp, ": ", std::strerror(err))));
    }
    size += static_cast<int64_t>(response.data().size());
  }
  if (absl::Status status = StatusOf(reader->Finish()); !status.ok()) return fail(status);
  if (std::fflush(f) != 0 || fsync(fileno(f)) != 0) {
    return fail(absl::InternalError(absl::StrCat("writing ", tmp, ": ", std::strerror(errno))));
  }
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("closing ", tmp, ": ", std::strerror(errno)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("renaming to ", path, ": ", std::strerror(err)));
  }
  return size;
}

// --- health ---

absl::StatusOr<bool> Client::Health(const std::string& service) {
  namespace health = grpc::health::v1;
  std::unique_ptr<health::Health::Stub> stub = health::Health::NewStub(channel_);
  health::HealthCheckRequest request;
  request.set_service(service);
  health::HealthCheckResponse response;
  RETURN_IF_ERROR(
      Call([&](grpc::ClientContext* context) { return stub->Check(context, request, &response); },
           /*retry=*/false));
  switch (response.status()) {
    case health::HealthCheckResponse::SERVING:
      return true;
    case health::HealthCheckResponse::NOT_SERVING:
      return false;
    default:
      return absl::UnknownError(
          absl::StrCat("the health service answered ",
                       health::HealthCheckResponse::ServingStatus_Name(response.status())));
  }
}

}  // namespace logp
