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

absl::Status FaultyCatalog::InsertJobWithEvents(const v1::Job& job,
                                                const std::vector<v1::JobEvent>& events,
                                                const CreateRequest* request) {
  if (absl::Status st = Check(request ? "InsertJobForRequest" : "InsertJob"); !st.ok()) return st;
  return base_->InsertJobWithEvents(job, events, request);
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

absl::Status FaultyCatalog::WriteJob(const JobWrite& write) {
  if (absl::Status st = Check("AppendEvents"); !st.ok()) return st;
  if (write.model) {
    if (absl::Status st = Check("InsertModel"); !st.ok()) return st;
  }
  return base_->WriteJob(write);
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

absl::StatusOr<JobQueue> FaultyCatalog::ReadQueue() {
  if (absl::Status st = Check("ReadQueue"); !st.ok()) return st;
  return base_->ReadQueue();
}

absl::StatusOr<std::optional<JobClaim>> FaultyCatalog::ClaimJob(const std::string& job_id,
                                                                const std::string& owner,
                                                                absl::Duration duration) {
  if (absl::Status st = Check("ClaimJob"); !st.ok()) return st;
  return base_->ClaimJob(job_id, owner, duration);
}

absl::StatusOr<bool> FaultyCatalog::RenewLease(const JobLease& lease, absl::Duration duration) {
  if (absl::Status st = Check("RenewLease"); !st.ok()) return st;
  return base_->RenewLease(lease, duration);
}

absl::Status FaultyCatalog::ReleaseLeasesOf(const std::string& owner) {
  if (absl::Status st = Check("ReleaseLeasesOf"); !st.ok()) return st;
  return base_->ReleaseLeasesOf(owner);
}

absl::Status FaultyCatalog::RequestCancel(const std::string& job_id) {
  if (absl::Status st = Check("RequestCancel"); !st.ok()) return st;
  return base_->RequestCancel(job_id);
}

bool FaultyCatalog::WatchChanges(std::function<void(const std::string&)> on_change) {
  return base_->WatchChanges(std::move(on_change));
}

}  // namespace logp
