// Train (models/train.h): the Trainer, one run of the maximum-likelihood loop, and where it
// starts from (a fresh model or a checkpoint).
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "models/checkpoint_codec.h"
#include "models/density_net.h"
#include "models/fused_adam.h"
#include "models/kernels.h"
#include "models/stats.h"
#include "models/train.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace {

using Clock = std::chrono::steady_clock;

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

// Per-record LogProb of all rows of `base` in batches, polling `stop` between batches: false
// (and `out` incomplete) if it said stop. The training objective's view (validation).
bool LogProbAll(DensityNet& net, const torch::Tensor& base, const std::function<bool()>& stop,
                std::vector<double>* out) {
  out->clear();
  out->reserve(base.size(0));
  torch::NoGradGuard no_grad;
  for (int64_t b = 0; b < base.size(0); b += kEvalBatchRows) {
    if (stop()) return false;
    const int64_t e = std::min(base.size(0), b + kEvalBatchRows);
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

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

bool IsOutOfMemory(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr) return true;
  const std::string what = e.what();
  return what.find("not enough memory") != std::string::npos ||
         what.find("can't allocate memory") != std::string::npos;
}

// One run of Train over a model: Run() trains epoch by epoch, a Step() at a time (a gradient
// batch, an EM iteration or the closed-form fit), with ValidateEpoch() after each epoch, until a
// stopping rule (StopReason()), the observer or an error ends it. It checkpoints when the
// observer asks (MaybeCheckpoint()) or suspends. Not thread-safe; call Run() once.
class Trainer {
 public:
  // `resume_state`: the training-state part of the checkpoint that `model` was read from (empty
  // for a fresh model). The records, options and observer must outlive the Trainer; Train has
  // checked them.
  Trainer(std::unique_ptr<Model> model, std::string resume_state, const RecordMatrix& train,
          const RecordMatrix& validation, const TrainOptions& options, TrainObserver* observer);

  absl::StatusOr<TrainResult> Run();

 private:
  // The rows, the optimiser and the generators of the run.
  void Prepare();
  // The state to start from: the checkpoint's, or a fresh one. UnusableCheckpoint if the
  // checkpoint's training state cannot be read.
  absl::Status Restore();
  // This epoch's record order (a resumed epoch keeps the one it had).
  void StartEpoch();
  // The steps left in the epoch; sets stop_reason_ if max_steps or max_seconds ends it first.
  absl::Status TrainEpoch();
  // One step: its loss, the bookkeeping, progress. FAILED_PRECONDITION if the loss diverged.
  absl::Status Step();
  struct StepLoss {
    double loss;  // mean over the records
    int64_t records;
  };
  absl::StatusOr<StepLoss> GradientStep();
  absl::StatusOr<StepLoss> FitStep();  // the closed form or one EM iteration, on all rows
  void ReportProgress();
  // Validation (and training-subset) NLL of the epoch's weights, the epoch summary, the best
  // weights so far; then moves to the next epoch. CANCELLED / ABORTED as Interrupted().
  absl::Status ValidateEpoch();
  // Why training ends after this epoch (early stopping, all epochs done); empty to go on.
  std::string StopReason() const;
  // Writes a checkpoint if the observer says one is due at this step.
  absl::Status MaybeCheckpoint();
  absl::Status Checkpoint();
  // CANCELLED if the observer asked to stop, ABORTED after a checkpoint if it asked to suspend.
  absl::Status Interrupted();
  bool StopPolled();
  // Training seconds of the job, this run segment included.
  double Elapsed() const;
  // The best epoch's weights as the result.
  absl::StatusOr<TrainResult> Finish();

  std::unique_ptr<Model> model_;
  DensityNet& net_;
  const std::string resume_state_;
  const RecordMatrix& train_;
  const RecordMatrix& validation_;
  const TrainOptions& options_;
  TrainObserver* const observer_;
  const DataShape shape_;
  const double nats_to_bpd_;
  const int64_t n_;   // training rows
  const int64_t bs_;  // batch size

  // Set by Prepare.
  DensityNet::Fit fit_ = DensityNet::Fit::kGradient;
  bool gradient_ = true;
  // One step is a batch (gradient), a whole EM iteration, or the closed-form fit.
  int64_t steps_per_epoch_ = 0;
  int64_t epochs_ = 0;
  int64_t total_steps_ = 0;
  double l1_ = 0;
  std::optional<RowSource> train_rows_;
  torch::Tensor valid_x_;
  // The other side of the generalisation gap: a fixed subset of the training records, as many
  // as the validation records (at most 10,000), scored with each epoch's final weights.
  torch::Tensor train_eval_x_;
  // Closed-form and EM fits read all training rows at every step.
  torch::Tensor train_all_;
  std::unique_ptr<torch::optim::Adam> optimizer_;
  // Draws the record order of each epoch.
  at::Generator gen_;
  // The job's own generator of training noise (dropout, dequantisation, VAE eps): nothing
  // that trains beside it draws from it, and nothing it draws comes from elsewhere.
  at::Generator noise_;
  std::vector<DensityNet*> nets_;  // the net and its sub-nets, for MaskGradients

  TrainState st_;
  std::string stop_reason_;
  Clock::time_point segment_start_;        // this run's start (train_seconds excludes it)
  Clock::time_point epoch_segment_start_;  // this run's start of the current epoch
  // Progress reports: the records and loss since the last one.
  Clock::time_point window_start_;
  double window_sum_ = 0;
  int64_t window_records_ = 0;
};

Trainer::Trainer(std::unique_ptr<Model> model, std::string resume_state, const RecordMatrix& train,
                 const RecordMatrix& validation, const TrainOptions& options,
                 TrainObserver* observer)
    : model_(std::move(model)),
      net_(NetOf(*model_)),
      resume_state_(std::move(resume_state)),
      train_(train),
      validation_(validation),
      options_(options),
      observer_(observer),
      shape_{train.kind, train.cols, train.num_categories},
      nats_to_bpd_(1.0 / (static_cast<double>(shape_.dim) * std::log(2.0))),
      n_(train.rows),
      bs_(options.batch_size) {}

absl::StatusOr<TrainResult> Trainer::Run() {
  try {
    Prepare();
    NoiseScope noise_scope(&noise_);
    RETURN_IF_ERROR(Restore());
    observer_->OnStart(total_steps_, st_.step);
    net_.train();
    net_.SetBlockProducts(options_.block_products);
    ForEachDensityNet(net_, [&](DensityNet& d) { nets_.push_back(&d); });
    segment_start_ = Clock::now();
    epoch_segment_start_ = segment_start_;
    window_start_ = Clock::now();
    while (stop_reason_.empty()) {
      StartEpoch();
      RETURN_IF_ERROR(TrainEpoch());
      if (st_.epoch_records == 0) break;  // stopped before any step of this epoch
      // Validation of the epoch (or of the partial epoch a stopping rule ended).
      RETURN_IF_ERROR(ValidateEpoch());
      if (!stop_reason_.empty()) break;
      stop_reason_ = StopReason();
      if (stop_reason_.empty()) RETURN_IF_ERROR(MaybeCheckpoint());
    }
    return Finish();
  } catch (const std::exception& e) {
    if (IsOutOfMemory(e)) {
      return absl::ResourceExhaustedError(absl::StrFormat("out of memory at step %d (epoch %d): %s",
                                                          st_.step + 1, st_.epoch, e.what()));
    }
    return absl::InternalError(absl::StrFormat("training failed at step %d (epoch %d): %s",
                                               st_.step + 1, st_.epoch, e.what()));
  }
}

void Trainer::Prepare() {
  train_rows_.emplace(train_);
  valid_x_ = BorrowRows(validation_);
  const int64_t m = std::min<int64_t>({train_.rows, validation_.rows, 10000});
  if (m == train_.rows) {
    train_eval_x_ = train_rows_->All();
  } else {
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(options_.seed + 2);
    train_eval_x_ =
        train_rows_->Gather(torch::randperm(train_.rows, g, torch::kLong).slice(0, 0, m));
  }
  fit_ = net_.fit();
  gradient_ = fit_ == DensityNet::Fit::kGradient;
  if (!gradient_) train_all_ = train_rows_->All();
  steps_per_epoch_ = gradient_ ? (n_ + bs_ - 1) / bs_ : 1;
  epochs_ = fit_ == DensityNet::Fit::kClosedForm ? 1 : options_.epochs;
  total_steps_ = steps_per_epoch_ * epochs_;
  if (options_.max_steps > 0) total_steps_ = std::min(total_steps_, options_.max_steps);
  l1_ = model_->spec().regularization().l1();
  if (gradient_) {
    optimizer_ = std::make_unique<FusedAdam>(
        net_.parameters(),
        torch::optim::AdamOptions(options_.learning_rate).weight_decay(options_.weight_decay));
  }
  gen_ = at::make_generator<at::CPUGeneratorImpl>(options_.seed + 1);
  noise_ = at::make_generator<at::CPUGeneratorImpl>(options_.seed + 3);
}

absl::Status Trainer::Restore() {
  if (resume_state_.empty()) {
    st_.best_state = CopyState(net_);
    return absl::OkStatus();
  }
  try {
    DecodeTrainState(resume_state_, n_, &st_, optimizer_.get(), gen_, noise_);
  } catch (const std::exception& e) {
    return UnusableCheckpoint(absl::StrCat("checkpoint: ", e.what()));
  }
  return absl::OkStatus();
}

void Trainer::StartEpoch() {
  // A resumed epoch keeps the order it had (drawn before the checkpoint).
  if (gradient_ && !st_.perm.defined()) {
    st_.perm = torch::randperm(n_, gen_, torch::TensorOptions().dtype(torch::kLong));
  }
  epoch_segment_start_ = Clock::now();
}

absl::Status Trainer::TrainEpoch() {
  while (st_.next_batch < steps_per_epoch_) {
    RETURN_IF_ERROR(Interrupted());
    if (options_.max_steps > 0 && st_.step >= options_.max_steps) {
      stop_reason_ = absl::StrCat("max_steps ", options_.max_steps, " reached");
      break;
    }
    if (options_.max_seconds > 0 && Elapsed() >= options_.max_seconds) {
      stop_reason_ = absl::StrCat("max_seconds ", options_.max_seconds, " reached");
      break;
    }
    RETURN_IF_ERROR(Step());
    if (st_.next_batch < steps_per_epoch_) RETURN_IF_ERROR(MaybeCheckpoint());
  }
  return absl::OkStatus();
}

absl::Status Trainer::Step() {
  ASSIGN_OR_RETURN(const StepLoss s, gradient_ ? GradientStep() : FitStep());
  ++st_.step;
  ++st_.next_batch;
  st_.epoch_sum += s.loss * s.records;
  st_.epoch_records += s.records;
  window_sum_ += s.loss * s.records;
  window_records_ += s.records;
  ReportProgress();
  return absl::OkStatus();
}

absl::StatusOr<Trainer::StepLoss> Trainer::GradientStep() {
  const int64_t b = st_.next_batch * bs_, e = std::min(n_, b + bs_);
  const torch::Tensor x = train_rows_->GatherFloat(st_.perm.slice(0, b, e));
  net_.BeforeStep(st_.step);
  torch::Tensor loss;
  if (l1_ == 0) loss = net_.LossAndGradients(x);
  if (!loss.defined()) {
    loss = net_.Loss(x);
    // Gradients reset to undefined rather than zeroed: backward then stores each one
    // as computed, with no zero fill and no accumulating pass over the weights.
    for (auto& p : net_.parameters()) p.mutable_grad().reset();
    if (l1_ > 0) {
      (loss + l1_ * L1Penalty(net_)).backward();
    } else {
      loss.backward();
    }
    for (DensityNet* d : nets_) d->MaskGradients();
  }
  const double lv = loss.item<double>();
  if (!std::isfinite(lv)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "training diverged: loss is %f at step %d (epoch %d)", lv, st_.step + 1, st_.epoch));
  }
  optimizer_->step();
  return StepLoss{lv, e - b};
}

absl::StatusOr<Trainer::StepLoss> Trainer::FitStep() {
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor train_f = train_all_.to(torch::kFloat);
    if (fit_ == DensityNet::Fit::kEm) {
      net_.EmStep(train_f);
    } else {
      net_.FitClosedForm(train_f);
    }
  }
  const double lv = SummarizeLogProbs(LogProbAll(net_, train_all_), shape_.dim).mean_nll;
  if (!std::isfinite(lv)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "training diverged: NLL is %f after step %d (epoch %d)", lv, st_.step + 1, st_.epoch));
  }
  return StepLoss{lv, n_};
}

void Trainer::ReportProgress() {
  const auto now = Clock::now();
  const bool due = st_.next_batch == steps_per_epoch_ ||
                   Seconds(window_start_, now) >= options_.progress_interval_seconds;
  if (!due) return;
  v1::TrainingProgress p;
  p.set_epoch(static_cast<int32_t>(st_.epoch));
  p.set_step(st_.step);
  p.set_total_steps(total_steps_);
  p.set_train_nll(window_sum_ / window_records_);
  p.set_train_bits_per_dim(p.train_nll() * nats_to_bpd_);
  p.set_samples_per_second(window_records_ / std::max(1e-9, Seconds(window_start_, now)));
  observer_->OnProgress(p);
  window_start_ = now;
  window_sum_ = 0;
  window_records_ = 0;
}

absl::Status Trainer::ValidateEpoch() {
  RETURN_IF_ERROR(Interrupted());
  net_.eval();
  std::vector<double> valid_lp, train_lp;
  const auto stop = [this] { return StopPolled(); };
  const bool complete = LogProbAll(net_, valid_x_, stop, &valid_lp) &&
                        LogProbAll(net_, train_eval_x_, stop, &train_lp);
  net_.train();
  if (!complete) {
    RETURN_IF_ERROR(Interrupted());
    return absl::CancelledError("job cancelled");
  }
  const NllSummary v = SummarizeLogProbs(valid_lp, shape_.dim);
  const NllSummary t = SummarizeLogProbs(train_lp, shape_.dim);
  const double epoch_secs =
      std::max(1e-9, st_.epoch_seconds + Seconds(epoch_segment_start_, Clock::now()));
  v1::EpochSummary e;
  e.set_epoch(static_cast<int32_t>(st_.epoch));
  e.set_step(st_.step);
  e.set_train_nll(st_.epoch_sum / static_cast<double>(st_.epoch_records));
  e.set_validation_nll(v.mean_nll);
  e.set_validation_bits_per_dim(v.bits_per_dim);
  e.set_validation_standard_error(v.standard_error);
  e.set_samples_per_second(static_cast<double>(st_.epoch_records) / epoch_secs);
  e.set_train_eval_nll(t.mean_nll);
  e.set_generalization_gap(v.mean_nll - t.mean_nll);
  e.set_is_best(v.mean_nll < st_.best);
  if (e.is_best()) {
    st_.best = v.mean_nll;
    st_.best_epoch = st_.epoch;
    st_.since_best = 0;
    st_.best_state = CopyState(net_);
  } else {
    ++st_.since_best;
  }
  e.set_epochs_since_best(static_cast<int32_t>(st_.since_best));
  observer_->OnEpoch(e);
  // The next epoch starts here; a checkpoint now never repeats this epoch's summary.
  st_.epoch_seconds = 0;
  st_.epoch_sum = 0;
  st_.epoch_records = 0;
  st_.next_batch = 0;
  st_.perm = torch::Tensor();
  ++st_.epoch;
  return absl::OkStatus();
}

std::string Trainer::StopReason() const {
  if (options_.early_stopping_patience > 0 && st_.since_best >= options_.early_stopping_patience) {
    return absl::StrCat("early stopping: no better validation NLL for ", st_.since_best,
                        " epochs (best: epoch ", st_.best_epoch, ")");
  }
  if (st_.epoch > epochs_) {
    return absl::StrCat("completed ", epochs_, epochs_ == 1 ? " epoch" : " epochs");
  }
  return "";
}

absl::Status Trainer::MaybeCheckpoint() {
  return observer_->CheckpointDue(st_.step) ? Checkpoint() : absl::OkStatus();
}

absl::Status Trainer::Checkpoint() {
  TrainState snapshot = st_;
  snapshot.train_seconds = Elapsed();
  snapshot.epoch_seconds = st_.epoch_seconds + Seconds(epoch_segment_start_, Clock::now());
  const auto t0 = Clock::now();
  ASSIGN_OR_RETURN(std::string bytes,
                   EncodeCheckpoint(*model_, snapshot, optimizer_.get(), gen_, noise_, n_));
  return observer_->OnCheckpoint(
      TrainCheckpoint{st_.step, st_.epoch, std::move(bytes), Seconds(t0, Clock::now())});
}

absl::Status Trainer::Interrupted() {
  if (observer_->StopRequested()) return absl::CancelledError("job cancelled");
  if (observer_->SuspendRequested()) {
    RETURN_IF_ERROR(Checkpoint());
    return absl::AbortedError(absl::StrCat("suspended at step ", st_.step));
  }
  return absl::OkStatus();
}

bool Trainer::StopPolled() { return observer_->StopRequested() || observer_->SuspendRequested(); }

double Trainer::Elapsed() const {
  return st_.train_seconds + Seconds(segment_start_, Clock::now());
}

absl::StatusOr<TrainResult> Trainer::Finish() {
  if (stop_reason_.empty()) stop_reason_ = "stopped before the first step";
  if (st_.best_epoch == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("no epoch was validated before training stopped (", stop_reason_, ")"));
  }
  RestoreState(net_, st_.best_state);
  net_.eval();
  TrainResult result;
  result.best_validation_nll = st_.best;
  result.best_epoch = st_.best_epoch;
  result.steps = st_.step;
  result.stop_reason = std::move(stop_reason_);
  result.model = std::move(model_);
  return result;
}

// Where a run starts: a model, and the training state of the checkpoint it was read from (empty
// for a fresh model).
struct StartPoint {
  std::unique_ptr<Model> model;
  std::string state;
};

// The start point of a resumed run; UnusableCheckpoint unless the checkpoint is readable and was
// written for `raw_spec` and data of `shape`.
absl::StatusOr<StartPoint> ReadCheckpoint(const std::string& checkpoint,
                                          const v1::ModelSpec& raw_spec, const DataShape& shape) {
  auto parts = SplitCheckpoint(checkpoint);
  if (!parts.ok()) return UnusableCheckpoint(parts.status().message());
  auto m = Model::Deserialize(parts->first);
  if (!m.ok()) return UnusableCheckpoint(absl::StrCat("checkpoint: ", m.status().message()));
  const absl::StatusOr<v1::ModelSpec> spec = ResolveModelSpec(raw_spec, shape);
  if (!spec.ok() || (*m)->spec().SerializeAsString() != spec->SerializeAsString() ||
      (*m)->shape().dim != shape.dim || (*m)->shape().kind != shape.kind) {
    return UnusableCheckpoint("checkpoint: written for a different model or data");
  }
  return StartPoint{std::move(*m), std::move(parts->second)};
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
  StartPoint start;
  if (options.resume_from != nullptr) {
    ASSIGN_OR_RETURN(start, ReadCheckpoint(*options.resume_from, raw_spec, shape));
  } else {
    ASSIGN_OR_RETURN(start.model, Model::Create(raw_spec, shape, options.seed));
  }
  return Trainer(std::move(start.model), std::move(start.state), train, validation, options,
                 observer)
      .Run();
}

}  // namespace logp
