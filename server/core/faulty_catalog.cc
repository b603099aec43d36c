#include "server/core/faulty_catalog.h"

namespace logp {

void FaultyCatalog::Fail(const std::string& method, absl::Status status, int times) {
  absl::MutexLock lock(&mu_);
  failures_[method] = Failure{std::move(status), times};
}

void FaultyCatalog::Clear() {
  absl::MutexLock lock(&mu_);
  failures_.clear();
}

absl::Status FaultyCatalog::Check(const char* method) {
  absl::MutexLock lock(&mu_);
  auto it = failures_.find(method);
  if (it == failures_.end() || it->second.times == 0) return absl::OkStatus();
  if (it->second.times > 0) --it->second.times;
  return it->second.status;
}

absl::Status FaultyCatalog::InsertDataset(const v1::Dataset& d) {
  if (absl::Status st = Check("InsertDataset"); !st.ok()) return st;
  return base_->InsertDataset(d);
}

absl::StatusOr<v1::Dataset> FaultyCatalog::GetDataset(const std::string& id) {
  if (absl::Status st = Check("GetDataset"); !st.ok()) return st;
  return base_->GetDataset(id);
}

absl::StatusOr<Page<v1::Dataset>> FaultyCatalog::ListDatasets(const std::string& tenant, int n,
                                                              const std::string& token) {
  if (absl::Status st = Check("ListDatasets"); !st.ok()) return st;
  return base_->ListDatasets(tenant, n, token);
}

absl::Status FaultyCatalog::DeleteDataset(const std::string& id) {
  if (absl::Status st = Check("DeleteDataset"); !st.ok()) return st;
  return base_->DeleteDataset(id);
}

absl::Status FaultyCatalog::InsertJob(const v1::Job& job) {
  if (absl::Status st = Check("InsertJob"); !st.ok()) return st;
  return base_->InsertJob(job);
}

absl::Status FaultyCatalog::UpdateJob(const v1::Job& job) {
  if (absl::Status st = Check("UpdateJob"); !st.ok()) return st;
  return base_->UpdateJob(job);
}

absl::StatusOr<v1::Job> FaultyCatalog::GetJob(const std::string& id) {
  if (absl::Status st = Check("GetJob"); !st.ok()) return st;
  return base_->GetJob(id);
}

absl::StatusOr<Page<v1::Job>> FaultyCatalog::ListJobs(const std::string& tenant, int n,
                                                      const std::string& token) {
  if (absl::Status st = Check("ListJobs"); !st.ok()) return st;
  return base_->ListJobs(tenant, n, token);
}

absl::StatusOr<std::vector<v1::Job>> FaultyCatalog::JobsInStates(
    const std::vector<v1::JobState>& states) {
  if (absl::Status st = Check("JobsInStates"); !st.ok()) return st;
  return base_->JobsInStates(states);
}

absl::Status FaultyCatalog::AppendEvents(const v1::Job& job,
                                         const std::vector<v1::JobEvent>& events) {
  if (absl::Status st = Check("AppendEvents"); !st.ok()) return st;
  return base_->AppendEvents(job, events);
}

absl::StatusOr<std::vector<v1::JobEvent>> FaultyCatalog::ListEvents(const std::string& job_id,
                                                                    int64_t from_seq) {
  if (absl::Status st = Check("ListEvents"); !st.ok()) return st;
  return base_->ListEvents(job_id, from_seq);
}

absl::StatusOr<CreateRequest> FaultyCatalog::GetCreateRequest(const std::string& kind,
                                                              const std::string& tenant,
                                                              const std::string& request_id) {
  if (absl::Status st = Check("GetCreateRequest"); !st.ok()) return st;
  return base_->GetCreateRequest(kind, tenant, request_id);
}

absl::Status FaultyCatalog::InsertDatasetForRequest(const v1::Dataset& d, const CreateRequest& r) {
  if (absl::Status st = Check("InsertDatasetForRequest"); !st.ok()) return st;
  return base_->InsertDatasetForRequest(d, r);
}

absl::Status FaultyCatalog::InsertJobForRequest(const v1::Job& job, const CreateRequest& r) {
  if (absl::Status st = Check("InsertJobForRequest"); !st.ok()) return st;
  return base_->InsertJobForRequest(job, r);
}

absl::Status FaultyCatalog::InsertModel(const v1::Model& model) {
  if (absl::Status st = Check("InsertModel"); !st.ok()) return st;
  return base_->InsertModel(model);
}

absl::StatusOr<v1::Model> FaultyCatalog::GetModel(const std::string& id) {
  if (absl::Status st = Check("GetModel"); !st.ok()) return st;
  return base_->GetModel(id);
}

absl::StatusOr<Page<v1::Model>> FaultyCatalog::ListModels(const std::string& tenant, int n,
                                                          const std::string& token) {
  if (absl::Status st = Check("ListModels"); !st.ok()) return st;
  return base_->ListModels(tenant, n, token);
}

absl::StatusOr<TenantStorage> FaultyCatalog::StoredBy(const std::string& tenant) {
  if (absl::Status st = Check("StoredBy"); !st.ok()) return st;
  return base_->StoredBy(tenant);
}

}  // namespace logp
