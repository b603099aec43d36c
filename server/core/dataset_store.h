// DatasetStore: validated, durable, immutable datasets. An upload is written to a temporary file
// as it streams in and becomes visible (file renamed, catalogue row committed) only once the
// whole upload has been checked; anything less leaves nothing behind.
//
// Thread-safety: all methods may be called concurrently.
#ifndef LOGP_SERVER_CORE_DATASET_STORE_H_
#define LOGP_SERVER_CORE_DATASET_STORE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "logp/v1/dataset_service.pb.h"
#include "proto/cc/records.h"
#include "server/core/catalog.h"
#include "server/core/file_system.h"
#include "server/core/quota.h"

namespace logp {

struct DatasetStoreOptions {
  // Directory for dataset files (created if missing): <dir>/datasets and <dir>/tmp.
  std::string dir;
  // Largest dataset accepted, in stored (canonically encoded) bytes. Default 4 GiB.
  int64_t max_dataset_bytes = int64_t{4} << 30;
  // Where the files are; must outlive the store. Default: the real file system.
  FileSystem* fs = FileSystem::Default();
  // Per-tenant limits on datasets and stored bytes (default: none).
  QuotaFn quotas;
};

class DatasetStore {
 public:
  // `catalog` must outlive the store. Removes temporary files and files without a catalogue row
  // (left by a crash) before returning, unless other processes share the catalogue and the
  // directory (Catalog::SharedByProcesses: replicas, one of which may be writing them).
  static absl::StatusOr<std::unique_ptr<DatasetStore>> Open(const DatasetStoreOptions& options,
                                                            Catalog* catalog);

  // Reads one upload: `next` fills the next request and returns false at the end of the stream.
  // The first request must be a header, every later one a chunk. On any error nothing is stored.
  // INVALID_ARGUMENT names the record and column at fault; RESOURCE_EXHAUSTED over the size limit
  // or when the disk is full ("no space left on device"; the temporary file is removed).
  // `cancelled`, if given, is polled between chunks (CANCELLED when it returns true).
  // A header with a request_id already used by `tenant` for the same header and content returns
  // the dataset that upload stored (nothing new is stored); for another header or content
  // ALREADY_EXISTS. The dataset belongs to `tenant`; an upload that would take it over its
  // datasets or stored_bytes quota is RESOURCE_EXHAUSTED (checked at the header, and again at
  // the commit, so that concurrent uploads cannot overrun it).
  absl::StatusOr<v1::Dataset> CreateFromStream(
      const std::string& tenant, const std::function<bool(v1::CreateDatasetRequest*)>& next,
      const std::function<bool()>& cancelled = nullptr);

  absl::StatusOr<v1::Dataset> Get(const std::string& id);
  // `tenant` filters the listing (empty: every tenant's).
  absl::StatusOr<Page<v1::Dataset>> List(const std::string& tenant, int page_size,
                                         const std::string& page_token);
  // Removes the row, then the file. Whether a job still needs the dataset is the caller's check
  // (Core::DeleteDataset).
  absl::Status Delete(const std::string& id);
  // The records of a dataset (shared and cached while anyone holds them). DATA_LOSS naming the
  // dataset when its file cannot be read or does not match its content hash.
  absl::StatusOr<std::shared_ptr<const RecordMatrix>> Load(const std::string& id);

  std::string TEST_tmp_dir() const { return tmp_dir_; }
  std::string TEST_data_dir() const { return data_dir_; }

 private:
  DatasetStore(const DatasetStoreOptions& options, Catalog* catalog);
  absl::Status RemoveOrphans();
  std::string PathOf(const std::string& id) const;
  // The dataset an earlier upload under request.request_id stored; nullopt if none;
  // ALREADY_EXISTS if that upload had a different fingerprint.
  absl::StatusOr<std::optional<v1::Dataset>> EarlierUpload(const CreateRequest& request);
  // OK unless one more dataset of `bytes` would take `tenant` over its quotas.
  absl::Status CheckQuota(const std::string& tenant, int64_t bytes);

  const DatasetStoreOptions options_;
  Catalog* const catalog_;
  const std::string data_dir_, tmp_dir_;
  // Held from an upload's last quota check to its commit (uploads of tenants with a datasets or
  // stored_bytes quota only).
  absl::Mutex commit_mu_;
  absl::Mutex mu_;
  std::map<std::string, std::weak_ptr<const RecordMatrix>> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_DATASET_STORE_H_
