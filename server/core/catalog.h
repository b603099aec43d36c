// Catalog: the durable index of datasets, jobs, job events and models. Rows hold the API
// messages themselves (serialised), keyed by id. SQLite (WAL) is the embedded implementation;
// a PostgreSQL one can implement the same interface.
//
// Thread-safety: every method may be called concurrently.
#ifndef LOGP_SERVER_CORE_CATALOG_H_
#define LOGP_SERVER_CORE_CATALOG_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
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

  virtual absl::Status InsertJob(const v1::Job& job) = 0;
  // Replaces the stored job with the same id.
  virtual absl::Status UpdateJob(const v1::Job& job) = 0;
  virtual absl::StatusOr<v1::Job> GetJob(const std::string& id) = 0;
  virtual absl::StatusOr<Page<v1::Job>> ListJobs(const std::string& tenant, int page_size,
                                                 const std::string& page_token) = 0;
  // Every job in one of `states`, oldest first (used at startup).
  virtual absl::StatusOr<std::vector<v1::Job>> JobsInStates(
      const std::vector<v1::JobState>& states) = 0;

  // Appends events (their seq numbers are set by the caller) and updates the job row in one
  // transaction, so the job's last_seq never runs ahead of or behind its events.
  virtual absl::Status AppendEvents(const v1::Job& job,
                                    const std::vector<v1::JobEvent>& events) = 0;
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
  virtual absl::Status InsertJobForRequest(const v1::Job& job, const CreateRequest& request) = 0;

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
