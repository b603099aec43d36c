// Catalog: the durable index of datasets, jobs, job events and models. Rows hold the API
// messages themselves (serialised), keyed by id. SQLite (WAL) is the embedded implementation;
// a PostgreSQL one can implement the same interface.
//
// Thread-safety: every method may be called concurrently; several processes may share one
// PostgreSQL catalogue (replicas), one SQLite catalogue serves one process.
#ifndef LOGP_SERVER_CORE_CATALOG_H_
#define LOGP_SERVER_CORE_CATALOG_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "logp/v1/dataset_service.pb.h"
#include "logp/v1/job_service.pb.h"
#include "logp/v1/model_service.pb.h"
#include "server/core/scope.h"

namespace logp {

// One page of a listing, newest first.
template <typename T>
struct Page {
  std::vector<T> items;
  std::string next_page_token;  // empty on the last page
};

// What a create call named with a client-chosen request_id made (idempotent creates).
struct CreateRequest {
  std::string kind;         // "dataset" or "job": separate namespaces of request ids
  std::string request_id;   // the client's id
  std::string fingerprint;  // what was asked for; a retry must carry the same
  std::string resource_id;  // what the first call created
  // Whose request it was: each tenant has its own namespace of request ids, so a retry never
  // returns another tenant's object.
  std::string tenant = kDefaultTenant;
};

// What one tenant stores, for its quotas.
struct TenantStorage {
  int64_t datasets = 0;
  int64_t dataset_bytes = 0;  // sum of their stored_bytes
  int64_t models = 0;
  int64_t model_bytes = 0;  // sum of their stored_bytes
  int64_t total_bytes() const { return dataset_bytes + model_bytes; }
};

// What a create request asked for, to compare a retry with the first call: the hex of the
// message's deterministic serialization (equal messages, equal fingerprints).
inline std::string RequestFingerprint(const google::protobuf::MessageLite& asked) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    asked.SerializeToCodedStream(&coded);
  }
  return absl::BytesToHexString(bytes);
}

// A job's lease, held by the replica that trains it (Catalog::ClaimJob).
struct JobLease {
  std::string job_id;
  std::string owner;  // the holder's replica id
  // The fencing token: one more at every claim of the job, so a holder that lost the lease
  // (paused, cut off) can be told from the one that took it over.
  int64_t token = 0;
};

// A claimed job, as Catalog::ClaimJob returns it.
struct JobClaim {
  v1::Job job;  // its row at the claim
  JobLease lease;
  // Who held the previous lease (empty if none, or unknown: the catalogue serves one process).
  std::string previous_owner;
  bool cancel_requested = false;
};

// What a replica may claim, as Catalog::ReadQueue reads it.
struct JobQueue {
  // QUEUED or RUNNING jobs that no live lease holds: RUNNING ones first (they had started; their
  // holder died), then in creation order.
  std::vector<v1::Job> claimable;
  // Jobs held by a live lease, and QUEUED jobs (held or not), per owning tenant (OwnerOf).
  std::map<std::string, int64_t> leased_by_tenant;
  std::map<std::string, int64_t> queued_by_tenant;
  int64_t queued() const {
    int64_t n = 0;
    for (const auto& [tenant, count] : queued_by_tenant) n += count;
    return n;
  }
};

// One write of a job's row, by its trainer (Catalog::WriteJob).
struct JobWrite {
  v1::Job job;                       // replaces the stored row with the same id
  std::vector<v1::JobEvent> events;  // appended (their seq numbers set by the caller)
  // Non-zero: written only while lease `lease_token` holds the job; FAILED_PRECONDITION
  // "lease ... lost", with nothing written, once another claim took it over.
  int64_t lease_token = 0;
  // Inserted in the same transaction: the job's model (its publication, exactly once).
  std::optional<v1::Model> model;
  // Ends the lease too (the job ended or went back to the queue).
  bool release_lease = false;
};

// What a fenced write (JobWrite::lease_token) or a renewal gets once its lease no longer holds
// the job: FAILED_PRECONDITION "lease of job J lost: ...". `held` is the token that holds it now
// (0: none).
inline absl::Status LeaseLostError(const std::string& job_id, int64_t token, int64_t held) {
  return absl::FailedPreconditionError(absl::StrCat(
      "lease of job ", job_id, " lost: token ", token,
      held > 0 ? absl::StrCat(" was superseded by token ", held, " (another replica claimed it)")
               : std::string(" no longer holds it")));
}
inline bool IsLeaseLost(const absl::Status& st) {
  return absl::IsFailedPrecondition(st) && absl::StartsWith(st.message(), "lease of job ");
}

class Catalog {
 public:
  virtual ~Catalog() = default;

  // Insert fails with ALREADY_EXISTS for a duplicate id. Get fails with NOT_FOUND.
  virtual absl::Status InsertDataset(const v1::Dataset& dataset) = 0;
  virtual absl::StatusOr<v1::Dataset> GetDataset(const std::string& id) = 0;
  // Listings are filtered by `tenant` (an object's owner, see OwnerOf); empty lists every
  // tenant's. A page token is only meaningful with the same filter.
  virtual absl::StatusOr<Page<v1::Dataset>> ListDatasets(const std::string& tenant, int page_size,
                                                         const std::string& page_token) = 0;
  // Also forgets the create request that made the dataset, if any.
  virtual absl::Status DeleteDataset(const std::string& id) = 0;

  // Inserts the job with its first events (and, with a `request`, the create request that made
  // it: see InsertJobForRequest) in one transaction, so that no replica claims a job whose
  // first event is not yet written.
  virtual absl::Status InsertJobWithEvents(const v1::Job& job,
                                           const std::vector<v1::JobEvent>& events,
                                           const CreateRequest* request) = 0;
  absl::Status InsertJob(const v1::Job& job) { return InsertJobWithEvents(job, {}, nullptr); }
  // Replaces the stored job with the same id.
  virtual absl::Status UpdateJob(const v1::Job& job) = 0;
  virtual absl::StatusOr<v1::Job> GetJob(const std::string& id) = 0;
  virtual absl::StatusOr<Page<v1::Job>> ListJobs(const std::string& tenant, int page_size,
                                                 const std::string& page_token) = 0;
  // Every job in one of `states`, oldest first (used at startup).
  virtual absl::StatusOr<std::vector<v1::Job>> JobsInStates(
      const std::vector<v1::JobState>& states) = 0;

  // Appends events (their seq numbers are set by the caller) and updates the job row in one
  // transaction, so the job's last_seq never runs ahead of or behind its events; with
  // write.lease_token, only while that lease holds the job (see JobWrite).
  virtual absl::Status WriteJob(const JobWrite& write) = 0;
  absl::Status AppendEvents(const v1::Job& job, const std::vector<v1::JobEvent>& events) {
    return WriteJob(JobWrite{job, events});
  }

  // Job leases: the replica that trains a job holds its lease, and only it writes for the job
  // (fenced writes: JobWrite::lease_token). The PostgreSQL catalogue keeps leases in the
  // database, shared by every replica on it, with PostgreSQL's clock; the SQLite and in-memory
  // catalogues serve one process and keep them in it (a restart finds none).
  //
  // What a replica may claim, and what is held.
  virtual absl::StatusOr<JobQueue> ReadQueue() = 0;
  // Claims job `job_id` for `owner` for `duration` if it is QUEUED or RUNNING and no live lease
  // holds it (none, or expired: the holder stopped renewing), in one short transaction (in
  // PostgreSQL, SELECT ... FOR UPDATE SKIP LOCKED: a claim never waits for another).
  // nullopt when it is not claimable (claimed by another, ended, unknown).
  virtual absl::StatusOr<std::optional<JobClaim>> ClaimJob(const std::string& job_id,
                                                           const std::string& owner,
                                                           absl::Duration duration) = 0;
  // Extends the lease by `duration` from now while its token still holds the job (an expired
  // lease nobody claimed since is still held); FAILED_PRECONDITION "lease ... lost" otherwise.
  // Returns whether a cancel was requested (RequestCancel).
  virtual absl::StatusOr<bool> RenewLease(const JobLease& lease, absl::Duration duration) = 0;
  // Ends every lease `owner` holds (a replica restarted under the same stable id: its previous
  // process is gone, so its jobs are claimable at once).
  virtual absl::Status ReleaseLeasesOf(const std::string& owner) = 0;
  // Asks the holder of the job's lease to cancel it: told by its next RenewLease (or ClaimJob).
  // NOT_FOUND for an unknown job.
  virtual absl::Status RequestCancel(const std::string& job_id) = 0;
  // Calls `on_change(job_id)` after another process committed a write of job `job_id` (events,
  // a new job) or, with "", when it may have missed some (a lost connection). Catalogues that
  // serve one process have no such news and return false; the PostgreSQL one listens
  // (LISTEN/NOTIFY) on a thread of its own until it is destroyed. A later call replaces
  // on_change (null: no calls any more).
  // Whether other processes may use this catalogue (and the data directory) at the same time.
  virtual bool SharedByProcesses() const { return false; }
  virtual bool WatchChanges(std::function<void(const std::string& job_id)> on_change) {
    (void)on_change;
    return false;
  }
  virtual absl::StatusOr<std::vector<v1::JobEvent>> ListEvents(const std::string& job_id,
                                                               int64_t from_seq) = 0;

  // Idempotent creates. The request (kind, tenant, request_id) recorded, NOT_FOUND if none.
  virtual absl::StatusOr<CreateRequest> GetCreateRequest(const std::string& kind,
                                                         const std::string& tenant,
                                                         const std::string& request_id) = 0;
  // Insert the dataset or job together with the request that made it (request.resource_id is
  // its id), in one transaction: ALREADY_EXISTS, with nothing inserted, if the request (or the
  // id) is already there.
  virtual absl::Status InsertDatasetForRequest(const v1::Dataset& dataset,
                                               const CreateRequest& request) = 0;
  absl::Status InsertJobForRequest(const v1::Job& job, const CreateRequest& request) {
    return InsertJobWithEvents(job, {}, &request);
  }

  virtual absl::Status InsertModel(const v1::Model& model) = 0;
  virtual absl::StatusOr<v1::Model> GetModel(const std::string& id) = 0;
  virtual absl::StatusOr<Page<v1::Model>> ListModels(const std::string& tenant, int page_size,
                                                     const std::string& page_token) = 0;
  // The datasets and models `tenant` owns, counted with their bytes.
  virtual absl::StatusOr<TenantStorage> StoredBy(const std::string& tenant) = 0;
};

// Opens (creating if needed) the SQLite catalogue at `path`.
absl::StatusOr<std::unique_ptr<Catalog>> OpenSqliteCatalog(const std::string& path);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_CATALOG_H_
