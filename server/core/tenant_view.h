// TenantView: the core as one call sees it. Every dataset, job and model belongs to a tenant; a
// view shows only what its Scope sees (one tenant's objects, or every tenant's for an admin),
// and creates for the scope's tenant. The service adapters reach the core only through a view,
// so that this file is the one place that decides visibility.
//
// An object the scope does not see is answered exactly as an unknown id (UnknownIdError: same
// code, same message) after the same one catalogue lookup, so that neither the answer nor its
// time tells another tenant's object from a missing one. Listings are filtered in the catalogue.
// Objects come back with their `tenant` field set (older rows, stored without one, say
// "default").
//
// Thread-safety: as the Core; a view is a small value, made per call.
#ifndef LOGP_SERVER_CORE_TENANT_VIEW_H_
#define LOGP_SERVER_CORE_TENANT_VIEW_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "server/core/call_control.h"
#include "server/core/compare.h"
#include "server/core/conditionals.h"
#include "server/core/core.h"
#include "server/core/scope.h"
#include "server/core/scoring.h"

namespace logp {

class TenantView {
 public:
  // `core` must outlive the view.
  TenantView(Core* core, Scope scope) : core_(core), scope_(std::move(scope)) {}

  const Scope& scope() const { return scope_; }

  // --- datasets ---
  // DatasetStore::CreateFromStream for the scope's tenant (its quotas apply).
  absl::StatusOr<v1::Dataset> CreateDataset(
      const std::function<bool(v1::CreateDatasetRequest*)>& next,
      const std::function<bool()>& cancelled = nullptr);
  absl::StatusOr<v1::Dataset> GetDataset(const std::string& id);
  absl::StatusOr<Page<v1::Dataset>> ListDatasets(int page_size, const std::string& page_token);
  // Core::DeleteDataset of a visible dataset.
  absl::Status DeleteDataset(const std::string& id);

  // --- jobs ---
  absl::StatusOr<v1::Job> CreateJob(const v1::JobSpec& spec, const std::string& request_id);
  absl::StatusOr<v1::Job> GetJob(const std::string& id);
  absl::StatusOr<Page<v1::Job>> ListJobs(int page_size, const std::string& page_token);
  absl::StatusOr<v1::Job> CancelJob(const std::string& id);
  // WatchJob reads events through JobManager::ReadEvents once GetJob has found the job visible
  // (a job never changes owner).

  // --- models ---
  absl::StatusOr<v1::Model> GetModel(const std::string& id);
  absl::StatusOr<Page<v1::Model>> ListModels(int page_size, const std::string& page_token);
  // Core::ResolveModel of a visible model or job.
  absl::StatusOr<ResolvedModel> ResolveModel(const std::string& model_id,
                                             const std::string& job_id);
  // The scoring calls of scoring.h on what the view sees (Evaluate's dataset included).
  absl::StatusOr<v1::ScoreResponse> Score(const v1::ScoreRequest& request, const CallControl& call);
  absl::StatusOr<v1::EvaluateResponse> Evaluate(const v1::EvaluateRequest& request,
                                                const CallControl& call);
  absl::Status Sample(const v1::SampleRequest& request,
                      const std::function<bool(const v1::SampleResponse&)>& write,
                      const CallControl& call);
  // ExportModelFile of a visible published model.
  absl::StatusOr<std::string> ExportModel(const v1::ExportModelRequest& request);
  // CompareModelsOnDataset (compare.h) of two visible published models on a visible dataset.
  absl::StatusOr<v1::CompareModelsResponse> CompareModels(const v1::CompareModelsRequest& request,
                                                          const CallControl& call);

  // --- conditionals (conditionals.h, with its default limits) ---
  absl::StatusOr<v1::MarginalResponse> Marginal(const v1::MarginalRequest& request,
                                                const CallControl& call);
  absl::StatusOr<v1::ImputeResponse> Impute(const v1::ImputeRequest& request,
                                            const CallControl& call);

 private:
  // `object` if the scope sees it (its tenant field filled in), else UnknownIdError.
  template <typename T>
  absl::StatusOr<T> Visible(absl::StatusOr<T> object, const char* what, const std::string& id);
  template <typename T>
  absl::StatusOr<Page<T>> VisiblePage(absl::StatusOr<Page<T>> page);
  ModelResolver Resolver();

  Core* const core_;
  const Scope scope_;
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_TENANT_VIEW_H_
