#include "server/core/tenant_view.h"

#include "proto/cc/status_macros.h"

namespace logp {

template <typename T>
absl::StatusOr<T> TenantView::Visible(absl::StatusOr<T> object, const char* what,
                                      const std::string& id) {
  if (absl::IsNotFound(object.status())) return UnknownIdError(what, id);
  RETURN_IF_ERROR(object.status());
  if (!scope_.Sees(object->tenant())) return UnknownIdError(what, id);
  object->set_tenant(OwnerOf(object->tenant()));
  return object;
}

template <typename T>
absl::StatusOr<Page<T>> TenantView::VisiblePage(absl::StatusOr<Page<T>> page) {
  RETURN_IF_ERROR(page.status());
  for (T& item : page->items) item.set_tenant(OwnerOf(item.tenant()));
  return page;
}

absl::StatusOr<v1::Dataset> TenantView::CreateDataset(
    const std::function<bool(v1::CreateDatasetRequest*)>& next,
    const std::function<bool()>& cancelled) {
  return core_->datasets().CreateFromStream(scope_.tenant(), next, cancelled);
}

absl::StatusOr<v1::Dataset> TenantView::GetDataset(const std::string& id) {
  return Visible(core_->datasets().Get(id), "dataset", id);
}

absl::StatusOr<Page<v1::Dataset>> TenantView::ListDatasets(int page_size,
                                                           const std::string& page_token) {
  return VisiblePage(core_->datasets().List(scope_.ListFilter(), page_size, page_token));
}

absl::Status TenantView::DeleteDataset(const std::string& id) {
  RETURN_IF_ERROR(GetDataset(id).status());
  return core_->DeleteDataset(id);
}

absl::StatusOr<v1::Job> TenantView::CreateJob(const v1::JobSpec& spec,
                                              const std::string& request_id) {
  return core_->jobs().CreateJob(scope_, spec, request_id);
}

absl::StatusOr<v1::Job> TenantView::GetJob(const std::string& id) {
  return Visible(core_->jobs().GetJob(id), "job", id);
}

absl::StatusOr<Page<v1::Job>> TenantView::ListJobs(int page_size, const std::string& page_token) {
  return VisiblePage(core_->jobs().ListJobs(scope_.ListFilter(), page_size, page_token));
}

absl::StatusOr<v1::Job> TenantView::CancelJob(const std::string& id) {
  RETURN_IF_ERROR(GetJob(id).status());
  ASSIGN_OR_RETURN(v1::Job job, core_->jobs().CancelJob(id));
  job.set_tenant(OwnerOf(job.tenant()));
  return job;
}

absl::StatusOr<v1::Model> TenantView::GetModel(const std::string& id) {
  return Visible(core_->models().Get(id), "model", id);
}

absl::StatusOr<Page<v1::Model>> TenantView::ListModels(int page_size,
                                                       const std::string& page_token) {
  return VisiblePage(core_->models().List(scope_.ListFilter(), page_size, page_token));
}

absl::StatusOr<ResolvedModel> TenantView::ResolveModel(const std::string& model_id,
                                                       const std::string& job_id) {
  if (!job_id.empty()) {
    RETURN_IF_ERROR(GetJob(job_id).status());
  } else if (!model_id.empty()) {
    RETURN_IF_ERROR(GetModel(model_id).status());
  }
  return core_->ResolveModel(model_id, job_id);
}

ModelResolver TenantView::Resolver() {
  return [this](const std::string& model_id, const std::string& job_id) {
    return ResolveModel(model_id, job_id);
  };
}

absl::StatusOr<v1::ScoreResponse> TenantView::Score(const v1::ScoreRequest& request,
                                                    const CallControl& call) {
  return ScoreRecords(Resolver(), request, core_->options().scoring, call, &core_->score_batcher());
}

absl::StatusOr<v1::MarginalResponse> TenantView::Marginal(const v1::MarginalRequest& request,
                                                          const CallControl& call) {
  return MarginalRecords(Resolver(), request, ConditionalLimits{}, call);
}

absl::StatusOr<v1::ImputeResponse> TenantView::Impute(const v1::ImputeRequest& request,
                                                      const CallControl& call) {
  return ImputeRecords(Resolver(), request, ConditionalLimits{}, call);
}

absl::StatusOr<v1::EvaluateResponse> TenantView::Evaluate(const v1::EvaluateRequest& request,
                                                          const CallControl& call) {
  if (!request.dataset_id().empty()) RETURN_IF_ERROR(GetDataset(request.dataset_id()).status());
  return EvaluateDataset(Resolver(), core_->datasets(), request, call);
}

absl::Status TenantView::Sample(const v1::SampleRequest& request,
                                const std::function<bool(const v1::SampleResponse&)>& write,
                                const CallControl& call) {
  return SampleRecords(Resolver(), request, core_->options().scoring, write, call);
}

absl::StatusOr<std::string> TenantView::ExportModel(const v1::ExportModelRequest& request) {
  return ExportModelFile(Resolver(), request);
}

absl::StatusOr<v1::CompareModelsResponse> TenantView::CompareModels(
    const v1::CompareModelsRequest& request, const CallControl& call) {
  if (!request.dataset_id().empty()) RETURN_IF_ERROR(GetDataset(request.dataset_id()).status());
  return CompareModelsOnDataset(Resolver(), core_->datasets(), request, call);
}

}  // namespace logp
