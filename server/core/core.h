// Core: everything logpd does, without a network. Owns the catalogue, the stores and the job
// manager of one data directory.
#ifndef LOGP_SERVER_CORE_CORE_H_
#define LOGP_SERVER_CORE_CORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/core/catalog.h"
#include "server/core/dataset_store.h"
#include "server/core/job_manager.h"
#include "server/core/model_store.h"
#include "server/core/quota.h"
#include "server/core/scoring.h"

namespace logp {

struct CoreOptions {
  // Data directory (created if missing): catalog.db, datasets/, models/, checkpoints/, tmp/.
  std::string data_dir;
  JobManagerOptions jobs;
  ScoringLimits scoring;
  // Largest dataset accepted, in stored bytes (default 4 GiB).
  int64_t max_dataset_bytes = int64_t{4} << 30;
  // The file system every store uses; must outlive the Core. Default: the real one. Tests pass
  // a FaultyFileSystem.
  FileSystem* fs = FileSystem::Default();
  // Per-tenant quotas (stored bytes, datasets, queued and running jobs); default none.
  QuotaFn quotas;
  // The catalogue to use instead of the SQLite one in data_dir (must outlive the Core): logpd's
  // --catalog (OpenCatalog), or for tests a FaultyCatalog, a MemoryCatalog. Default: null,
  // SQLite.
  Catalog* catalog = nullptr;
};

class Core {
 public:
  static absl::StatusOr<std::unique_ptr<Core>> Open(const CoreOptions& options);
  ~Core();

  const CoreOptions& options() const { return options_; }
  Catalog& catalog() { return *catalog_; }
  DatasetStore& datasets() { return *datasets_; }
  ModelStore& models() { return *models_; }
  JobManager& jobs() { return *jobs_; }
  // Shared by every Score call (options.scoring.batching).
  ScoreBatcher& score_batcher() { return *score_batcher_; }
  // The model a Score / Evaluate / Sample request names: exactly one of a published model's id
  // or a job's id (its newest checkpoint; see JobManager::CheckpointModel).
  absl::StatusOr<ResolvedModel> ResolveModel(const std::string& model_id,
                                             const std::string& job_id);

  // Deletes a dataset: FAILED_PRECONDITION naming the job while a queued or running job uses
  // it, NOT_FOUND for an unknown id.
  absl::Status DeleteDataset(const std::string& id);

  // Stops training (running jobs stay queued for the next start). Idempotent.
  void Shutdown();

 private:
  explicit Core(const CoreOptions& options) : options_(options) {}
  const CoreOptions options_;
  std::unique_ptr<Catalog> owned_catalog_;
  Catalog* catalog_ = nullptr;
  std::unique_ptr<DatasetStore> datasets_;
  std::unique_ptr<ModelStore> models_;
  std::unique_ptr<CheckpointStore> checkpoints_;
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<ScoreBatcher> score_batcher_;
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_CORE_H_
