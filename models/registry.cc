// The registry of model families and the resolution (defaults, checks) every spec goes through.
#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "models/density_net.h"
#include "models/families/families.h"
#include "models/families/preprocessing.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace {

const std::vector<FamilyInfo>& Registry() {
  static const auto* families = new std::vector<FamilyInfo>{
      BernoulliFamily(), MadeFamily(),        MafFamily(),      RealNvpFamily(),
      VaeFamily(),       CategoricalFamily(), GaussianFamily(), GaussianMixtureFamily(),
      FvsbnFamily(),     NadeFamily(),        PixelCnnFamily(),
  };
  return *families;
}

}  // namespace

const FamilyInfo* FindFamily(v1::ModelFamily family) {
  for (const auto& f : Registry()) {
    if (f.family == family) return &f;
  }
  return nullptr;
}

v1::ScoreKind DefaultScoreKind(const v1::ModelSpec& spec) {
  const FamilyInfo* f = FindFamily(spec.family());
  if (f == nullptr) return v1::SCORE_KIND_UNSPECIFIED;
  return f->score_kind ? f->score_kind(spec) : v1::SCORE_KIND_EXACT;
}

absl::Status CheckRange(const std::string& field, double value, double lo, double hi) {
  if (!(value >= lo && value <= hi)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ModelSpec> ResolveModelSpec(const v1::ModelSpec& raw, const DataShape& shape) {
  if (raw.family() == v1::MODEL_FAMILY_UNSPECIFIED) {
    return absl::InvalidArgumentError("model.family is required");
  }
  const FamilyInfo* f = FindFamily(raw.family());
  if (f == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("model.family ", static_cast<int>(raw.family()), " is not known"));
  }
  v1::ModelSpec spec = raw;
  f->set_defaults(&spec);
  if (spec.has_preprocessing()) {
    auto* p = spec.mutable_preprocessing();
    if (p->levels() == 0) p->set_levels(256);
    if (p->logit_alpha() == 0) p->set_logit_alpha(1e-6);
  }
  if (std::find(f->kinds.begin(), f->kinds.end(), shape.kind) == f->kinds.end()) {
    std::vector<std::string> kinds;
    for (auto k : f->kinds) kinds.push_back(KindName(k));
    return absl::FailedPreconditionError(
        absl::StrCat("model family ", f->name, " does not support ", KindName(shape.kind),
                     " data (it models ", absl::StrJoin(kinds, ", "), " data)"));
  }
  const auto& reg = spec.regularization();
  auto st = CheckRange("model.regularization.l1", reg.l1(), 0, 1e6);
  if (st.ok()) st = CheckRange("model.regularization.dropout", reg.dropout(), 0, 0.99);
  if (!st.ok()) return st;
  if (spec.has_preprocessing() && shape.kind != v1::DATA_KIND_CONTINUOUS) {
    return absl::InvalidArgumentError("model.preprocessing applies to continuous data only");
  }
  if (spec.has_preprocessing()) {
    const auto& p = spec.preprocessing();
    st = CheckRange("model.preprocessing.levels", p.levels(), 2, 65536);
    if (!st.ok()) return st;
    if (!(p.logit_alpha() > 0 && p.logit_alpha() < 0.5)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.preprocessing.logit_alpha must be in (0, 0.5), got ", p.logit_alpha()));
    }
  }
  RETURN_IF_ERROR(f->validate(spec, shape));
  return spec;
}

std::shared_ptr<DensityNet> MakeDensityNet(const v1::ModelSpec& spec, const DataShape& shape) {
  std::shared_ptr<DensityNet> net = FindFamily(spec.family())->make(spec, shape);
  if (spec.has_preprocessing()) {
    net = std::make_shared<PreprocessedNetImpl>(std::move(net), spec.preprocessing());
  }
  return net;
}

std::vector<int64_t> VariableOrder(v1::VariableOrder order, uint64_t seed, int64_t dim) {
  std::vector<int64_t> out(dim);
  for (int64_t i = 0; i < dim; ++i) out[i] = i;
  if (order == v1::VARIABLE_ORDER_RANDOM) {
    std::mt19937_64 rng(seed);
    for (int64_t i = dim - 1; i > 0; --i) {  // Fisher-Yates, portable across platforms
      std::swap(out[i], out[rng() % static_cast<uint64_t>(i + 1)]);
    }
  }
  return out;
}

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

torch::Tensor RecordsToTensor(const RecordMatrix& m) {
  if (m.rows == 0) return torch::zeros({0, m.cols});
  if (!m.f32.empty()) {
    return torch::from_blob(const_cast<float*>(m.f32.data()), {m.rows, m.cols}).clone();
  }
  if (!m.u16.empty()) {
    std::vector<float> v(m.u16.begin(), m.u16.end());
    return torch::from_blob(v.data(), {m.rows, m.cols}).clone();
  }
  return torch::from_blob(const_cast<uint8_t*>(m.u8.data()), {m.rows, m.cols}, torch::kUInt8)
      .to(torch::kFloat);
}

torch::Tensor BernoulliLogLikelihood(const torch::Tensor& logits, const torch::Tensor& x) {
  return (x * logits - torch::nn::functional::softplus(logits)).sum(1);
}

namespace {
thread_local at::Generator* current_noise = nullptr;
thread_local const StopPoll* current_stop = nullptr;
}  // namespace

void PollStop() {
  if (current_stop != nullptr && *current_stop && (*current_stop)()) throw CallStopped();
}

StopScope::StopScope(const StopPoll* poll) : previous_(current_stop) { current_stop = poll; }
StopScope::~StopScope() { current_stop = previous_; }

at::Generator& NoiseGenerator() {
  if (current_noise != nullptr) return *current_noise;
  static at::Generator default_gen = at::detail::getDefaultCPUGenerator();
  return default_gen;
}

NoiseScope::NoiseScope(at::Generator* gen) : previous_(current_noise) { current_noise = gen; }
NoiseScope::~NoiseScope() { current_noise = previous_; }

torch::Tensor DropoutNoise(int64_t rows, int64_t cols, double p) {
  const double keep = 1 - p;
  return torch::empty({rows, cols}).bernoulli_(keep, NoiseGenerator()).div_(keep);
}

torch::Tensor Dropout(const torch::Tensor& h, double p, bool training) {
  if (!training || p <= 0) return h;
  const double keep = 1 - p;
  return h * torch::empty_like(h).bernoulli_(keep, NoiseGenerator()).div_(keep);
}

void ForEachDensityNet(torch::nn::Module& root, const std::function<void(DensityNet&)>& f) {
  if (auto* net = dynamic_cast<DensityNet*>(&root)) f(*net);
  for (const auto& child : root.children()) ForEachDensityNet(*child, f);
}

torch::Tensor LogMeanExp(const torch::Tensor& x, int64_t dim) {
  return torch::logsumexp(x, dim) - std::log(static_cast<double>(x.size(dim)));
}

}  // namespace logp
