#include "server/core/model_store.h"

#include <glog/logging.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/cc/status_macros.h"
#include "server/core/files.h"
#include "server/core/time_util.h"

namespace logp {

absl::StatusOr<std::unique_ptr<ModelStore>> ModelStore::Open(const std::string& dir,
                                                             Catalog* catalog, FileSystem* fs,
                                                             bool remove_orphans) {
  std::unique_ptr<ModelStore> store(new ModelStore(dir + "/models", catalog, fs));
  RETURN_IF_ERROR(fs->MakeDirs(store->dir_));
  if (!remove_orphans) return store;
  for (const auto& name : fs->ListDir(store->dir_)) {
    // <id>.model and <id>.reference are kept while <id> has a row.
    auto dot = name.rfind(".model");
    if (dot == std::string::npos || dot + 6 != name.size()) {
      dot = name.rfind(".reference");
      if (dot != std::string::npos && dot + 10 != name.size()) dot = std::string::npos;
    }
    const bool orphan = dot == std::string::npos ||
                        absl::IsNotFound(catalog->GetModel(name.substr(0, dot)).status());
    if (orphan) {
      LOG(INFO) << "removing orphaned model file " << name;
      RETURN_IF_ERROR(fs->RemoveFile(store->dir_ + "/" + name));
    }
  }
  return store;
}

absl::StatusOr<v1::Model> ModelStore::Prepare(v1::Model meta, const Model& model,
                                              const ReferenceScores* reference) {
  meta.set_id(absl::StrCat("model-", RandomHex(16)));
  meta.set_num_parameters(static_cast<uint64_t>(model.NumParameters()));
  meta.set_score_kind(model.score_kind());
  *meta.mutable_create_time() = ToProto(absl::Now());
  ASSIGN_OR_RETURN(std::string bytes, model.Serialize());
  meta.set_stored_bytes(kChecksumFrameBytes + bytes.size());
  absl::Status st;
  if (reference != nullptr) {
    const std::string ref = SerializeReferenceScores(*reference);
    meta.set_reference_scores(reference->sorted_log_prob.size());
    meta.set_stored_bytes(meta.stored_bytes() + kChecksumFrameBytes + ref.size());
    st = WriteChecksummedFile(fs_, ReferencePathOf(meta.id()), ref);
  }
  if (st.ok()) st = WriteChecksummedFile(fs_, PathOf(meta.id()), bytes);
  if (!st.ok()) {
    fs_->RemoveFile(ReferencePathOf(meta.id())).IgnoreError();
    LOG(ERROR) << "model " << meta.id() << " not written: " << st;
    if (absl::IsResourceExhausted(st)) {
      return absl::ResourceExhaustedError("publishing the model: no space left on device");
    }
    return absl::InternalError("publishing the model: I/O error (see the server log)");
  }
  return meta;
}

void ModelStore::Published(const std::string& id, std::shared_ptr<const Model> model,
                           std::shared_ptr<const ReferenceScores> reference) {
  absl::MutexLock lock(&mu_);
  cache_[id] = std::move(model);
  if (reference != nullptr) references_[id] = std::move(reference);
}

int64_t ModelStore::LoadedCount() {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(cache_.size());
}

void ModelStore::Discard(const std::string& id) {
  fs_->RemoveFile(PathOf(id)).IgnoreError();
  fs_->RemoveFile(ReferencePathOf(id)).IgnoreError();
}

absl::StatusOr<v1::Model> ModelStore::Get(const std::string& id) { return catalog_->GetModel(id); }

absl::StatusOr<Page<v1::Model>> ModelStore::List(const std::string& tenant, int page_size,
                                                 const std::string& page_token) {
  return catalog_->ListModels(tenant, page_size, page_token);
}

absl::StatusOr<std::shared_ptr<const Model>> ModelStore::Load(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(id);
    if (it != cache_.end()) return it->second;
  }
  RETURN_IF_ERROR(catalog_->GetModel(id).status());
  auto bytes = ReadChecksummedFile(fs_, PathOf(id), absl::StrCat("model ", id), {"LOGPMDL1"});
  if (!bytes.ok()) {
    // A catalogued model whose file is missing is lost too.
    return absl::DataLossError(absl::IsNotFound(bytes.status())
                                   ? absl::StrCat("model ", id, ": its file is missing")
                                   : std::string(bytes.status().message()));
  }
  auto model = Model::Deserialize(*bytes);
  if (!model.ok()) {
    return absl::DataLossError(absl::StrCat("model ", id, ": ", model.status().message()));
  }
  std::shared_ptr<const Model> shared = std::move(*model);
  absl::MutexLock lock(&mu_);
  cache_.emplace(id, shared);
  return cache_[id];
}

absl::StatusOr<std::shared_ptr<const ReferenceScores>> ModelStore::Reference(
    const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = references_.find(id);
    if (it != references_.end()) return it->second;
  }
  ASSIGN_OR_RETURN(const v1::Model meta, catalog_->GetModel(id));
  if (meta.reference_scores() == 0) return std::shared_ptr<const ReferenceScores>();
  const std::string what = absl::StrCat("model ", id, " reference scores");
  auto bytes = ReadChecksummedFile(fs_, ReferencePathOf(id), what, {});
  if (!bytes.ok()) {
    return absl::DataLossError(absl::IsNotFound(bytes.status())
                                   ? absl::StrCat(what, ": the file is missing")
                                   : std::string(bytes.status().message()));
  }
  ASSIGN_OR_RETURN(ReferenceScores parsed, ParseReferenceScores(*bytes, what));
  if (parsed.sorted_log_prob.size() != meta.reference_scores()) {
    return absl::DataLossError(absl::StrCat(what, ": the file holds ",
                                            parsed.sorted_log_prob.size(), ", the catalogue says ",
                                            meta.reference_scores()));
  }
  auto shared = std::make_shared<const ReferenceScores>(std::move(parsed));
  absl::MutexLock lock(&mu_);
  references_.emplace(id, shared);
  return references_[id];
}

}  // namespace logp
