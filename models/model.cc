// The Model facade: creation, (de)serialisation, scoring and sampling.
#include "models/model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/CPUAllocator.h>
#include <malloc.h>

#include <cstring>
#include <limits>
#include <mutex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "models/density_net.h"
#include "models/kernels.h"
#include "proto/cc/status_macros.h"

namespace logp {

absl::Status CheckMatches(const RecordMatrix& m, const DataShape& s, const char* what) {
  if (m.kind != s.kind || m.cols != s.dim || m.num_categories != s.num_categories) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " are ", KindName(m.kind), " with dim ", m.cols,
                     " and K = ", m.num_categories, "; the model expects ", KindName(s.kind),
                     " with dim ", s.dim, " and K = ", s.num_categories));
  }
  return absl::OkStatus();
}

torch::Tensor BorrowRows(const RecordMatrix& m) {
  if (m.packed()) {
    torch::Tensor out = torch::empty({m.rows, m.cols}, torch::kUInt8);
    UnpackBits(m.rows, m.cols, m.PackedRowBytes(), m.bits.data(), out.data_ptr<uint8_t>());
    return out;
  }
  if (!m.f32.empty()) return torch::from_blob(const_cast<float*>(m.f32.data()), {m.rows, m.cols});
  if (!m.u8.empty()) {
    return torch::from_blob(const_cast<uint8_t*>(m.u8.data()), {m.rows, m.cols}, torch::kUInt8);
  }
  return RecordsToTensor(m);
}

namespace {

constexpr char kMagic[8] = {'L', 'O', 'G', 'P', 'M', 'D', 'L', '1'};
// Rows per forward pass when scoring many records: small enough that the temporaries of a pass
// stay a few MB (they add to peak memory while a job trains) and in cache.
constexpr int64_t kEvalBatch = kEvalBatchRows;

// torch::manual_seed sets the process-wide generator that parameter initialisation draws from;
// this mutex makes "seed, then initialise" atomic with respect to other jobs.
std::mutex& InitMutex() {
  static std::mutex mu;
  return mu;
}

// Continuous records far outside the data's range (|x| of 1e30 and beyond, for a net trained on
// values near 1) overflow float32 inside the net: intermediate values become inf, then NaN
// (inf - inf). Such a record's log p is far below what the computation can represent, so it
// scores -inf; every finite input then scores a finite log p or -inf, never NaN or +inf. Only
// for continuous data: the discrete families' scores are bounded, and a NaN there is a bug that
// must not be hidden.
torch::Tensor OverflowToMinusInfinity(const torch::Tensor& log_prob) {
  const double minus_inf = -std::numeric_limits<double>::infinity();
  return torch::nan_to_num(log_prob, minus_inf, minus_inf, minus_inf);
}

// Scores of all rows of `base` (any dtype), in batches, without gradients.
Scores ScoreAll(DensityNet& net, const torch::Tensor& base, const ScoreOptions& options,
                const DataShape& shape) {
  Scores out;
  out.log_prob.reserve(base.size(0));
  torch::NoGradGuard no_grad;
  for (int64_t b = 0; b < base.size(0); b += kEvalBatch) {
    PollStop();
    const int64_t e = std::min(base.size(0), b + kEvalBatch);
    ScoreOptions batch_options = options;
    batch_options.seed = options.seed + static_cast<uint64_t>(b);
    ScoreBatch s = net.Score(base.slice(0, b, e).to(torch::kFloat), batch_options);
    auto lp = s.log_prob.to(torch::kDouble).contiguous();
    if (shape.kind == v1::DATA_KIND_CONTINUOUS) lp = OverflowToMinusInfinity(lp);
    out.log_prob.insert(out.log_prob.end(), lp.data_ptr<double>(),
                        lp.data_ptr<double>() + lp.numel());
    if (s.standard_error.defined()) {
      auto se = s.standard_error.to(torch::kDouble).contiguous();
      out.standard_error.insert(out.standard_error.end(), se.data_ptr<double>(),
                                se.data_ptr<double>() + se.numel());
    }
    out.kind = s.kind;
    out.importance_samples = s.importance_samples;
  }
  return out;
}

}  // namespace

struct Model::Impl {
  // As created (resolved), or as read from a file (possibly written before a default existed).
  v1::ModelSpec spec;
  DataShape shape;
  std::shared_ptr<DensityNet> net;
  v1::ScoreKind score_kind = v1::SCORE_KIND_UNSPECIFIED;
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) { impl_->net->eval(); }
Model::~Model() = default;

absl::StatusOr<std::unique_ptr<Model>> Model::Create(const v1::ModelSpec& raw,
                                                     const DataShape& shape, uint64_t seed) {
  ASSIGN_OR_RETURN(const v1::ModelSpec spec, ResolveModelSpec(raw, shape));
  try {
    std::lock_guard<std::mutex> lock(InitMutex());
    torch::manual_seed(seed);
    std::shared_ptr<DensityNet> net = MakeDensityNet(spec, shape);
    return std::make_unique<Model>(
        std::unique_ptr<Impl>(new Impl{spec, shape, std::move(net), DefaultScoreKind(spec)}));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("creating model: ", e.what()));
  }
}

absl::StatusOr<std::string> Model::Serialize() const {
  std::string out;
  RETURN_IF_ERROR(SerializeTo(&out));
  return out;
}

absl::Status Model::SerializeTo(std::string* out) const {
  try {
    std::string spec_bytes = impl_->spec.SerializeAsString();
    auto put = [out](const void* p, size_t n) {
      out->append(static_cast<const char*>(p), n);
      return n;
    };
    put(kMagic, sizeof(kMagic));
    const uint32_t spec_len = static_cast<uint32_t>(spec_bytes.size());
    const int32_t kind = impl_->shape.kind, k = impl_->shape.num_categories;
    const int64_t dim = impl_->shape.dim;
    put(&spec_len, sizeof(spec_len));
    put(spec_bytes.data(), spec_len);
    put(&kind, sizeof(kind));
    put(&dim, sizeof(dim));
    put(&k, sizeof(k));
    torch::serialize::OutputArchive archive;
    impl_->net->save(archive);
    archive.save_to(put);
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("serialising model: ", e.what()));
  }
}

namespace {

// What the architecture needs of one weight or buffer.
struct TensorLayout {
  std::string name;
  std::vector<int64_t> sizes;
  c10::ScalarType dtype;
};

std::vector<TensorLayout> Layouts(const torch::nn::Module& net) {
  std::vector<TensorLayout> out;
  for (const auto& t : net.named_parameters()) {
    out.push_back({t.key(), t.value().sizes().vec(), t.value().scalar_type()});
  }
  for (const auto& t : net.named_buffers()) {
    out.push_back({t.key(), t.value().sizes().vec(), t.value().scalar_type()});
  }
  return out;
}

// LibTorch 1.13's unpickler gives a storage the byte size that the pickle declares (elements x
// element size), not the size of the zip record it read, and never compares the two: a corrupt
// file yields a storage that claims more bytes than were allocated for it (the fuzzer found a
// 24-byte record under a 60-byte weight). Such records are allocated by the default CPU
// allocator (posix_memalign), whose blocks malloc_usable_size measures; storages from any other
// allocator cannot be measured and pass.
bool AllocationHolds(const c10::Storage& storage, uint64_t needed) {
  static const c10::DeleterFnPtr default_deleter =
      c10::GetCPUAllocator()->allocate(1).get_deleter();
  const c10::DataPtr& data = storage.data_ptr();
  if (data.get() == nullptr || data.get() != data.get_context() ||
      data.get_deleter() != default_deleter) {
    return true;
  }
  return malloc_usable_size(data.get()) >= needed;
}

// Module::load replaces every tensor with the file's, whatever its shape, type or storage size.
// Anything but the architecture's own layout over enough storage would make scoring, sampling
// and training read or write out of bounds.
absl::Status CheckLoadedTensors(const torch::nn::Module& net,
                                const std::vector<TensorLayout>& expected) {
  const std::vector<TensorLayout> got = Layouts(net);
  if (got.size() != expected.size()) {
    return absl::DataLossError("model file: the weights do not match the architecture");
  }
  std::vector<torch::Tensor> tensors;
  for (const auto& t : net.named_parameters()) tensors.push_back(t.value());
  for (const auto& t : net.named_buffers()) tensors.push_back(t.value());
  for (size_t i = 0; i < expected.size(); ++i) {
    const torch::Tensor& t = tensors[i];
    const TensorLayout& e = expected[i];
    if (got[i].name != e.name || got[i].sizes != e.sizes || got[i].dtype != e.dtype ||
        !t.device().is_cpu() || !t.is_contiguous() || t.storage_offset() < 0) {
      return absl::DataLossError(absl::StrCat("model file: weight ", e.name, " has shape [",
                                              absl::StrJoin(got[i].sizes, ", "), "], expected [",
                                              absl::StrJoin(e.sizes, ", "), "]"));
    }
    const uint64_t needed = (static_cast<uint64_t>(t.storage_offset()) + t.numel()) *
                            static_cast<uint64_t>(t.element_size());
    if (t.numel() > 0 && (!t.has_storage() || t.storage().nbytes() < needed ||
                          !AllocationHolds(t.storage(), t.storage().nbytes()))) {
      return absl::DataLossError(absl::StrCat("model file: the data of weight ", e.name,
                                              " is shorter than its ", needed, " bytes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> Model::Deserialize(const std::string& bytes) {
  constexpr size_t kFixed = sizeof(kMagic) + sizeof(uint32_t);
  if (bytes.size() < kFixed || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError("model file: bad magic");
  }
  uint32_t spec_len;
  std::memcpy(&spec_len, bytes.data() + sizeof(kMagic), sizeof(spec_len));
  size_t pos = kFixed;
  if (bytes.size() < pos + spec_len + 16) return absl::DataLossError("model file: truncated");
  auto impl = std::make_unique<Impl>();
  if (!impl->spec.ParseFromArray(bytes.data() + pos, static_cast<int>(spec_len))) {
    return absl::DataLossError("model file: bad spec");
  }
  pos += spec_len;
  int32_t kind, k;
  int64_t dim;
  std::memcpy(&kind, bytes.data() + pos, 4);
  std::memcpy(&dim, bytes.data() + pos + 4, 8);
  std::memcpy(&k, bytes.data() + pos + 12, 4);
  pos += 16;
  impl->shape = DataShape{static_cast<v1::DataKind>(kind), dim, k};
  // A shape a dataset can have (K = 2 for binary, 0 for continuous): a model of any other could
  // be loaded but never score (the model fuzzer found continuous with K = 65536).
  absl::StatusOr<RecordMatrix> empty = RecordMatrix::Empty(impl->shape.kind, dim, k);
  if (!empty.ok() || empty->num_categories != k) {
    return absl::DataLossError(absl::StrCat("model file: impossible data shape (kind ", kind,
                                            ", dim ", dim, ", K = ", k, ")"));
  }
  // The file's spec stays as stored; the net is built from its effective values.
  ASSIGN_OR_RETURN(const v1::ModelSpec resolved, ResolveModelSpec(impl->spec, impl->shape));
  impl->score_kind = DefaultScoreKind(resolved);
  try {
    {
      // Initialisation draws from the process-wide generator: keep it out of another job's
      // "seed, then initialise".
      std::lock_guard<std::mutex> lock(InitMutex());
      impl->net = MakeDensityNet(resolved, impl->shape);
    }
    const std::vector<TensorLayout> layouts = Layouts(*impl->net);
    torch::serialize::InputArchive archive;
    std::istringstream in(bytes.substr(pos));
    archive.load_from(in);
    impl->net->load(archive);
    RETURN_IF_ERROR(CheckLoadedTensors(*impl->net, layouts));
    // Files written before masks were folded into the weights hold non-zero masked weights.
    ForEachDensityNet(*impl->net, [](DensityNet& n) { n.FoldMasks(); });
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("model file: ", e.what()));
  }
  return std::make_unique<Model>(std::move(impl));
}

absl::StatusOr<std::vector<double>> Model::LogProb(const RecordMatrix& records) const {
  RETURN_IF_ERROR(CheckMatches(records, impl_->shape, "records"));
  try {
    c10::InferenceMode guard;
    StopScope no_stop(nullptr);
    return ScoreAll(*impl_->net, BorrowRows(records), ScoreOptions{}, impl_->shape).log_prob;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("scoring: ", e.what()));
  }
}

absl::StatusOr<Scores> Model::Score(const RecordMatrix& records,
                                    const ScoreOptions& options) const {
  RETURN_IF_ERROR(CheckMatches(records, impl_->shape, "records"));
  if (options.importance_samples > 10000) {
    return absl::InvalidArgumentError(
        absl::StrCat("importance_samples must be at most 10000, got ", options.importance_samples));
  }
  try {
    c10::InferenceMode guard;
    StopScope stop(&options.stop);
    return ScoreAll(*impl_->net, BorrowRows(records), options, impl_->shape);
  } catch (const CallStopped&) {
    return absl::CancelledError("scoring stopped");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("scoring: ", e.what()));
  }
}

absl::StatusOr<RecordMatrix> Model::Sample(int64_t n, uint64_t seed, const StopPoll& stop) const {
  if (n < 0) return absl::InvalidArgumentError("sample count must be >= 0");
  try {
    c10::InferenceMode guard;
    StopScope stop_scope(&stop);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    return TensorToRecords(impl_->net->Sample(n, gen), impl_->shape);
  } catch (const CallStopped&) {
    return absl::CancelledError("sampling stopped");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("sampling: ", e.what()));
  }
}

const v1::ModelSpec& Model::spec() const { return impl_->spec; }
const DataShape& Model::shape() const { return impl_->shape; }
int64_t Model::NumParameters() const {
  int64_t n = 0;
  for (const auto& p : impl_->net->parameters()) n += p.numel();
  return n;
}
v1::ScoreKind Model::score_kind() const { return impl_->score_kind; }
DensityNet& NetOf(const Model& model) { return *model.impl_->net; }

double Model::TrainingFlopsPerRecord(bool block_products) const {
  return impl_->net->TrainingFlopsPerRecord(block_products);
}

}  // namespace logp
