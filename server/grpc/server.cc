// Thin gRPC adapters: each method reads its request, calls one core function, maps the status.
#include "server/grpc/server.h"

#include <glog/logging.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "logp/v1/dataset_service.grpc.pb.h"
#include "logp/v1/job_service.grpc.pb.h"
#include "logp/v1/model_service.grpc.pb.h"
#include "proto/cc/field_limits.h"
#include "proto/cc/status_macros.h"
#include "server/auth/policy.h"
#include "server/auth/rate_limiter.h"
#include "server/core/tenant_view.h"
#include "server/grpc/authentication.h"
#include "server/grpc/checked_service.h"
#include "server/grpc/health_service.h"
#include "server/grpc/in_flight_calls.h"
#include "server/grpc/protobuf_log.h"
#include "server/grpc/watch_job_service.h"

namespace logp {

grpc::Status ToGrpcStatus(const absl::Status& s) {
  grpc::StatusCode code;
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return grpc::Status::OK;
    case absl::StatusCode::kCancelled:
      code = grpc::StatusCode::CANCELLED;
      break;
    case absl::StatusCode::kInvalidArgument:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case absl::StatusCode::kDeadlineExceeded:
      code = grpc::StatusCode::DEADLINE_EXCEEDED;
      break;
    case absl::StatusCode::kNotFound:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case absl::StatusCode::kAlreadyExists:
      code = grpc::StatusCode::ALREADY_EXISTS;
      break;
    case absl::StatusCode::kPermissionDenied:
      code = grpc::StatusCode::PERMISSION_DENIED;
      break;
    case absl::StatusCode::kResourceExhausted:
      code = grpc::StatusCode::RESOURCE_EXHAUSTED;
      break;
    case absl::StatusCode::kFailedPrecondition:
      code = grpc::StatusCode::FAILED_PRECONDITION;
      break;
    case absl::StatusCode::kAborted:
      code = grpc::StatusCode::ABORTED;
      break;
    case absl::StatusCode::kOutOfRange:
      code = grpc::StatusCode::OUT_OF_RANGE;
      break;
    case absl::StatusCode::kUnimplemented:
      code = grpc::StatusCode::UNIMPLEMENTED;
      break;
    case absl::StatusCode::kUnavailable:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    case absl::StatusCode::kDataLoss:
      code = grpc::StatusCode::DATA_LOSS;
      break;
    case absl::StatusCode::kUnauthenticated:
      code = grpc::StatusCode::UNAUTHENTICATED;
      break;
    default:
      code = grpc::StatusCode::INTERNAL;
  }
  if (code == grpc::StatusCode::INTERNAL || code == grpc::StatusCode::DATA_LOSS) {
    LOG(ERROR) << "internal error returned to a client: " << s;
  }
  // Bounded: a message may quote client input, and the whole status must fit a client's
  // metadata limit (8 KiB by default).
  return grpc::Status(code, Truncated(s.message(), kMaxStatusMessageBytes));
}

namespace {

// How long a shutdown waits for the calls it stops (Score, Evaluate, Sample, WatchJob) to end
// before it goes on to close the connections, which cancels them: they end within a batch or an
// event unless their client does not read.
constexpr absl::Duration kStopWait = absl::Milliseconds(250);

// The client's deadline; InfiniteFuture() when it set none.
absl::Time ClientDeadline(const grpc::ServerContext& ctx) {
  const auto d = ctx.deadline();
  // gRPC reports "no deadline" as the largest time point (or one centuries away).
  if (d >= std::chrono::system_clock::now() + std::chrono::hours(24 * 365 * 100)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(d);
}

template <typename T>
void CopyPage(const Page<T>& page, google::protobuf::RepeatedPtrField<T>* items,
              std::string* token) {
  for (const auto& item : page.items) *items->Add() = item;
  *token = page.next_page_token;
}

// The services' typed methods. They are served through CheckedServices (see Services below), so
// a request that does not parse never reaches them.
class DatasetServiceImpl final {
 public:
  explicit DatasetServiceImpl(Core* core) : core_(core) {}

  // Reads raw messages, so that one that does not parse is refused, not taken for the end of the
  // upload. A message that does not parse reaches the core cleared, which it refuses (the first
  // must be a header, every later one a chunk): nothing is stored.
  grpc::Status CreateDataset(grpc::ServerContext* ctx, const Principal& who,
                             grpc::ServerReader<grpc::ByteBuffer>* raw, v1::Dataset* response) {
    ParsingReader<v1::CreateDatasetRequest> reader(raw);
    auto ds =
        View(who).CreateDataset([&reader](v1::CreateDatasetRequest* r) { return reader.Read(r); },
                                [ctx] { return ctx->IsCancelled(); });
    if (!reader.status().ok()) return reader.status();
    if (!ds.ok()) return ToGrpcStatus(ds.status());
    *response = *ds;
    LOG(INFO) << "dataset " << ds->id() << " stored: " << ds->num_records() << " x " << ds->dim();
    return grpc::Status::OK;
  }
  grpc::Status GetDataset(grpc::ServerContext*, const Principal& who,
                          const v1::GetDatasetRequest* req, v1::Dataset* response) {
    auto ds = View(who).GetDataset(req->id());
    if (!ds.ok()) return ToGrpcStatus(ds.status());
    *response = *ds;
    return grpc::Status::OK;
  }
  grpc::Status ListDatasets(grpc::ServerContext*, const Principal& who,
                            const v1::ListDatasetsRequest* req,
                            v1::ListDatasetsResponse* response) {
    auto page = View(who).ListDatasets(req->page_size(), req->page_token());
    if (!page.ok()) return ToGrpcStatus(page.status());
    CopyPage(*page, response->mutable_datasets(), response->mutable_next_page_token());
    return grpc::Status::OK;
  }
  grpc::Status DeleteDataset(grpc::ServerContext*, const Principal& who,
                             const v1::DeleteDatasetRequest* req, v1::DeleteDatasetResponse*) {
    return ToGrpcStatus(View(who).DeleteDataset(req->id()));
  }

 private:
  TenantView View(const Principal& who) { return TenantView(core_, ScopeOf(who)); }
  Core* core_;
};

// The sync methods of JobService; WatchJob is served by WatchJobService (async), admitted by
// AdmitWatch.
class JobServiceImpl final {
 public:
  JobServiceImpl(Core* core, InFlightCalls* calls) : core_(core), calls_(calls) {}

  grpc::Status CreateJob(grpc::ServerContext*, const Principal& who,
                         const v1::CreateJobRequest* req, v1::Job* response) {
    return Reply(View(who).CreateJob(req->spec(), req->request_id()), response);
  }
  grpc::Status GetJob(grpc::ServerContext*, const Principal& who, const v1::GetJobRequest* req,
                      v1::Job* response) {
    return Reply(View(who).GetJob(req->id()), response);
  }
  grpc::Status ListJobs(grpc::ServerContext*, const Principal& who, const v1::ListJobsRequest* req,
                        v1::ListJobsResponse* response) {
    auto page = View(who).ListJobs(req->page_size(), req->page_token());
    if (!page.ok()) return ToGrpcStatus(page.status());
    CopyPage(*page, response->mutable_jobs(), response->mutable_next_page_token());
    return grpc::Status::OK;
  }
  grpc::Status CancelJob(grpc::ServerContext*, const Principal& who,
                         const v1::CancelJobRequest* req, v1::Job* response) {
    return Reply(View(who).CancelJob(req->id()), response);
  }
  // Whether `who` may watch the job: only a job the caller sees is watched (a job never changes
  // owner); another tenant's is answered as an unknown one. (A negative from_seq is
  // INVALID_ARGUMENT first, from the stream's first read: it reads nothing.)
  grpc::Status AdmitWatch(const Principal& who, const v1::WatchJobRequest& req) {
    if (req.from_seq() < 0) return grpc::Status::OK;
    return ToGrpcStatus(View(who).GetJob(req.id()).status());
  }

 private:
  TenantView View(const Principal& who) { return TenantView(core_, ScopeOf(who)); }
  static grpc::Status Reply(absl::StatusOr<v1::Job> job, v1::Job* response) {
    if (!job.ok()) return ToGrpcStatus(job.status());
    *response = std::move(*job);
    return grpc::Status::OK;
  }
  Core* core_;
  InFlightCalls* calls_;
};

// Score, Evaluate and Sample stop at their next batch when the server shuts down, and answer
// UNAVAILABLE (the work was not done; retry later or elsewhere).
// Score and Evaluate are charged to the caller's records_scored_per_second quota first.
class ModelServiceImpl final {
 public:
  ModelServiceImpl(Core* core, InFlightCalls* calls)
      : core_(core), calls_(calls), scoring_rate_(core->options().quotas) {}

  grpc::Status GetModel(grpc::ServerContext*, const Principal& who, const v1::GetModelRequest* req,
                        v1::Model* response) {
    auto m = View(who).GetModel(req->id());
    if (!m.ok()) return ToGrpcStatus(m.status());
    *response = *m;
    return grpc::Status::OK;
  }
  grpc::Status ListModels(grpc::ServerContext*, const Principal& who,
                          const v1::ListModelsRequest* req, v1::ListModelsResponse* response) {
    auto page = View(who).ListModels(req->page_size(), req->page_token());
    if (!page.ok()) return ToGrpcStatus(page.status());
    CopyPage(*page, response->mutable_models(), response->mutable_next_page_token());
    return grpc::Status::OK;
  }
  grpc::Status Score(grpc::ServerContext* ctx, const Principal& who, const v1::ScoreRequest* req,
                     v1::ScoreResponse* response) {
    if (absl::Status rate =
            scoring_rate_.Admit(who.tenant, static_cast<int64_t>(req->records().num_records()));
        !rate.ok()) {
      return ToGrpcStatus(rate);
    }
    const CallControl call = Control(ctx);
    auto r = View(who).Score(*req, call);
    if (!r.ok()) return CallStatus(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }
  // Marginal and Impute (conditionals): charged to the scoring quota like Score.
  grpc::Status Marginal(grpc::ServerContext* ctx, const Principal& who,
                        const v1::MarginalRequest* req, v1::MarginalResponse* response) {
    return Conditional(ctx, who, req, response, &TenantView::Marginal);
  }
  grpc::Status Impute(grpc::ServerContext* ctx, const Principal& who, const v1::ImputeRequest* req,
                      v1::ImputeResponse* response) {
    return Conditional(ctx, who, req, response, &TenantView::Impute);
  }
  template <typename Req, typename Resp>
  grpc::Status Conditional(grpc::ServerContext* ctx, const Principal& who, const Req* req,
                           Resp* response,
                           absl::StatusOr<Resp> (TenantView::*method)(const Req&,
                                                                      const CallControl&)) {
    if (absl::Status rate =
            scoring_rate_.Admit(who.tenant, static_cast<int64_t>(req->records().num_records()));
        !rate.ok()) {
      return ToGrpcStatus(rate);
    }
    TenantView view = View(who);
    auto r = (view.*method)(*req, Control(ctx));
    if (!r.ok()) return CallStatus(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }
  grpc::Status Evaluate(grpc::ServerContext* ctx, const Principal& who,
                        const v1::EvaluateRequest* req, v1::EvaluateResponse* response) {
    TenantView view = View(who);
    if (absl::StatusOr<v1::Dataset> ds = view.GetDataset(req->dataset_id()); ds.ok()) {
      if (absl::Status rate =
              scoring_rate_.Admit(who.tenant, static_cast<int64_t>(ds->num_records()));
          !rate.ok()) {
        return ToGrpcStatus(rate);
      }
    }
    const CallControl call = Control(ctx);
    auto r = view.Evaluate(*req, call);
    if (!r.ok()) return CallStatus(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }
  grpc::Status Sample(grpc::ServerContext* ctx, const Principal& who, const v1::SampleRequest* req,
                      grpc::ServerWriter<v1::SampleResponse>* writer) {
    const CallControl call = Control(ctx);
    return CallStatus(View(who).Sample(
        *req, [writer](const v1::SampleResponse& r) { return writer->Write(r); }, call));
  }
  // The TorchScript file in chunks of kExportChunkBytes; CANCELLED when the client goes away.
  grpc::Status ExportModel(grpc::ServerContext*, const Principal& who,
                           const v1::ExportModelRequest* req,
                           grpc::ServerWriter<v1::ExportModelResponse>* writer) {
    absl::StatusOr<std::string> file = View(who).ExportModel(*req);
    if (!file.ok()) return ToGrpcStatus(file.status());
    constexpr size_t kExportChunkBytes = size_t{1} << 20;
    v1::ExportModelResponse chunk;
    for (size_t pos = 0; pos < file->size(); pos += kExportChunkBytes) {
      chunk.set_data(file->substr(pos, kExportChunkBytes));
      if (!writer->Write(chunk)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      }
    }
    return grpc::Status::OK;
  }
  // Charged as two scorings of the dataset (each model scores every record).
  grpc::Status CompareModels(grpc::ServerContext* ctx, const Principal& who,
                             const v1::CompareModelsRequest* req,
                             v1::CompareModelsResponse* response) {
    TenantView view = View(who);
    if (absl::StatusOr<v1::Dataset> ds = view.GetDataset(req->dataset_id()); ds.ok()) {
      if (absl::Status rate =
              scoring_rate_.Admit(who.tenant, 2 * static_cast<int64_t>(ds->num_records()));
          !rate.ok()) {
        return ToGrpcStatus(rate);
      }
    }
    auto r = view.CompareModels(*req, Control(ctx));
    if (!r.ok()) return CallStatus(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }

 private:
  // The call's deadline (capped by --max_request_seconds) and cancellation, for the core. A
  // shutdown stops the call as a cancellation does.
  CallControl Control(grpc::ServerContext* ctx) const {
    return CallControl(
        CappedDeadline(ClientDeadline(*ctx), core_->options().scoring.max_request_seconds),
        [ctx, calls = calls_] { return calls->stopping() || ctx->IsCancelled(); });
  }
  // The call's status; one the shutdown stopped is UNAVAILABLE.
  grpc::Status CallStatus(const absl::Status& status) const {
    if (absl::IsCancelled(status) && calls_->stopping()) return ToGrpcStatus(ShuttingDownError());
    return ToGrpcStatus(status);
  }
  TenantView View(const Principal& who) { return TenantView(core_, ScopeOf(who)); }
  Core* core_;
  InFlightCalls* calls_;
  ScoringRateLimiter scoring_rate_;
};

}  // namespace

// The typed implementations and the CheckedServices gRPC serves them through.
struct LogpServer::Services {
  Services(Core* core, AuthTokensFile* tokens, AuditSink* audit)
      : auth(tokens, audit),
        datasets(core),
        jobs(core, &calls),
        models(core, &calls),
        checked_datasets(Descriptor(v1::DatasetService::service_full_name()), &calls, &auth),
        checked_jobs(Descriptor(v1::JobService::service_full_name()), &calls, &auth),
        checked_models(Descriptor(v1::ModelService::service_full_name()), &calls, &auth),
        watch(&checked_jobs, &core->jobs(), &calls,
              [this](const grpc::ServerContext& ctx, const v1::WatchJobRequest& req) {
                Principal who;
                grpc::Status admitted =
                    checked_jobs.Admit(ctx, Access::kRead, "WatchJob", &req, &who);
                if (!admitted.ok()) return admitted;
                return jobs.AdmitWatch(who, req);
              }) {
    constexpr Access kRead = Access::kRead, kWrite = Access::kWrite;
    using D = DatasetServiceImpl;
    checked_datasets.ClientStreaming<v1::CreateDatasetRequest>("CreateDataset", kWrite, &datasets,
                                                               &D::CreateDataset);
    checked_datasets.Unary("GetDataset", kRead, &datasets, &D::GetDataset);
    checked_datasets.Unary("ListDatasets", kRead, &datasets, &D::ListDatasets);
    checked_datasets.Unary("DeleteDataset", kWrite, &datasets, &D::DeleteDataset);
    using J = JobServiceImpl;
    checked_jobs.Unary("CreateJob", kWrite, &jobs, &J::CreateJob);
    checked_jobs.Unary("GetJob", kRead, &jobs, &J::GetJob);
    checked_jobs.Unary("ListJobs", kRead, &jobs, &J::ListJobs);
    checked_jobs.Unary("CancelJob", kWrite, &jobs, &J::CancelJob);
    using M = ModelServiceImpl;
    checked_models.Unary("GetModel", kRead, &models, &M::GetModel);
    checked_models.Unary("ListModels", kRead, &models, &M::ListModels);
    constexpr auto kStop = InFlightCalls::AtShutdown::kStop;
    checked_models.Unary("Score", kRead, &models, &M::Score, kStop);
    checked_models.Unary("Evaluate", kRead, &models, &M::Evaluate, kStop);
    checked_models.ServerStreaming("Sample", kRead, &models, &M::Sample, kStop);
    checked_models.ServerStreaming("ExportModel", kRead, &models, &M::ExportModel, kStop);
    checked_models.Unary("CompareModels", kRead, &models, &M::CompareModels, kStop);
    checked_models.Unary("Marginal", kRead, &models, &M::Marginal, kStop);
    checked_models.Unary("Impute", kRead, &models, &M::Impute, kStop);
  }
  static const google::protobuf::ServiceDescriptor* Descriptor(const char* name) {
    const auto* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
    CHECK(service != nullptr) << name;
    return service;
  }
  // Every method of every service is served.
  absl::Status CheckComplete() const {
    for (const CheckedService* s : {&checked_datasets, &checked_jobs, &checked_models}) {
      for (const std::string& m : s->Missing()) {
        return absl::InternalError("method " + m + " is not served");
      }
    }
    return absl::OkStatus();
  }

  InFlightCalls calls;  // first: the services below use it
  Authentication auth;
  DatasetServiceImpl datasets;
  JobServiceImpl jobs;
  ModelServiceImpl models;
  CheckedService checked_datasets;
  CheckedService checked_jobs;
  CheckedService checked_models;
  WatchJobService watch;  // after checked_jobs, on which it registers WatchJob
  HealthService health;
};

absl::StatusOr<std::unique_ptr<LogpServer>> LogpServer::Start(Core* core,
                                                              const ServerOptions& options) {
  RouteProtobufLogToGlog();
  std::unique_ptr<LogpServer> s(new LogpServer());
  s->core_ = core;
  s->services_ = std::make_unique<Services>(core, options.auth_tokens, options.audit);
  if (absl::Status complete = s->services_->CheckComplete(); !complete.ok()) return complete;
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (options.tls.enabled()) {
    ASSIGN_OR_RETURN(s->certificates_, ServerCertificates::Load(options.tls));
    credentials = s->certificates_->credentials();
  }
  // A process-wide setting: every server built from now on gets reflection (the health port takes
  // it off its own builder).
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  if (!options.health_listen_address.empty()) {
    ASSIGN_OR_RETURN(s->health_, HealthOnlyServer::Start(options.health_listen_address));
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, credentials, &s->port_);
  if (!options.reflection) builder.SetOption(WithoutServerReflection());
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  if (options.sync_min_pollers > 0) {
    builder.SetSyncServerOption(grpc::ServerBuilder::MIN_POLLERS, options.sync_min_pollers);
  }
  if (options.sync_max_pollers > 0) {
    builder.SetSyncServerOption(grpc::ServerBuilder::MAX_POLLERS, options.sync_max_pollers);
  }
  builder.RegisterService(&s->services_->checked_datasets);
  builder.RegisterService(&s->services_->checked_jobs);
  builder.RegisterService(&s->services_->checked_models);
  builder.RegisterService(&s->services_->health);
  s->services_->watch.AddTo(&builder);
  if (!options.interceptors.empty()) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    for (const auto& make : options.interceptors) creators.push_back(make());
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    s->server_.reset();  // nothing to drain
    return absl::UnavailableError("cannot listen on " + options.listen_address);
  }
  s->services_->watch.Start();
  s->services_->health.SetServing(true);
  if (s->health_) s->health_->SetServing(true);
  return s;
}

LogpServer::~LogpServer() { Shutdown(absl::Seconds(5)); }

int LogpServer::TEST_CallsInFlight() { return services_->calls.TEST_Count(); }

std::shared_ptr<grpc::Channel> LogpServer::InProcessChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  return server_->InProcessChannel(args);
}

void LogpServer::Shutdown(absl::Duration grace) {
  Drain(grace);
  Close();
}

void LogpServer::Drain(absl::Duration grace) {
  if (drained_ || server_ == nullptr) return;  // done, or never started
  drained_ = true;
  const absl::Time deadline = absl::Now() + grace;
  InFlightCalls& calls = services_->calls;
  services_->health.SetServing(false);
  if (health_) health_->SetServing(false);
  calls.BeginShutdown();  // new calls are refused; Score, Evaluate and Sample stop
  core_->Shutdown();      // ends watch streams and training (running jobs checkpoint)
  // A stopped call ends within a batch or an event, and its client is told why; one that has not
  // by then waits on a client that does not read, or is in a long batch: Close cancels it.
  const absl::Time stopped = std::min(deadline, absl::Now() + kStopWait);
  if (const int n = calls.WaitUntilEnded(InFlightCalls::AtShutdown::kStop, stopped); n > 0) {
    LOG(INFO) << "shutdown: " << n << " stopped calls have not ended yet";
  }
  if (const int n = calls.WaitUntilEnded(InFlightCalls::AtShutdown::kFinish, deadline); n > 0) {
    LOG(WARNING) << "shutdown: " << n << " calls still in flight after the grace period of "
                 << grace << "; cancelling them";
  }
}

void LogpServer::Close() {
  Drain(absl::ZeroDuration());
  if (closed_ || server_ == nullptr) return;
  closed_ = true;
  // No call is left that may still finish. gRPC's graceful shutdown would now wait for every
  // client to close its connection after the GOAWAY, which an idle client only notices when its
  // channel next polls (every 5 s by default) and a stopped one never does: a deadline of now
  // closes the connections, cancelling what is left.
  services_->health.Shutdown();  // ends its Watch streams, which the server would wait for
  server_->Shutdown(std::chrono::system_clock::now());
  services_->watch.Stop();  // after the server's Shutdown, as gRPC requires of its queues
  if (health_) health_->Shutdown();
}

}  // namespace logp
