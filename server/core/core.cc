#include "server/core/core.h"

#include "absl/strings/str_cat.h"
#include "proto/cc/status_macros.h"
#include "server/core/file_system.h"
#include "server/core/scope.h"

namespace logp {

absl::StatusOr<std::unique_ptr<Core>> Core::Open(const CoreOptions& options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("data_dir is required");
  std::unique_ptr<Core> core(new Core(options));
  core->score_batcher_ = std::make_unique<ScoreBatcher>(options.scoring.batching);
  RETURN_IF_ERROR(options.fs->MakeDirs(options.data_dir));
  if (options.catalog != nullptr) {
    core->catalog_ = options.catalog;
  } else {
    ASSIGN_OR_RETURN(core->owned_catalog_, OpenSqliteCatalog(options.data_dir + "/catalog.db"));
    core->catalog_ = core->owned_catalog_.get();
  }
  DatasetStoreOptions ds;
  ds.dir = options.data_dir;
  ds.max_dataset_bytes = options.max_dataset_bytes;
  ds.fs = options.fs;
  ds.quotas = options.quotas;
  ASSIGN_OR_RETURN(core->datasets_, DatasetStore::Open(ds, core->catalog_));
  ASSIGN_OR_RETURN(core->models_, ModelStore::Open(options.data_dir, core->catalog_, options.fs,
                                                   !core->catalog_->SharedByProcesses()));
  ASSIGN_OR_RETURN(
      core->checkpoints_,
      CheckpointStore::Open(options.data_dir, options.jobs.checkpoints_kept, options.fs));
  JobManagerOptions jobs = options.jobs;
  jobs.quotas = options.quotas;
  ASSIGN_OR_RETURN(core->jobs_, JobManager::Start(jobs, core->catalog_, core->datasets_.get(),
                                                  core->models_.get(), core->checkpoints_.get()));
  return core;
}

Core::~Core() { Shutdown(); }

absl::StatusOr<ResolvedModel> Core::ResolveModel(const std::string& model_id,
                                                 const std::string& job_id) {
  if (!job_id.empty()) return jobs_->CheckpointModel(job_id);
  if (model_id.empty()) return absl::InvalidArgumentError("model_id or job_id is required");
  auto m = models_->Load(model_id);
  if (absl::IsNotFound(m.status())) {
    return UnknownIdError("model", model_id);
  }
  RETURN_IF_ERROR(m.status());
  ModelStore* store = models_.get();
  return ResolvedModel{std::move(*m), 0, [store, model_id] { return store->Reference(model_id); }};
}

absl::Status Core::DeleteDataset(const std::string& id) {
  RETURN_IF_ERROR(datasets_->Get(id).status());
  const std::string reason = jobs_->DatasetInUse(id);
  if (!reason.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("dataset ", id, " is in use: ", reason));
  }
  return datasets_->Delete(id);
}

void Core::Shutdown() {
  if (jobs_) jobs_->Shutdown();
}

}  // namespace logp
