// The Model facade, (de)serialisation and the maximum-likelihood training loop.
#include "models/model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>
#include <dlfcn.h>
#include <malloc.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <new>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "models/checkpoint_codec.h"
#include "models/density_net.h"
#include "models/fused_adam.h"
#include "models/kernels.h"
#include "models/stats.h"
#include "proto/cc/status_macros.h"

namespace logp {
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

absl::Status CheckMatches(const RecordMatrix& m, const DataShape& s, const char* what) {
  if (m.kind != s.kind || m.cols != s.dim || m.num_categories != s.num_categories) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " are ", KindName(m.kind), " with dim ", m.cols,
                     " and K = ", m.num_categories, "; the model expects ", KindName(s.kind),
                     " with dim ", s.dim, " and K = ", s.num_categories));
  }
  return absl::OkStatus();
}

// A tensor over all rows of `m` without copying 8-bit or float data (it borrows m's storage);
// bit-packed rows are unpacked into a uint8 copy.
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

// The training rows, read per batch: borrowed from the matrix, or, for bit-packed binary data,
// gathered packed and unpacked per batch (so that the trainer never holds the 8x larger
// unpacked copy).
class RowSource {
 public:
  explicit RowSource(const RecordMatrix& m) : m_(m) {
    if (m.packed()) {
      packed_ = torch::from_blob(const_cast<uint8_t*>(m.bits.data()), {m.rows, m.PackedRowBytes()},
                                 torch::kUInt8);
    } else {
      all_ = BorrowRows(m);
    }
  }
  // Rows `index` (long) in that order, as float.
  torch::Tensor GatherFloat(const torch::Tensor& index) const {
    if (!packed_.defined()) return all_.index_select(0, index).to(torch::kFloat);
    return Unpack<float>(index, torch::kFloat);
  }
  // Rows `index` in the matrix's own type (uint8 for packed rows).
  torch::Tensor Gather(const torch::Tensor& index) const {
    if (!packed_.defined()) return all_.index_select(0, index);
    return Unpack<uint8_t>(index, torch::kUInt8);
  }
  // All rows (an unpacked copy for packed rows).
  torch::Tensor All() const { return packed_.defined() ? BorrowRows(m_) : all_; }

 private:
  template <typename T>
  torch::Tensor Unpack(const torch::Tensor& index, torch::ScalarType type) const {
    const torch::Tensor bytes = packed_.index_select(0, index);
    torch::Tensor out = torch::empty({index.size(0), m_.cols}, type);
    UnpackBits(index.size(0), m_.cols, m_.PackedRowBytes(), bytes.data_ptr<uint8_t>(),
               out.data_ptr<T>());
    return out;
  }

  const RecordMatrix& m_;
  torch::Tensor all_, packed_;
};

RecordMatrix TensorToRecords(const torch::Tensor& x, const DataShape& shape) {
  RecordMatrix m;
  m.kind = shape.kind;
  m.cols = shape.dim;
  m.num_categories = shape.num_categories;
  m.rows = x.size(0);
  auto c = x.contiguous();
  if (shape.kind == v1::DATA_KIND_CONTINUOUS) {
    auto f = c.to(torch::kFloat);
    m.f32.assign(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
  } else if (shape.num_categories > 256) {
    auto i = c.to(torch::kInt32);
    m.u16.assign(i.data_ptr<int32_t>(), i.data_ptr<int32_t>() + i.numel());
  } else {
    auto u = c.to(torch::kUInt8);
    m.u8.assign(u.data_ptr<uint8_t>(), u.data_ptr<uint8_t>() + u.numel());
  }
  return m;
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

// Per-record LogProb of all rows of `base` in batches, polling `stop` between batches: false
// (and `out` incomplete) if it said stop. The training objective's view (validation).
bool LogProbAll(DensityNet& net, const torch::Tensor& base, const std::function<bool()>& stop,
                std::vector<double>* out) {
  out->clear();
  out->reserve(base.size(0));
  torch::NoGradGuard no_grad;
  for (int64_t b = 0; b < base.size(0); b += kEvalBatch) {
    if (stop()) return false;
    const int64_t e = std::min(base.size(0), b + kEvalBatch);
    auto lp = net.LogProb(base.slice(0, b, e).to(torch::kFloat)).to(torch::kDouble).contiguous();
    out->insert(out->end(), lp.data_ptr<double>(), lp.data_ptr<double>() + lp.numel());
  }
  return true;
}

std::vector<double> LogProbAll(DensityNet& net, const torch::Tensor& base) {
  std::vector<double> out;
  LogProbAll(
      net, base, [] { return false; }, &out);
  return out;
}

// Sum of |w| over weight matrices (not biases or scalar parameters): the L1 penalty.
torch::Tensor L1Penalty(DensityNet& net) {
  torch::Tensor total = torch::zeros({});
  for (const auto& p : net.named_parameters()) {
    if (p.key().find("weight") != std::string::npos) total = total + p.value().abs().sum();
  }
  return total;
}

// Parameters and buffers (e.g. batch-norm running statistics), so that the best epoch's state is
// restored as a whole.
std::vector<torch::Tensor> CopyState(DensityNet& net) {
  std::vector<torch::Tensor> s;
  for (auto& p : net.parameters()) s.push_back(p.detach().clone());
  for (auto& b : net.buffers()) s.push_back(b.detach().clone());
  return s;
}

void RestoreState(DensityNet& net, const std::vector<torch::Tensor>& s) {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (auto& p : net.parameters()) p.copy_(s[i++]);
  for (auto& b : net.buffers()) b.copy_(s[i++]);
}

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

struct Model::Impl {
  v1::ModelSpec spec;
  DataShape shape;
  std::shared_ptr<DensityNet> net;
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) { impl_->net->eval(); }
Model::~Model() = default;

absl::StatusOr<std::unique_ptr<Model>> Model::Create(const v1::ModelSpec& raw,
                                                     const DataShape& shape, uint64_t seed) {
  const v1::ModelSpec spec = ModelSpecWithDefaults(raw);
  try {
    std::lock_guard<std::mutex> lock(InitMutex());
    torch::manual_seed(seed);
    ASSIGN_OR_RETURN(auto net, MakeDensityNet(spec, shape));
    return std::make_unique<Model>(std::unique_ptr<Impl>(new Impl{spec, shape, std::move(net)}));
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
  try {
    {
      // Initialisation draws from the process-wide generator: keep it out of another job's
      // "seed, then initialise".
      std::lock_guard<std::mutex> lock(InitMutex());
      ASSIGN_OR_RETURN(impl->net, MakeDensityNet(impl->spec, impl->shape));
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
v1::ScoreKind Model::score_kind() const { return DefaultScoreKind(impl_->spec); }
DensityNet& NetOf(const Model& model) { return *model.impl_->net; }

double Model::TrainingFlopsPerRecord(bool block_products) const {
  return impl_->net->TrainingFlopsPerRecord(block_products);
}

absl::StatusOr<std::pair<RecordMatrix, RecordMatrix>> SplitRecords(const RecordMatrix& data,
                                                                   double fraction, uint64_t seed) {
  if (!(fraction > 0 && fraction < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("validation_fraction must be in (0, 1), got ", fraction));
  }
  const int64_t n_valid = static_cast<int64_t>(std::llround(fraction * data.rows));
  if (n_valid < 1 || n_valid >= data.rows) {
    return absl::InvalidArgumentError(absl::StrCat("validation_fraction ", fraction, " of ",
                                                   data.rows,
                                                   " records leaves an empty training or "
                                                   "validation set"));
  }
  std::vector<int64_t> idx(data.rows);
  for (int64_t i = 0; i < data.rows; ++i) idx[i] = i;
  std::mt19937_64 rng(seed);
  for (int64_t i = data.rows - 1; i > 0; --i) {
    std::swap(idx[i], idx[rng() % static_cast<uint64_t>(i + 1)]);
  }
  // Keep each part in the original record order, so the split is a pure selection.
  std::vector<char> is_valid(data.rows, 0);
  for (int64_t i = 0; i < n_valid; ++i) is_valid[idx[i]] = 1;
  // Empty matrices of data's shape (not copies of data: a cleared vector keeps its capacity).
  ASSIGN_OR_RETURN(RecordMatrix train,
                   RecordMatrix::Empty(data.kind, data.cols, data.num_categories));
  RecordMatrix valid = train;
  valid.Reserve(n_valid);
  if (data.packed()) {  // the training part stays packed; the validation part is unpacked
    const int64_t stride = data.PackedRowBytes();
    train.bits.reserve((data.rows - n_valid) * stride);
    for (int64_t r = 0; r < data.rows; ++r) {
      if (is_valid[r]) {
        valid.AppendRow(data, r);
      } else {
        train.bits.insert(train.bits.end(), data.bits.begin() + r * stride,
                          data.bits.begin() + (r + 1) * stride);
        ++train.rows;
      }
    }
    return std::make_pair(std::move(train), std::move(valid));
  }
  train.Reserve(data.rows - n_valid);
  for (int64_t r = 0; r < data.rows; ++r) (is_valid[r] ? valid : train).AppendRow(data, r);
  return std::make_pair(std::move(train), std::move(valid));
}

void SetComputeThreads(int threads) {
  if (threads <= 0) return;
  // Matrix products run in OpenBLAS's thread pool, which LibTorch does not size: it gets the whole
  // budget (process-wide; a no-op with another BLAS).
  using SetBlasThreads = void (*)(int);
  if (auto set_blas =
          reinterpret_cast<SetBlasThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set_blas(threads);
  }
  // ATen's own (OpenMP) loops on the calling thread: at most LibTorch's default of one thread per
  // physical core. More OpenMP threads than cores spin against OpenBLAS's threads between
  // parallel regions: with 2 threads on this 2-vCPU (1-core) machine, MADE training fell from
  // 17,400 to 4,700 records/s.
  at::set_num_threads(std::max(1, std::min(threads, at::intraop_default_num_threads())));
}

namespace {

bool IsOutOfMemory(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr) return true;
  const std::string what = e.what();
  return what.find("not enough memory") != std::string::npos ||
         what.find("can't allocate memory") != std::string::npos;
}

}  // namespace

absl::StatusOr<TrainResult> Train(const v1::ModelSpec& raw_spec, const RecordMatrix& train,
                                  const RecordMatrix& validation, const TrainOptions& options,
                                  TrainObserver* observer) {
  TrainObserver default_observer;
  if (observer == nullptr) observer = &default_observer;
  const DataShape shape{train.kind, train.cols, train.num_categories};
  RETURN_IF_ERROR(CheckMatches(validation, shape, "validation records"));
  if (train.rows < 1 || validation.rows < 1) {
    return absl::InvalidArgumentError("training and validation sets must not be empty");
  }
  if (options.batch_size < 1) return absl::InvalidArgumentError("batch_size must be >= 1");
  if (options.epochs < 1) return absl::InvalidArgumentError("epochs must be >= 1");
  std::unique_ptr<Model> model;
  std::string resume_state;
  if (options.resume_from != nullptr) {
    auto parts = SplitCheckpoint(*options.resume_from);
    if (!parts.ok()) return UnusableCheckpoint(parts.status().message());
    auto m = Model::Deserialize(parts->first);
    if (!m.ok()) return UnusableCheckpoint(absl::StrCat("checkpoint: ", m.status().message()));
    if ((*m)->spec().SerializeAsString() != ModelSpecWithDefaults(raw_spec).SerializeAsString() ||
        (*m)->shape().dim != shape.dim || (*m)->shape().kind != shape.kind) {
      return UnusableCheckpoint("checkpoint: written for a different model or data");
    }
    model = std::move(*m);
    resume_state = std::move(parts->second);
  } else {
    ASSIGN_OR_RETURN(model, Model::Create(raw_spec, shape, options.seed));
  }
  DensityNet& net = NetOf(*model);
  const double nats_to_bpd = 1.0 / (static_cast<double>(shape.dim) * std::log(2.0));
  TrainState st;
  try {
    const RowSource train_rows(train);
    torch::Tensor valid_x = BorrowRows(validation);
    // The other side of the generalisation gap: a fixed subset of the training records, as many
    // as the validation records (at most 10,000), scored with each epoch's final weights.
    torch::Tensor train_eval_x = [&] {
      const int64_t m = std::min<int64_t>({train.rows, validation.rows, 10000});
      if (m == train.rows) return train_rows.All();
      at::Generator g = at::make_generator<at::CPUGeneratorImpl>(options.seed + 2);
      return train_rows.Gather(torch::randperm(train.rows, g, torch::kLong).slice(0, 0, m));
    }();
    const DensityNet::Fit fit = net.fit();
    const bool gradient = fit == DensityNet::Fit::kGradient;
    // Closed-form and EM fits read all training rows at every step.
    const torch::Tensor train_all = gradient ? torch::Tensor() : train_rows.All();
    const int64_t n = train.rows, bs = options.batch_size;
    // One step is a batch (gradient), a whole EM iteration, or the closed-form fit.
    const int64_t steps_per_epoch = gradient ? (n + bs - 1) / bs : 1;
    const int64_t epochs = fit == DensityNet::Fit::kClosedForm ? 1 : options.epochs;
    int64_t total_steps = steps_per_epoch * epochs;
    if (options.max_steps > 0) total_steps = std::min(total_steps, options.max_steps);
    const double l1 = model->spec().regularization().l1();
    std::unique_ptr<torch::optim::Adam> optimizer;
    if (gradient) {
      optimizer = std::make_unique<FusedAdam>(
          net.parameters(),
          torch::optim::AdamOptions(options.learning_rate).weight_decay(options.weight_decay));
    }
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed + 1);
    // The job's own generator of training noise (dropout, dequantisation, VAE eps): nothing
    // that trains beside it draws from it, and nothing it draws comes from elsewhere.
    at::Generator noise = at::make_generator<at::CPUGeneratorImpl>(options.seed + 3);
    NoiseScope noise_scope(&noise);
    if (!resume_state.empty()) {
      try {
        DecodeTrainState(resume_state, n, &st, optimizer.get(), gen, noise);
      } catch (const std::exception& e) {
        return UnusableCheckpoint(absl::StrCat("checkpoint: ", e.what()));
      }
    } else {
      st.best_state = CopyState(net);
    }
    observer->OnStart(total_steps, st.step);
    net.train();
    net.SetBlockProducts(options.block_products);
    std::vector<DensityNet*> nets;  // the net and its sub-nets, for MaskGradients
    ForEachDensityNet(net, [&](DensityNet& d) { nets.push_back(&d); });

    using Clock = std::chrono::steady_clock;
    auto segment_start = Clock::now();  // this run's start (train_seconds excludes it)
    auto epoch_segment_start = segment_start;
    auto elapsed = [&] { return st.train_seconds + Seconds(segment_start, Clock::now()); };
    auto checkpoint = [&]() -> absl::Status {
      TrainState snapshot = st;
      snapshot.train_seconds = elapsed();
      snapshot.epoch_seconds = st.epoch_seconds + Seconds(epoch_segment_start, Clock::now());
      const auto t0 = Clock::now();
      ASSIGN_OR_RETURN(std::string bytes,
                       EncodeCheckpoint(*model, snapshot, optimizer.get(), gen, noise, n));
      return observer->OnCheckpoint(
          TrainCheckpoint{st.step, st.epoch, std::move(bytes), Seconds(t0, Clock::now())});
    };
    // CANCELLED, ABORTED after a checkpoint, or OK to go on.
    auto interrupted = [&]() -> absl::Status {
      if (observer->StopRequested()) return absl::CancelledError("job cancelled");
      if (observer->SuspendRequested()) {
        RETURN_IF_ERROR(checkpoint());
        return absl::AbortedError(absl::StrCat("suspended at step ", st.step));
      }
      return absl::OkStatus();
    };
    auto stop_check = [&] { return observer->StopRequested() || observer->SuspendRequested(); };

    std::string stop_reason;
    auto window_start = Clock::now();
    double window_sum = 0;
    int64_t window_records = 0;
    while (stop_reason.empty()) {
      const int64_t epoch = st.epoch;
      // A resumed epoch keeps the order it had (drawn before the checkpoint).
      if (gradient && !st.perm.defined()) {
        st.perm = torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong));
      }
      epoch_segment_start = Clock::now();
      while (st.next_batch < steps_per_epoch) {
        RETURN_IF_ERROR(interrupted());
        if (options.max_steps > 0 && st.step >= options.max_steps) {
          stop_reason = absl::StrCat("max_steps ", options.max_steps, " reached");
          break;
        }
        if (options.max_seconds > 0 && elapsed() >= options.max_seconds) {
          stop_reason = absl::StrCat("max_seconds ", options.max_seconds, " reached");
          break;
        }
        double lv;
        int64_t records;
        if (gradient) {
          const int64_t b = st.next_batch * bs, e = std::min(n, b + bs);
          records = e - b;
          const torch::Tensor x = train_rows.GatherFloat(st.perm.slice(0, b, e));
          net.BeforeStep(st.step);
          torch::Tensor loss;
          if (l1 == 0) loss = net.LossAndGradients(x);
          if (!loss.defined()) {
            loss = net.Loss(x);
            // Gradients reset to undefined rather than zeroed: backward then stores each one
            // as computed, with no zero fill and no accumulating pass over the weights.
            for (auto& p : net.parameters()) p.mutable_grad().reset();
            if (l1 > 0) {
              (loss + l1 * L1Penalty(net)).backward();
            } else {
              loss.backward();
            }
            for (DensityNet* d : nets) d->MaskGradients();
          }
          lv = loss.item<double>();
          if (!std::isfinite(lv)) {
            return absl::FailedPreconditionError(absl::StrFormat(
                "training diverged: loss is %f at step %d (epoch %d)", lv, st.step + 1, epoch));
          }
          optimizer->step();
        } else {
          records = n;
          {
            torch::NoGradGuard no_grad;
            const torch::Tensor train_f = train_all.to(torch::kFloat);
            if (fit == DensityNet::Fit::kEm) {
              net.EmStep(train_f);
            } else {
              net.FitClosedForm(train_f);
            }
          }
          lv = SummarizeLogProbs(LogProbAll(net, train_all), shape.dim).mean_nll;
          if (!std::isfinite(lv)) {
            return absl::FailedPreconditionError(absl::StrFormat(
                "training diverged: NLL is %f after step %d (epoch %d)", lv, st.step + 1, epoch));
          }
        }
        ++st.step;
        ++st.next_batch;
        st.epoch_sum += lv * records;
        st.epoch_records += records;
        window_sum += lv * records;
        window_records += records;
        const auto now = Clock::now();
        if (st.next_batch == steps_per_epoch ||
            Seconds(window_start, now) >= options.progress_interval_seconds) {
          v1::TrainingProgress p;
          p.set_epoch(static_cast<int32_t>(epoch));
          p.set_step(st.step);
          p.set_total_steps(total_steps);
          p.set_train_nll(window_sum / window_records);
          p.set_train_bits_per_dim(p.train_nll() * nats_to_bpd);
          p.set_samples_per_second(window_records / std::max(1e-9, Seconds(window_start, now)));
          observer->OnProgress(p);
          window_start = now;
          window_sum = 0;
          window_records = 0;
        }
        if (st.next_batch < steps_per_epoch && observer->CheckpointDue(st.step)) {
          RETURN_IF_ERROR(checkpoint());
        }
      }
      if (st.epoch_records == 0) break;  // stopped before any step of this epoch
      // Validation of the epoch (or of the partial epoch a stopping rule ended).
      RETURN_IF_ERROR(interrupted());
      net.eval();
      std::vector<double> valid_lp, train_lp;
      const bool complete = LogProbAll(net, valid_x, stop_check, &valid_lp) &&
                            LogProbAll(net, train_eval_x, stop_check, &train_lp);
      net.train();
      if (!complete) {
        RETURN_IF_ERROR(interrupted());
        return absl::CancelledError("job cancelled");
      }
      const NllSummary v = SummarizeLogProbs(valid_lp, shape.dim);
      const NllSummary t = SummarizeLogProbs(train_lp, shape.dim);
      const double epoch_secs =
          std::max(1e-9, st.epoch_seconds + Seconds(epoch_segment_start, Clock::now()));
      v1::EpochSummary e;
      e.set_epoch(static_cast<int32_t>(epoch));
      e.set_step(st.step);
      e.set_train_nll(st.epoch_sum / static_cast<double>(st.epoch_records));
      e.set_validation_nll(v.mean_nll);
      e.set_validation_bits_per_dim(v.bits_per_dim);
      e.set_validation_standard_error(v.standard_error);
      e.set_samples_per_second(static_cast<double>(st.epoch_records) / epoch_secs);
      e.set_train_eval_nll(t.mean_nll);
      e.set_generalization_gap(v.mean_nll - t.mean_nll);
      e.set_is_best(v.mean_nll < st.best);
      if (e.is_best()) {
        st.best = v.mean_nll;
        st.best_epoch = epoch;
        st.since_best = 0;
        st.best_state = CopyState(net);
      } else {
        ++st.since_best;
      }
      e.set_epochs_since_best(static_cast<int32_t>(st.since_best));
      observer->OnEpoch(e);
      // The next epoch starts here; a checkpoint now never repeats this epoch's summary.
      st.epoch_seconds = 0;
      st.epoch_sum = 0;
      st.epoch_records = 0;
      st.next_batch = 0;
      st.perm = torch::Tensor();
      ++st.epoch;
      if (!stop_reason.empty()) break;
      if (options.early_stopping_patience > 0 && st.since_best >= options.early_stopping_patience) {
        stop_reason = absl::StrCat("early stopping: no better validation NLL for ", st.since_best,
                                   " epochs (best: epoch ", st.best_epoch, ")");
      } else if (st.epoch > epochs) {
        stop_reason = absl::StrCat("completed ", epochs, epochs == 1 ? " epoch" : " epochs");
      } else if (observer->CheckpointDue(st.step)) {
        RETURN_IF_ERROR(checkpoint());
      }
    }
    if (stop_reason.empty()) stop_reason = "stopped before the first step";
    if (st.best_epoch == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("no epoch was validated before training stopped (", stop_reason, ")"));
    }
    RestoreState(net, st.best_state);
    net.eval();
    TrainResult result;
    result.best_validation_nll = st.best;
    result.best_epoch = st.best_epoch;
    result.steps = st.step;
    result.stop_reason = std::move(stop_reason);
    result.model = std::move(model);
    return result;
  } catch (const std::exception& e) {
    if (IsOutOfMemory(e)) {
      return absl::ResourceExhaustedError(absl::StrFormat("out of memory at step %d (epoch %d): %s",
                                                          st.step + 1, st.epoch, e.what()));
    }
    return absl::InternalError(absl::StrFormat("training failed at step %d (epoch %d): %s",
                                               st.step + 1, st.epoch, e.what()));
  }
}

}  // namespace logp
