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
#include "logp/v1/dataset_service.pb.h"
#include "logp/v1/job_service.pb.h"
#include "logp/v1/model_service.pb.h"

namespace logp {

// One page of a listing, newest first.
template <typename T>
struct Page {
  std::vector<T> items;
  std::string next_page_token;  // empty on the last page
};

class Catalog {
 public:
  virtual ~Catalog() = default;

  // Insert fails with ALREADY_EXISTS for a duplicate id. Get fails with NOT_FOUND.
  virtual absl::Status InsertDataset(const v1::Dataset& dataset) = 0;
  virtual absl::StatusOr<v1::Dataset> GetDataset(const std::string& id) = 0;
  virtual absl::StatusOr<Page<v1::Dataset>> ListDatasets(int page_size,
                                                         const std::string& page_token) = 0;
  virtual absl::Status DeleteDataset(const std::string& id) = 0;

  virtual absl::Status InsertJob(const v1::Job& job) = 0;
  // Replaces the stored job with the same id.
  virtual absl::Status UpdateJob(const v1::Job& job) = 0;
  virtual absl::StatusOr<v1::Job> GetJob(const std::string& id) = 0;
  virtual absl::StatusOr<Page<v1::Job>> ListJobs(int page_size, const std::string& page_token) = 0;
  // Every job in one of `states`, oldest first (used at startup).
  virtual absl::StatusOr<std::vector<v1::Job>> JobsInStates(
      const std::vector<v1::JobState>& states) = 0;

  // Appends events (their seq numbers are set by the caller) and updates the job row in one
  // transaction, so the job's last_seq never runs ahead of or behind its events.
  virtual absl::Status AppendEvents(const v1::Job& job,
                                    const std::vector<v1::JobEvent>& events) = 0;
  virtual absl::StatusOr<std::vector<v1::JobEvent>> ListEvents(const std::string& job_id,
                                                               int64_t from_seq) = 0;

  virtual absl::Status InsertModel(const v1::Model& model) = 0;
  virtual absl::StatusOr<v1::Model> GetModel(const std::string& id) = 0;
  virtual absl::StatusOr<Page<v1::Model>> ListModels(int page_size,
                                                     const std::string& page_token) = 0;
};

// Opens (creating if needed) the SQLite catalogue at `path`.
absl::StatusOr<std::unique_ptr<Catalog>> OpenSqliteCatalog(const std::string& path);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_CATALOG_H_
