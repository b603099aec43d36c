// Fuzzes an upload: a CreateDataset request stream fed to DatasetStore::CreateFromStream, with a
// real SQLite catalogue in a temporary directory (on /dev/shm when there is one). The input is a
// cancel byte, then messages, each a 2-byte little-endian length and a serialised
// v1::CreateDatasetRequest. An accepted upload must be stored exactly (Get and Load give back the
// header's shape and the uploaded values); a refused one must leave no file and no row behind.
#include <glog/logging.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "google/protobuf/stubs/logging.h"
#include "logp/v1/dataset_service.pb.h"
#include "server/core/catalog.h"
#include "server/core/dataset_store.h"
#include "server/core/file_system.h"

namespace logp::fuzz {
namespace {

struct Env {
  std::string dir;
  std::unique_ptr<Catalog> catalog;
  std::unique_ptr<DatasetStore> store;
};

Env* MakeEnv() {
  auto* env = new Env;
  std::string tmpl =
      std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + "/logp-fuzz-create-XXXXXX";
  FUZZ_CHECK(mkdtemp(tmpl.data()) != nullptr);
  env->dir = tmpl;
  absl::StatusOr<std::unique_ptr<Catalog>> catalog =
      OpenSqliteCatalog(env->dir + "/catalog.sqlite");
  FUZZ_CHECK(catalog.ok());
  env->catalog = std::move(*catalog);
  DatasetStoreOptions options;
  options.dir = env->dir;
  options.max_dataset_bytes = 1 << 20;  // reachable RESOURCE_EXHAUSTED, bounded memory
  absl::StatusOr<std::unique_ptr<DatasetStore>> store =
      DatasetStore::Open(options, env->catalog.get());
  FUZZ_CHECK(store.ok());
  env->store = std::move(*store);
  return env;
}

// Files under the store's directories: an upload that fails leaves none.
size_t StoredFiles(const Env& env) {
  return FileSystem::Default()->ListDir(env.store->TEST_tmp_dir()).size() +
         FileSystem::Default()->ListDir(env.store->TEST_data_dir()).size();
}

}  // namespace
}  // namespace logp::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Keep the fuzzer's output readable: the store logs orphan removal, protobuf every invalid
  // UTF-8 string it parses.
  FLAGS_minloglevel = 2;
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace logp;
  static fuzz::Env* env = fuzz::MakeEnv();
  fuzz::Input in(data, size);
  const uint8_t cancel_after = in.Take<uint8_t>();
  std::vector<v1::CreateDatasetRequest> requests;
  while (!in.empty()) {
    const uint16_t len = in.Take<uint16_t>();
    const absl::string_view bytes = in.TakeBytes(len);
    v1::CreateDatasetRequest req;
    if (!req.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return 0;
    requests.push_back(std::move(req));
  }
  const size_t files_before = fuzz::StoredFiles(*env);
  size_t next = 0;
  int polls = 0;
  absl::StatusOr<v1::Dataset> ds = env->store->CreateFromStream(
      kDefaultTenant,
      [&](v1::CreateDatasetRequest* req) {
        if (next == requests.size()) return false;
        *req = requests[next++];
        return true;
      },
      [&] { return polls++ >= cancel_after && cancel_after != 0xFF; });
  if (!ds.ok()) {
    const absl::Status& st = ds.status();
    FUZZ_CHECK(absl::IsInvalidArgument(st) || absl::IsResourceExhausted(st) ||
               absl::IsCancelled(st));
    FUZZ_CHECK(fuzz::StoredFiles(*env) == files_before);
    absl::StatusOr<Page<v1::Dataset>> page = env->store->List("", 10, "");
    FUZZ_CHECK(page.ok() && page->items.empty());
    return 0;
  }

  // What the stream carried, decoded independently of the store.
  const v1::DatasetHeader& h = requests[0].header();
  FUZZ_CHECK(ds->kind() == h.kind() && ds->dim() == h.dim() &&
             ds->num_records() == h.num_records() && ds->name() == h.name());
  if (ds->has_image_shape()) {
    const auto& s = ds->image_shape();
    FUZZ_CHECK(static_cast<unsigned __int128>(s.height()) * s.width() * s.channels() == ds->dim());
  }
  RecordMatrix expected =
      *RecordMatrix::Empty(h.kind(), h.dim(), static_cast<int32_t>(ds->num_categories()));
  for (size_t i = 1; i < requests.size(); ++i) {
    FUZZ_CHECK(requests[i].has_chunk());
    FUZZ_CHECK(DecodeAppend(requests[i].chunk(), expected.rows, &expected).ok());
  }
  FUZZ_CHECK(expected.rows == static_cast<int64_t>(h.num_records()));

  absl::StatusOr<v1::Dataset> got = env->store->Get(ds->id());
  FUZZ_CHECK(got.ok() && got->SerializeAsString() == ds->SerializeAsString());
  {
    absl::StatusOr<std::shared_ptr<const RecordMatrix>> loaded = env->store->Load(ds->id());
    FUZZ_CHECK(loaded.ok());
    const RecordMatrix& m = **loaded;
    FUZZ_CHECK(m.rows == expected.rows && m.cols == expected.cols && m.kind == expected.kind &&
               m.num_categories == expected.num_categories);
    for (int64_t r = 0; r < m.rows; ++r) {
      for (int64_t c = 0; c < m.cols; ++c) FUZZ_CHECK(m.At(r, c) == expected.At(r, c));
    }
  }
  FUZZ_CHECK(env->store->Delete(ds->id()).ok());
  FUZZ_CHECK(fuzz::StoredFiles(*env) == files_before);
  return 0;
}
