// MemoryCatalog: a complete Catalog in memory, for tests that need neither a disk nor a network.
// It answers every call as the SQLite catalogue does (tests/server/catalog_test.cc runs the same
// contract against both): ALREADY_EXISTS for a duplicate id or request, NOT_FOUND for an unknown
// one, listings newest first with the same page rules, multi-row writes all or nothing.
//
// Its rows live as long as the object: two Cores opened one after the other on the same
// MemoryCatalog (and data directory) see a restart, as two logpd processes see one catalog.db.
// Tests may also write rows directly (a job left RUNNING, as kill -9 leaves it).
//
// Thread-safety: every method may be called concurrently.
#ifndef LOGP_SERVER_CORE_MEMORY_CATALOG_H_
#define LOGP_SERVER_CORE_MEMORY_CATALOG_H_

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/core/catalog.h"
#include "server/core/lease_table.h"

namespace logp {

class MemoryCatalog final : public Catalog {
 public:
  MemoryCatalog() = default;
  MemoryCatalog(const MemoryCatalog&) = delete;
  MemoryCatalog& operator=(const MemoryCatalog&) = delete;

  absl::Status InsertDataset(const v1::Dataset& dataset) override;
  absl::StatusOr<v1::Dataset> GetDataset(const std::string& id) override;
  absl::StatusOr<Page<v1::Dataset>> ListDatasets(const std::string& tenant, int page_size,
                                                 const std::string& page_token) override;
  absl::Status DeleteDataset(const std::string& id) override;

  absl::Status InsertJobWithEvents(const v1::Job& job, const std::vector<v1::JobEvent>& events,
                                   const CreateRequest* request) override;
  absl::Status UpdateJob(const v1::Job& job) override;
  absl::StatusOr<v1::Job> GetJob(const std::string& id) override;
  absl::StatusOr<Page<v1::Job>> ListJobs(const std::string& tenant, int page_size,
                                         const std::string& page_token) override;
  absl::StatusOr<std::vector<v1::Job>> JobsInStates(
      const std::vector<v1::JobState>& states) override;

  absl::Status WriteJob(const JobWrite& write) override;
  absl::StatusOr<std::vector<v1::JobEvent>> ListEvents(const std::string& job_id,
                                                       int64_t from_seq) override;

  absl::StatusOr<CreateRequest> GetCreateRequest(const std::string& kind, const std::string& tenant,
                                                 const std::string& request_id) override;
  absl::Status InsertDatasetForRequest(const v1::Dataset& dataset,
                                       const CreateRequest& request) override;

  absl::Status InsertModel(const v1::Model& model) override;
  absl::StatusOr<v1::Model> GetModel(const std::string& id) override;
  absl::StatusOr<Page<v1::Model>> ListModels(const std::string& tenant, int page_size,
                                             const std::string& page_token) override;
  absl::StatusOr<TenantStorage> StoredBy(const std::string& tenant) override;

  absl::StatusOr<JobQueue> ReadQueue() override;
  absl::StatusOr<std::optional<JobClaim>> ClaimJob(const std::string& job_id,
                                                   const std::string& owner,
                                                   absl::Duration duration) override;
  absl::StatusOr<bool> RenewLease(const JobLease& lease, absl::Duration duration) override;
  absl::Status ReleaseLeasesOf(const std::string& owner) override;
  absl::Status RequestCancel(const std::string& job_id) override;

 private:
  // Rows of one kind keyed by a sequence number that only grows (never reused after a delete,
  // like SQLite's AUTOINCREMENT), which orders listings and makes the page tokens.
  template <typename T>
  struct Table {
    int64_t last_seq = 0;
    std::map<int64_t, T> rows;             // seq -> row
    std::map<std::string, int64_t> by_id;  // id -> seq
  };
  using RequestKey = std::tuple<std::string, std::string, std::string>;  // kind, tenant, id

  // Where a page starts and how long it is, from a List call's arguments (INVALID_ARGUMENT
  // for a bad page_size or page_token).
  struct PageStart {
    int size = 0;
    int64_t before_seq = 0;
  };
  static absl::StatusOr<PageStart> ParsePage(int page_size, const std::string& page_token);

  // The *Locked helpers run with mu_ held by their caller. `what` names the row in messages.
  template <typename T>
  static absl::Status InsertLocked(Table<T>* table, const T& row, const std::string& what);
  template <typename T>
  static absl::StatusOr<T> GetLocked(const Table<T>& table, const std::string& id,
                                     const char* what);
  template <typename T>
  static Page<T> ListLocked(const Table<T>& table, const std::string& tenant,
                            const PageStart& start);
  static RequestKey KeyOf(const CreateRequest& r) {
    return RequestKey{r.kind, OwnerOf(r.tenant), r.request_id};
  }
  absl::Status UpdateJobLocked(const v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckRequestFreeLocked(const CreateRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  Table<v1::Dataset> datasets_ ABSL_GUARDED_BY(mu_);
  Table<v1::Job> jobs_ ABSL_GUARDED_BY(mu_);
  Table<v1::Model> models_ ABSL_GUARDED_BY(mu_);
  // job id -> (event seq -> event)
  std::map<std::string, std::map<int64_t, v1::JobEvent>> events_ ABSL_GUARDED_BY(mu_);
  std::map<RequestKey, CreateRequest> requests_ ABSL_GUARDED_BY(mu_);
  LeaseTable leases_ ABSL_GUARDED_BY(mu_);
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_MEMORY_CATALOG_H_
