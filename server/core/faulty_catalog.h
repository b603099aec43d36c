// FaultyCatalog: a Catalog for tests that passes every call to a real one except those it was
// told to fail (a full disk, an I/O error), so that every caller's handling of a failing
// catalogue can be run.
//
// Thread-safety: all methods may be called concurrently.
#ifndef LOGP_SERVER_CORE_FAULTY_CATALOG_H_
#define LOGP_SERVER_CORE_FAULTY_CATALOG_H_

#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/core/catalog.h"

namespace logp {

class FaultyCatalog final : public Catalog {
 public:
  // `base` must outlive this catalogue.
  explicit FaultyCatalog(Catalog* base) : base_(base) {}

  // Calls of `method` ("InsertDataset", "AppendEvents", ...) fail with `status`, `times` times
  // (-1: until Clear).
  void Fail(const std::string& method, absl::Status status, int times = -1);
  void Clear();

  absl::Status InsertDataset(const v1::Dataset& d) override;
  absl::StatusOr<v1::Dataset> GetDataset(const std::string& id) override;
  absl::StatusOr<Page<v1::Dataset>> ListDatasets(const std::string& tenant, int n,
                                                 const std::string& token) override;
  absl::Status DeleteDataset(const std::string& id) override;
  absl::Status InsertJobWithEvents(const v1::Job& job, const std::vector<v1::JobEvent>& events,
                                   const CreateRequest* request) override;
  absl::Status UpdateJob(const v1::Job& job) override;
  absl::StatusOr<v1::Job> GetJob(const std::string& id) override;
  absl::StatusOr<Page<v1::Job>> ListJobs(const std::string& tenant, int n,
                                         const std::string& token) override;
  absl::StatusOr<std::vector<v1::Job>> JobsInStates(
      const std::vector<v1::JobState>& states) override;
  // Fails as "AppendEvents" (and, with a model, as "InsertModel" too).
  absl::Status WriteJob(const JobWrite& write) override;
  absl::StatusOr<std::vector<v1::JobEvent>> ListEvents(const std::string& job_id,
                                                       int64_t from_seq) override;
  absl::StatusOr<CreateRequest> GetCreateRequest(const std::string& kind, const std::string& tenant,
                                                 const std::string& request_id) override;
  absl::Status InsertDatasetForRequest(const v1::Dataset& d, const CreateRequest& r) override;
  absl::Status InsertModel(const v1::Model& model) override;
  absl::StatusOr<v1::Model> GetModel(const std::string& id) override;
  absl::StatusOr<Page<v1::Model>> ListModels(const std::string& tenant, int n,
                                             const std::string& token) override;
  absl::StatusOr<TenantStorage> StoredBy(const std::string& tenant) override;
  absl::StatusOr<JobQueue> ReadQueue() override;
  absl::StatusOr<std::optional<JobClaim>> ClaimJob(const std::string& job_id,
                                                   const std::string& owner,
                                                   absl::Duration duration) override;
  absl::StatusOr<bool> RenewLease(const JobLease& lease, absl::Duration duration) override;
  absl::Status ReleaseLeasesOf(const std::string& owner) override;
  absl::Status RequestCancel(const std::string& job_id) override;
  bool WatchChanges(std::function<void(const std::string&)> on_change) override;
  bool SharedByProcesses() const override { return base_->SharedByProcesses(); }

 private:
  struct Failure {
    absl::Status status;
    int times;
  };
  // The injected failure of `method` now (consuming one), or OK.
  absl::Status Check(const char* method);

  Catalog* const base_;
  absl::Mutex mu_;
  std::map<std::string, Failure> failures_ ABSL_GUARDED_BY(mu_);
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_FAULTY_CATALOG_H_
