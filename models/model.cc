// The Model facade, (de)serialisation and the maximum-likelihood training loop.
#include "models/model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "models/density_net.h"
#include "models/stats.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace {

constexpr char kMagic[8] = {'L', 'O', 'G', 'P', 'M', 'D', 'L', '1'};
constexpr int64_t kEvalBatch = 2048;

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

// A tensor over all rows of `m` without copying 8-bit or float data (it borrows m's storage).
torch::Tensor BorrowRows(const RecordMatrix& m) {
  if (!m.f32.empty()) return torch::from_blob(const_cast<float*>(m.f32.data()), {m.rows, m.cols});
  if (!m.u8.empty()) {
    return torch::from_blob(const_cast<uint8_t*>(m.u8.data()), {m.rows, m.cols}, torch::kUInt8);
  }
  return RecordsToTensor(m);
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

// Scores of all rows of `base` (any dtype), in batches, without gradients.
Scores ScoreAll(DensityNet& net, const torch::Tensor& base, const ScoreOptions& options) {
  Scores out;
  out.log_prob.reserve(base.size(0));
  torch::NoGradGuard no_grad;
  for (int64_t b = 0; b < base.size(0); b += kEvalBatch) {
    const int64_t e = std::min(base.size(0), b + kEvalBatch);
    ScoreOptions batch_options = options;
    batch_options.seed = options.seed + static_cast<uint64_t>(b);
    ScoreBatch s = net.Score(base.slice(0, b, e).to(torch::kFloat), batch_options);
    auto lp = s.log_prob.to(torch::kDouble).contiguous();
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

// Per-record LogProb of all rows of `base`: the training objective's view (validation).
std::vector<double> LogProbAll(DensityNet& net, const torch::Tensor& base) {
  std::vector<double> out;
  out.reserve(base.size(0));
  torch::NoGradGuard no_grad;
  for (int64_t b = 0; b < base.size(0); b += kEvalBatch) {
    const int64_t e = std::min(base.size(0), b + kEvalBatch);
    auto lp = net.LogProb(base.slice(0, b, e).to(torch::kFloat)).to(torch::kDouble).contiguous();
    out.insert(out.end(), lp.data_ptr<double>(), lp.data_ptr<double>() + lp.numel());
  }
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
  try {
    std::string spec_bytes = impl_->spec.SerializeAsString();
    std::ostringstream out;
    out.write(kMagic, sizeof(kMagic));
    const uint32_t spec_len = static_cast<uint32_t>(spec_bytes.size());
    const int32_t kind = impl_->shape.kind, k = impl_->shape.num_categories;
    const int64_t dim = impl_->shape.dim;
    out.write(reinterpret_cast<const char*>(&spec_len), sizeof(spec_len));
    out.write(spec_bytes.data(), spec_len);
    out.write(reinterpret_cast<const char*>(&kind), sizeof(kind));
    out.write(reinterpret_cast<const char*>(&dim), sizeof(dim));
    out.write(reinterpret_cast<const char*>(&k), sizeof(k));
    torch::serialize::OutputArchive archive;
    impl_->net->save(archive);
    archive.save_to(out);
    return out.str();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("serialising model: ", e.what()));
  }
}

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
  try {
    ASSIGN_OR_RETURN(impl->net, MakeDensityNet(impl->spec, impl->shape));
    torch::serialize::InputArchive archive;
    std::istringstream in(bytes.substr(pos));
    archive.load_from(in);
    impl->net->load(archive);
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("model file: ", e.what()));
  }
  return std::make_unique<Model>(std::move(impl));
}

absl::StatusOr<std::vector<double>> Model::LogProb(const RecordMatrix& records) const {
  RETURN_IF_ERROR(CheckMatches(records, impl_->shape, "records"));
  try {
    c10::InferenceMode guard;
    return ScoreAll(*impl_->net, BorrowRows(records), ScoreOptions{}).log_prob;
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
    return ScoreAll(*impl_->net, BorrowRows(records), options);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("scoring: ", e.what()));
  }
}

absl::StatusOr<RecordMatrix> Model::Sample(int64_t n, uint64_t seed) const {
  if (n < 0) return absl::InvalidArgumentError("sample count must be >= 0");
  try {
    c10::InferenceMode guard;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    return TensorToRecords(impl_->net->Sample(n, gen), impl_->shape);
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
v1::ScoreKind Model::score_kind() const {
  // The kind of a default score, read off a one-record score (cheap for every family).
  try {
    c10::InferenceMode guard;
    return impl_->net->Score(torch::zeros({1, impl_->shape.dim}), ScoreOptions{}).kind;
  } catch (const std::exception&) {
    return v1::SCORE_KIND_UNSPECIFIED;
  }
}
void* Model::TEST_net() const { return impl_->net.get(); }

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
  RecordMatrix train = data, valid = data;
  train.rows = valid.rows = 0;
  train.u8.clear(), train.u16.clear(), train.f32.clear();
  valid.u8.clear(), valid.u16.clear(), valid.f32.clear();
  train.Reserve(data.rows - n_valid);
  valid.Reserve(n_valid);
  for (int64_t r = 0; r < data.rows; ++r) (is_valid[r] ? valid : train).AppendRow(data, r);
  return std::make_pair(std::move(train), std::move(valid));
}

void SetComputeThreads(int threads) {
  if (threads > 0) at::set_num_threads(threads);
}

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
  ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::Create(raw_spec, shape, options.seed));
  DensityNet& net = *static_cast<DensityNet*>(model->TEST_net());
  const double nats_to_bpd = 1.0 / (static_cast<double>(shape.dim) * std::log(2.0));
  try {
    torch::Tensor train_x = BorrowRows(train);
    torch::Tensor valid_x = BorrowRows(validation);
    TrainResult result;
    auto validate = [&](int epoch, int64_t step, double train_nll, double samples_per_s,
                        double* best) {
      net.eval();
      NllSummary s = SummarizeLogProbs(LogProbAll(net, valid_x), shape.dim);
      net.train();
      v1::EpochSummary e;
      e.set_epoch(epoch);
      e.set_step(step);
      e.set_train_nll(train_nll);
      e.set_validation_nll(s.mean_nll);
      e.set_validation_bits_per_dim(s.bits_per_dim);
      e.set_validation_standard_error(s.standard_error);
      e.set_samples_per_second(samples_per_s);
      e.set_is_best(s.mean_nll < *best);
      if (e.is_best()) *best = s.mean_nll;
      observer->OnEpoch(e);
      return e.is_best();
    };

    double best = std::numeric_limits<double>::infinity();
    const double l1 = model->spec().regularization().l1();
    if (net.fit() == DensityNet::Fit::kEm) {
      // EM: one step over the whole training set per epoch.
      observer->OnStart(options.epochs);
      std::vector<torch::Tensor> best_state = CopyState(net);
      const torch::Tensor train_f = train_x.to(torch::kFloat);
      for (int64_t epoch = 1; epoch <= options.epochs; ++epoch) {
        if (observer->StopRequested()) return absl::CancelledError("job cancelled");
        const auto t0 = std::chrono::steady_clock::now();
        {
          torch::NoGradGuard no_grad;
          net.EmStep(train_f);
        }
        const double secs = std::max(1e-9, Seconds(t0, std::chrono::steady_clock::now()));
        const double train_nll = SummarizeLogProbs(LogProbAll(net, train_x), shape.dim).mean_nll;
        if (!std::isfinite(train_nll)) {
          return absl::FailedPreconditionError(
              absl::StrFormat("training diverged: NLL is %f after EM step %d", train_nll, epoch));
        }
        v1::TrainingProgress p;
        p.set_epoch(static_cast<int32_t>(epoch));
        p.set_step(epoch);
        p.set_total_steps(options.epochs);
        p.set_train_nll(train_nll);
        p.set_train_bits_per_dim(train_nll * nats_to_bpd);
        p.set_samples_per_second(train.rows / secs);
        observer->OnProgress(p);
        if (validate(static_cast<int>(epoch), epoch, train_nll, train.rows / secs, &best)) {
          best_state = CopyState(net);
        }
      }
      RestoreState(net, best_state);
      result.steps = options.epochs;
    } else if (net.fit() == DensityNet::Fit::kClosedForm) {
      // Closed-form maximum likelihood: one "step" over all the training data.
      observer->OnStart(1);
      const auto t0 = std::chrono::steady_clock::now();
      net.FitClosedForm(train_x.to(torch::kFloat));
      const double secs = std::max(1e-9, Seconds(t0, std::chrono::steady_clock::now()));
      const double train_nll = [&] {
        NllSummary s = SummarizeLogProbs(LogProbAll(net, train_x), shape.dim);
        return s.mean_nll;
      }();
      v1::TrainingProgress p;
      p.set_epoch(1);
      p.set_step(1);
      p.set_total_steps(1);
      p.set_train_nll(train_nll);
      p.set_train_bits_per_dim(train_nll * nats_to_bpd);
      p.set_samples_per_second(train.rows / secs);
      observer->OnProgress(p);
      validate(1, 1, train_nll, train.rows / secs, &best);
      result.steps = 1;
    } else {
      const int64_t n = train.rows, bs = options.batch_size;
      const int64_t steps_per_epoch = (n + bs - 1) / bs;
      const int64_t total_steps = steps_per_epoch * options.epochs;
      observer->OnStart(total_steps);
      torch::optim::Adam optimizer(
          net.parameters(),
          torch::optim::AdamOptions(options.learning_rate).weight_decay(options.weight_decay));
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed + 1);
      std::vector<torch::Tensor> best_state = CopyState(net);
      net.train();
      int64_t step = 0;
      for (int64_t epoch = 1; epoch <= options.epochs; ++epoch) {
        auto perm = torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong));
        const auto epoch_start = std::chrono::steady_clock::now();
        auto window_start = epoch_start;
        double epoch_sum = 0, window_sum = 0;
        int64_t epoch_records = 0, window_records = 0;
        for (int64_t b = 0; b < n; b += bs) {
          if (observer->StopRequested()) return absl::CancelledError("job cancelled");
          const int64_t e = std::min(n, b + bs);
          auto x = train_x.index_select(0, perm.slice(0, b, e)).to(torch::kFloat);
          net.BeforeStep(step);
          auto loss = net.Loss(x);
          optimizer.zero_grad();
          if (l1 > 0) {
            (loss + l1 * L1Penalty(net)).backward();
          } else {
            loss.backward();
          }
          optimizer.step();
          ++step;
          const double lv = loss.item<double>();
          if (!std::isfinite(lv)) {
            return absl::FailedPreconditionError(absl::StrFormat(
                "training diverged: loss is %f at step %d (epoch %d)", lv, step, epoch));
          }
          epoch_sum += lv * (e - b);
          window_sum += lv * (e - b);
          epoch_records += e - b;
          window_records += e - b;
          const auto now = std::chrono::steady_clock::now();
          const bool last = e == n;
          if (last || Seconds(window_start, now) >= options.progress_interval_seconds) {
            v1::TrainingProgress p;
            p.set_epoch(static_cast<int32_t>(epoch));
            p.set_step(step);
            p.set_total_steps(total_steps);
            p.set_train_nll(window_sum / window_records);
            p.set_train_bits_per_dim(p.train_nll() * nats_to_bpd);
            p.set_samples_per_second(window_records / std::max(1e-9, Seconds(window_start, now)));
            observer->OnProgress(p);
            window_start = now;
            window_sum = 0;
            window_records = 0;
          }
        }
        const double secs = std::max(1e-9, Seconds(epoch_start, std::chrono::steady_clock::now()));
        if (validate(static_cast<int>(epoch), step, epoch_sum / epoch_records, epoch_records / secs,
                     &best)) {
          best_state = CopyState(net);
        }
      }
      RestoreState(net, best_state);
      result.steps = step;
    }
    net.eval();
    result.best_validation_nll = best;
    result.model = std::move(model);
    return result;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("training failed: ", e.what()));
  }
}

}  // namespace logp
