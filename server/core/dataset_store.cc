#include "server/core/dataset_store.h"

#include <glog/logging.h>

#include <cstring>
#include <optional>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "proto/cc/status_macros.h"
#include "server/core/files.h"
#include "server/core/time_util.h"

namespace logp {
namespace {

// Stored file: 32-byte header, then N canonically encoded rows.
constexpr char kMagic[8] = {'L', 'O', 'G', 'P', 'D', 'S', '0', '1'};
struct FileHeader {
  char magic[8];
  uint32_t kind;
  uint32_t num_categories;
  uint64_t num_records;
  uint64_t dim;
};
static_assert(sizeof(FileHeader) == 32, "packed header");

absl::Status CheckHeader(const v1::DatasetHeader& h) {
  if (h.name().size() > 256) return absl::InvalidArgumentError("header.name is over 256 bytes");
  if (h.kind() != v1::DATA_KIND_BINARY && h.kind() != v1::DATA_KIND_CATEGORICAL &&
      h.kind() != v1::DATA_KIND_CONTINUOUS) {
    return absl::InvalidArgumentError("header.kind must be BINARY, CATEGORICAL or CONTINUOUS");
  }
  if (h.dim() == 0) return absl::InvalidArgumentError("header.dim must be > 0 (D = 0)");
  if (h.num_records() == 0) {
    return absl::InvalidArgumentError("header.num_records must be > 0 (N = 0)");
  }
  if (h.kind() == v1::DATA_KIND_CATEGORICAL &&
      (h.num_categories() < 2 || h.num_categories() > 65536)) {
    return absl::InvalidArgumentError(
        absl::StrCat("header.num_categories must be in [2, 65536] for categorical data, got ",
                     h.num_categories()));
  }
  if (h.has_image_shape()) {
    const auto& s = h.image_shape();
    // Each factor is at most 2^32 - 1, so height * width fits 64 bits; the second product is
    // checked (it wrapped to dim for some shapes).
    uint64_t product = uint64_t{s.height()} * s.width();
    if (__builtin_mul_overflow(product, uint64_t{s.channels()}, &product) || product != h.dim()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("header.image_shape %dx%dx%d does not multiply to dim %d", s.height(),
                          s.width(), s.channels(), h.dim()));
    }
  }
  return absl::OkStatus();
}

// Closes and (unless released) deletes a temporary file.
class TempFile {
 public:
  TempFile(FileSystem* fs, std::string path) : fs_(fs), path_(std::move(path)) {}
  ~TempFile() {
    file_.reset();
    if (!released_) fs_->RemoveFile(path_).IgnoreError();
  }
  absl::Status Open() {
    auto f = fs_->NewWritableFile(path_);
    if (!f.ok()) return f.status();
    file_ = std::move(*f);
    return absl::OkStatus();
  }
  WritableFile* file() { return file_.get(); }
  void Release() { released_ = true; }
  const std::string& path() const { return path_; }

 private:
  FileSystem* const fs_;
  const std::string path_;
  std::unique_ptr<WritableFile> file_;
  bool released_ = false;
};

// A storage failure of an upload as the client should see it: a full disk as RESOURCE_EXHAUSTED
// (without the server's paths), anything else INTERNAL (logged with the path).
absl::Status UploadStorageError(const absl::Status& st) {
  LOG(ERROR) << "storing an upload: " << st;
  if (absl::IsResourceExhausted(st)) {
    return absl::ResourceExhaustedError("storing the dataset: no space left on device");
  }
  return absl::InternalError("storing the dataset failed (see the server log)");
}

}  // namespace

DatasetStore::DatasetStore(const DatasetStoreOptions& options, Catalog* catalog)
    : options_(options),
      catalog_(catalog),
      data_dir_(options.dir + "/datasets"),
      tmp_dir_(options.dir + "/tmp") {}

absl::StatusOr<std::unique_ptr<DatasetStore>> DatasetStore::Open(const DatasetStoreOptions& options,
                                                                 Catalog* catalog) {
  std::unique_ptr<DatasetStore> store(new DatasetStore(options, catalog));
  RETURN_IF_ERROR(options.fs->MakeDirs(store->data_dir_));
  RETURN_IF_ERROR(options.fs->MakeDirs(store->tmp_dir_));
  // Not while other processes share the directory (replicas): one may be writing an upload now.
  if (!catalog->SharedByProcesses()) RETURN_IF_ERROR(store->RemoveOrphans());
  return store;
}

absl::Status DatasetStore::RemoveOrphans() {
  for (const std::string& dir : {tmp_dir_, data_dir_}) {
    for (const auto& name : options_.fs->ListDir(dir)) {
      bool orphan = dir == tmp_dir_ && name.rfind("upload-", 0) == 0;
      if (dir == data_dir_) {
        const auto dot = name.rfind(".ds");
        orphan = dot == std::string::npos || dot + 3 != name.size() ||
                 absl::IsNotFound(catalog_->GetDataset(name.substr(0, dot)).status());
      }
      if (orphan) {
        LOG(INFO) << "removing orphaned dataset file " << dir << "/" << name;
        RETURN_IF_ERROR(options_.fs->RemoveFile(dir + "/" + name));
      }
    }
  }
  return absl::OkStatus();
}

std::string DatasetStore::PathOf(const std::string& id) const {
  return absl::StrCat(data_dir_, "/", id, ".ds");
}

absl::StatusOr<v1::Dataset> DatasetStore::CreateFromStream(
    const std::string& tenant, const std::function<bool(v1::CreateDatasetRequest*)>& next,
    const std::function<bool()>& cancelled) {
  v1::CreateDatasetRequest req;
  if (!next(&req)) return absl::InvalidArgumentError("upload is empty: no header");
  if (!req.has_header()) {
    return absl::InvalidArgumentError("the first message of an upload must be a header");
  }
  const v1::DatasetHeader header = req.header();
  RETURN_IF_ERROR(CheckHeader(header));
  ASSIGN_OR_RETURN(RecordMatrix scratch,
                   RecordMatrix::Empty(header.kind(), header.dim(), header.num_categories()));
  const v1::Encoding enc = CanonicalEncoding(scratch.kind, scratch.num_categories);
  const int64_t row_bytes = RowBytes(enc, header.dim());
  const int64_t declared = static_cast<int64_t>(header.num_records());
  if (declared > options_.max_dataset_bytes / row_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("dataset of %d records x %d bytes exceeds the server's limit of %d bytes",
                        declared, row_bytes, options_.max_dataset_bytes));
  }
  const int64_t stored_bytes = static_cast<int64_t>(sizeof(FileHeader)) + declared * row_bytes;
  // Refused before any record is read, unless it may be the retry of an upload already stored
  // (its first call counted; the check at the commit decides).
  bool retry = false;
  if (!header.request_id().empty()) {
    absl::StatusOr<CreateRequest> earlier =
        catalog_->GetCreateRequest("dataset", tenant, header.request_id());
    if (!earlier.ok() && !absl::IsNotFound(earlier.status())) return earlier.status();
    retry = earlier.ok();
  }
  if (!retry) RETURN_IF_ERROR(CheckQuota(tenant, stored_bytes));

  TempFile tmp(options_.fs, absl::StrCat(tmp_dir_, "/upload-", RandomHex(16)));
  if (absl::Status st = tmp.Open(); !st.ok()) return UploadStorageError(st);
  FileHeader fh{};
  std::memcpy(fh.magic, kMagic, sizeof(kMagic));
  fh.kind = scratch.kind;
  fh.num_categories = static_cast<uint32_t>(scratch.num_categories);
  fh.num_records = header.num_records();
  fh.dim = header.dim();
  if (absl::Status st =
          tmp.file()->Append(absl::string_view(reinterpret_cast<const char*>(&fh), sizeof(fh)));
      !st.ok()) {
    return UploadStorageError(st);
  }
  uint64_t hash =
      Fnv1a64(absl::string_view(reinterpret_cast<const char*>(&fh), sizeof(fh)), kFnvOffset);
  int64_t received = 0;
  std::string encoded;
  while (next(&req)) {
    if (cancelled && cancelled()) return absl::CancelledError("upload cancelled by the client");
    if (req.has_header()) {
      return absl::InvalidArgumentError(
          absl::StrCat("a second header arrived after ", received, " records"));
    }
    if (!req.has_chunk())
      return absl::InvalidArgumentError("a message carries neither header nor chunk");
    const v1::RecordBlock& chunk = req.chunk();
    if (static_cast<int64_t>(chunk.num_records()) > declared - received) {
      return absl::InvalidArgumentError(
          absl::StrCat("received more records than the ", declared, " declared in the header"));
    }
    scratch.rows = 0;
    scratch.u8.clear();
    scratch.u16.clear();
    scratch.f32.clear();
    RETURN_IF_ERROR(DecodeAppend(chunk, received, &scratch));
    encoded.clear();
    EncodeAppend(scratch, 0, scratch.rows, &encoded);
    if (absl::Status st = tmp.file()->Append(encoded); !st.ok()) return UploadStorageError(st);
    hash = Fnv1a64(encoded, hash);
    received += scratch.rows;
  }
  if (received != declared) {
    return absl::InvalidArgumentError(absl::StrCat("the header declared ", declared,
                                                   " records but the upload carried ", received));
  }
  if (absl::Status st = tmp.file()->Sync(); !st.ok()) return UploadStorageError(st);
  if (absl::Status st = tmp.file()->Close(); !st.ok()) return UploadStorageError(st);

  v1::Dataset ds;
  ds.set_id(absl::StrCat("ds-", RandomHex(16)));
  ds.set_name(header.name());
  ds.set_kind(scratch.kind);
  ds.set_num_records(header.num_records());
  ds.set_dim(header.dim());
  ds.set_num_categories(static_cast<uint32_t>(scratch.num_categories));
  if (header.has_image_shape()) *ds.mutable_image_shape() = header.image_shape();
  ds.set_content_hash(absl::StrFormat("fnv1a64:%016x", hash));
  ds.set_stored_bytes(static_cast<uint64_t>(stored_bytes));
  *ds.mutable_create_time() = ToProto(absl::Now());
  ds.set_tenant(tenant);

  // An upload named with a request_id: a retry of one already stored returns that dataset.
  std::optional<CreateRequest> request;
  if (!header.request_id().empty()) {
    // What was asked for: the dataset as stored, without what differs between uploads (the
    // same records in any encoding and chunking, K ignored for binary data, are the same).
    v1::Dataset asked = ds;
    asked.clear_id();
    asked.clear_create_time();
    request =
        CreateRequest{"dataset", header.request_id(), RequestFingerprint(asked), ds.id(), tenant};
    ASSIGN_OR_RETURN(std::optional<v1::Dataset> earlier, EarlierUpload(*request));
    if (earlier) return *std::move(earlier);  // the temporary file is removed
  }

  // Only uploads of a tenant with storage quotas wait for each other here.
  const TenantQuota quota = QuotaOf(options_.quotas, tenant);
  const bool limited = quota.datasets || quota.stored_bytes;
  if (limited) commit_mu_.Lock();
  absl::Cleanup unlock = [&] {
    if (limited) commit_mu_.Unlock();
  };
  RETURN_IF_ERROR(CheckQuota(tenant, stored_bytes));
  const std::string path = PathOf(ds.id());
  if (absl::Status st = options_.fs->Rename(tmp.path(), path); !st.ok()) {
    return UploadStorageError(st);
  }
  tmp.Release();
  absl::Status st = options_.fs->SyncDir(data_dir_);
  if (st.ok()) {
    st = request ? catalog_->InsertDatasetForRequest(ds, *request) : catalog_->InsertDataset(ds);
  }
  if (!st.ok()) {
    options_.fs->RemoveFile(path).IgnoreError();
    if (request && absl::IsAlreadyExists(st)) {
      // A concurrent retry of the same upload committed first.
      ASSIGN_OR_RETURN(std::optional<v1::Dataset> earlier, EarlierUpload(*request));
      if (earlier) return *std::move(earlier);
    }
    return absl::IsResourceExhausted(st) || absl::IsInternal(st) ? UploadStorageError(st) : st;
  }
  return ds;
}

absl::StatusOr<std::optional<v1::Dataset>> DatasetStore::EarlierUpload(
    const CreateRequest& request) {
  absl::StatusOr<CreateRequest> earlier =
      catalog_->GetCreateRequest(request.kind, request.tenant, request.request_id);
  if (absl::IsNotFound(earlier.status())) return std::nullopt;
  if (!earlier.ok()) return earlier.status();
  if (earlier->fingerprint != request.fingerprint) {
    return absl::AlreadyExistsError(absl::StrCat("header.request_id '", request.request_id,
                                                 "' was used for dataset ", earlier->resource_id,
                                                 ", an upload with a different header or content"));
  }
  return catalog_->GetDataset(earlier->resource_id);
}

absl::StatusOr<v1::Dataset> DatasetStore::Get(const std::string& id) {
  return catalog_->GetDataset(id);
}

absl::StatusOr<Page<v1::Dataset>> DatasetStore::List(const std::string& tenant, int page_size,
                                                     const std::string& page_token) {
  return catalog_->ListDatasets(tenant, page_size, page_token);
}

absl::Status DatasetStore::CheckQuota(const std::string& tenant, int64_t bytes) {
  const TenantQuota quota = QuotaOf(options_.quotas, tenant);
  if (!quota.datasets && !quota.stored_bytes) return absl::OkStatus();
  ASSIGN_OR_RETURN(const TenantStorage used, catalog_->StoredBy(tenant));
  if (quota.datasets && used.datasets + 1 > *quota.datasets) {
    return QuotaExceededError(tenant, "datasets", absl::StrCat(*quota.datasets),
                              absl::StrCat(used.datasets));
  }
  if (quota.stored_bytes && used.total_bytes() + bytes > *quota.stored_bytes) {
    return QuotaExceededError(tenant, "stored_bytes", QuotaBytes(*quota.stored_bytes),
                              QuotaBytes(used.total_bytes()),
                              absl::StrCat("this upload ", QuotaBytes(bytes)));
  }
  return absl::OkStatus();
}

absl::Status DatasetStore::Delete(const std::string& id) {
  RETURN_IF_ERROR(catalog_->GetDataset(id).status());
  // Row first: a crash after it leaves an orphan file that the next start removes.
  RETURN_IF_ERROR(catalog_->DeleteDataset(id));
  {
    absl::MutexLock lock(&mu_);
    cache_.erase(id);
  }
  return options_.fs->RemoveFile(PathOf(id));
}

absl::StatusOr<std::shared_ptr<const RecordMatrix>> DatasetStore::Load(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(id);
    if (it != cache_.end()) {
      if (auto m = it->second.lock()) return m;
    }
  }
  ASSIGN_OR_RETURN(v1::Dataset ds, catalog_->GetDataset(id));
  auto bytes = options_.fs->ReadFile(PathOf(id));
  if (!bytes.ok()) {
    LOG(ERROR) << "dataset " << id << ": " << bytes.status();
    return absl::DataLossError(
        absl::StrCat("dataset ", id, ": its file ",
                     absl::IsNotFound(bytes.status()) ? "is missing" : "cannot be read"));
  }
  // The content hash in the catalogue row covers the whole file: a torn, truncated or bit-flipped
  // file is detected here, never decoded.
  if (absl::StrFormat("fnv1a64:%016x", Fnv1a64(*bytes, kFnvOffset)) != ds.content_hash()) {
    return absl::DataLossError(
        absl::StrCat("dataset ", id, ": its file does not match its content hash (corrupt)"));
  }
  FileHeader fh;
  if (bytes->size() < sizeof(fh)) return absl::DataLossError("dataset file truncated");
  std::memcpy(&fh, bytes->data(), sizeof(fh));
  if (std::memcmp(fh.magic, kMagic, sizeof(kMagic)) != 0 || fh.dim != ds.dim() ||
      fh.num_records != ds.num_records()) {
    return absl::DataLossError(absl::StrCat("dataset file of ", id, " does not match its row"));
  }
  ASSIGN_OR_RETURN(RecordMatrix m, RecordMatrix::Empty(static_cast<v1::DataKind>(fh.kind),
                                                       static_cast<int64_t>(fh.dim),
                                                       static_cast<int32_t>(fh.num_categories)));
  const absl::string_view payload = absl::string_view(*bytes).substr(sizeof(fh));
  const int64_t n = static_cast<int64_t>(fh.num_records);
  absl::Status st;
  if (m.kind == v1::DATA_KIND_BINARY) {
    // Binary records stay bit-packed, as stored: 8x less memory than a byte per value.
    st = DecodeAppendPacked(n, m.cols, payload, 0, &m);
  } else {
    m.Reserve(n);
    st = DecodeAppend(CanonicalEncoding(m.kind, m.num_categories), n, m.cols, payload, 0, &m);
  }
  if (!st.ok()) return absl::DataLossError(absl::StrCat("dataset ", id, ": ", st.message()));
  auto shared = std::make_shared<const RecordMatrix>(std::move(m));
  absl::MutexLock lock(&mu_);
  cache_[id] = shared;
  return shared;
}

}  // namespace logp
