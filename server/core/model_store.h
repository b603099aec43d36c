// ModelStore: published models (durable, checksummed files + catalogue rows) and a cache of loaded
// ones.
//
// Thread-safety: all methods may be called concurrently. Loaded models are immutable and shared:
// callers copy the shared_ptr and compute without any lock held.
#ifndef LOGP_SERVER_CORE_MODEL_STORE_H_
#define LOGP_SERVER_CORE_MODEL_STORE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "logp/v1/model_service.pb.h"
#include "models/model.h"
#include "server/core/catalog.h"
#include "server/core/file_system.h"
#include "server/core/reference_scores.h"

namespace logp {

class ModelStore {
 public:
  // Files live in <dir>/models: <id>.model and, for a model published with reference scores,
  // the checksummed sidecar <id>.reference. With `remove_orphans`, removes files without a
  // catalogue row
  // (left by a crash between the file and its row); not when other processes share the
  // directory (replicas): one of them may be between the two. `catalog` and `fs` must outlive the
  // store.
  static absl::StatusOr<std::unique_ptr<ModelStore>> Open(const std::string& dir, Catalog* catalog,
                                                          FileSystem* fs, bool remove_orphans);

  // Writes the model's file durably and returns its catalogue row (`meta` with its id,
  // create_time, num_parameters, stored_bytes and score_kind filled in), which the caller commits
  // (JobWrite::model: with the job's final state, in one transaction), then calls Published or,
  // when the commit failed, Discard. RESOURCE_EXHAUSTED when the disk is full; on any failure no
  // file is left. With `reference` (optional), its sidecar is written durably first, then the
  // model file, and meta.reference_scores is set: a committed row always has both files.
  absl::StatusOr<v1::Model> Prepare(v1::Model meta, const Model& model,
                                    const ReferenceScores* reference = nullptr);
  // The row of a prepared model is committed: keeps the loaded model (and its reference scores,
  // if any) in the cache.
  void Published(const std::string& id, std::shared_ptr<const Model> model,
                 std::shared_ptr<const ReferenceScores> reference = nullptr);
  // The row of a prepared model was not committed: removes its files.
  void Discard(const std::string& id);
  absl::StatusOr<v1::Model> Get(const std::string& id);
  // `tenant` filters the listing (empty: every tenant's).
  absl::StatusOr<Page<v1::Model>> List(const std::string& tenant, int page_size,
                                       const std::string& page_token);
  // The loaded model (NOT_FOUND for an unknown id; DATA_LOSS naming the model when its file
  // cannot be read, is torn or fails its checksum).
  absl::StatusOr<std::shared_ptr<const Model>> Load(const std::string& id);
  // The model's reference scores: null when its row says it has none (published before they
  // existed); NOT_FOUND for an unknown id; DATA_LOSS naming the model when the sidecar is
  // missing, torn, fails its checksum or does not hold the count its row says. Cached.
  absl::StatusOr<std::shared_ptr<const ReferenceScores>> Reference(const std::string& id);
  // Models loaded in the cache (for metrics).
  int64_t LoadedCount();

 private:
  ModelStore(std::string dir, Catalog* catalog, FileSystem* fs)
      : dir_(std::move(dir)), catalog_(catalog), fs_(fs) {}
  std::string PathOf(const std::string& id) const { return dir_ + "/" + id + ".model"; }
  std::string ReferencePathOf(const std::string& id) const {
    return dir_ + "/" + id + ".reference";
  }

  const std::string dir_;
  Catalog* const catalog_;
  FileSystem* const fs_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const Model>> cache_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<const ReferenceScores>> references_ ABSL_GUARDED_BY(mu_);
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_MODEL_STORE_H_
