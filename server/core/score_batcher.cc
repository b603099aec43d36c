#include "server/core/score_batcher.h"

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

namespace logp {
namespace {

// Which of RecordMatrix's four stores holds the values.
enum class Store { kBits, kU8, kU16, kF32, kNone };

Store StoreOf(const RecordMatrix& m) {
  if (m.packed()) return Store::kBits;
  if (!m.u8.empty()) return Store::kU8;
  if (!m.u16.empty()) return Store::kU16;
  if (!m.f32.empty()) return Store::kF32;
  return Store::kNone;
}

template <typename T>
void Append(const std::vector<T>& from, std::vector<T>* to) {
  to->insert(to->end(), from.begin(), from.end());
}

// The rows of every part, in order (same kind and dim). Packed rows are byte-aligned, so packed
// parts concatenate as bytes; parts stored differently go through AppendRow.
RecordMatrix Concatenate(const std::vector<const RecordMatrix*>& parts) {
  RecordMatrix all;
  all.kind = parts[0]->kind;
  all.cols = parts[0]->cols;
  all.num_categories = parts[0]->num_categories;
  const Store store = StoreOf(*parts[0]);
  bool same = true;
  int64_t rows = 0;
  for (const RecordMatrix* p : parts) {
    same = same && StoreOf(*p) == store;
    rows += p->rows;
  }
  if (!same) {
    all.Reserve(rows);
    for (const RecordMatrix* p : parts) {
      for (int64_t r = 0; r < p->rows; ++r) all.AppendRow(*p, r);
    }
    return all;
  }
  for (const RecordMatrix* p : parts) {
    Append(p->bits, &all.bits);
    Append(p->u8, &all.u8);
    Append(p->u16, &all.u16);
    Append(p->f32, &all.f32);
  }
  all.rows = rows;
  return all;
}

}  // namespace

// One call in a batch; lives on its caller's stack until it returns.
struct ScoreBatcher::Member {
  Member(const Model* m, const RecordMatrix* r, const ScoreOptions* o, const CallControl* c)
      : model(m), records(r), options(o), call(c) {}
  const Model* model;
  const RecordMatrix* records;
  const ScoreOptions* options;
  const CallControl* call;
  // Written by the leader before `done`.
  absl::StatusOr<Scores> result = absl::UnknownError("not scored");
  bool retry_alone = false;
  bool done = false;  // guarded by the batcher's mu_
  absl::CondVar cv;
};

// A batch; lives on its leader's stack until the leader returns, which is after every member
// has been handed its result (or has withdrawn).
struct ScoreBatcher::Batch {
  Key key;
  std::vector<Member*> members;  // the leader first
  int64_t records = 0;
  bool open = true;  // in open_: members may still join or withdraw
  absl::Time opened;
  absl::CondVar wake;  // the leader's: full, or a pass of the model ended
};

bool ScoreBatcher::Mergeable(const Model& model, const RecordMatrix& records,
                             const ScoreOptions& options) const {
  const DataShape& shape = model.shape();
  return options_.enabled() && model.score_kind() == v1::SCORE_KIND_EXACT &&
         records.kind == shape.kind && records.cols == shape.dim &&
         records.num_categories == shape.num_categories && records.rows > 0 &&
         records.rows < options_.max_records && options.importance_samples <= 10000;
}

absl::StatusOr<Scores> ScoreBatcher::ScoreAlone(const Model& model, const RecordMatrix& records,
                                                ScoreOptions options, const CallControl& call) {
  options.stop = call.AsStopPoll();
  absl::StatusOr<Scores> scored = model.Score(records, options);
  if (!scored.ok()) return call.Explain(scored.status(), "scoring");
  return scored;
}

absl::StatusOr<Scores> ScoreBatcher::Score(const std::shared_ptr<const Model>& model,
                                           const RecordMatrix& records, const ScoreOptions& options,
                                           const CallControl& call) {
  if (!Mergeable(*model, records, options)) {
    {
      absl::MutexLock lock(&mu_);
      ++stats_.requests;
      ++stats_.alone;
    }
    return ScoreAlone(*model, records, options, call);
  }
  if (absl::Status live = call.Check("scoring"); !live.ok()) return live;
  Member self(model.get(), &records, &options, &call);
  absl::MutexLock lock(&mu_);
  ++stats_.requests;
  const Key key{model.get(), options.importance_samples, options.seed};
  auto it = open_.find(key);
  if (it != open_.end()) {
    Batch* batch = it->second;
    if (batch->records + records.rows <= options_.max_records) {
      batch->members.push_back(&self);
      batch->records += records.rows;
      if (batch->records >= options_.max_records) batch->wake.Signal();
      return Follow(batch, &self);
    }
    // It cannot take these records: it goes now, and this call opens the next batch.
    Close(batch);
    batch->wake.Signal();
  }
  Batch batch;
  batch.key = key;
  batch.members.push_back(&self);
  batch.records = records.rows;
  batch.opened = absl::Now();
  open_[key] = &batch;
  return Lead(&batch, &self);
}

void ScoreBatcher::Close(Batch* batch) {
  if (!batch->open) return;
  batch->open = false;
  auto it = open_.find(batch->key);
  if (it != open_.end() && it->second == batch) open_.erase(it);
}

void ScoreBatcher::WakeLeaders(const Model* model) {
  for (auto it = open_.lower_bound(Key{model, std::numeric_limits<int>::min(), 0});
       it != open_.end() && std::get<0>(it->first) == model; ++it) {
    it->second->wake.Signal();
  }
}

absl::StatusOr<Scores> ScoreBatcher::Follow(Batch* batch, Member* self) {
  // `batch` is alive while this member is in it and not done (see Batch).
  const absl::Time deadline = self->call->deadline();
  while (!self->done) {
    if (batch->open) {
      if (absl::Now() >= deadline) {
        // Leave before the pass: the others' batch is smaller, not broken.
        auto& m = batch->members;
        m.erase(std::find(m.begin(), m.end(), self));
        batch->records -= self->records->rows;
        ++stats_.withdrawn;
        return self->call->Check("scoring");
      }
      self->cv.WaitWithDeadline(&mu_, deadline);
    } else {
      // Started: wait for the pass (at most max_records records).
      self->cv.Wait(&mu_);
    }
  }
  if (!self->retry_alone) return std::move(self->result);
  mu_.Unlock();
  absl::StatusOr<Scores> alone =
      ScoreAlone(*self->model, *self->records, *self->options, *self->call);
  mu_.Lock();
  return alone;
}

absl::StatusOr<Scores> ScoreBatcher::Lead(Batch* batch, Member* self) {
  const Model* model = self->model;
  const absl::Time until = std::min(batch->opened + options_.max_delay, self->call->deadline());
  while (batch->open && batch->records < options_.max_records && absl::Now() < until) {
    if (options_.start_when_idle && running_.find(model) == running_.end()) break;
    batch->wake.WaitWithDeadline(&mu_, until);
  }
  Close(batch);
  const std::vector<Member*> members = batch->members;  // fixed from here on
  ++running_[model];
  ++stats_.batches;
  stats_.merged_records += batch->records;
  mu_.Unlock();

  absl::StatusOr<Scores> scored;
  {
    RecordMatrix all;
    if (members.size() > 1) {
      std::vector<const RecordMatrix*> parts;
      parts.reserve(members.size());
      for (const Member* m : members) parts.push_back(m->records);
      all = Concatenate(parts);
    }
    ScoreOptions options = *self->options;
    // Stop only when no member wants the scores any more.
    options.stop = [&members] {
      for (const Member* m : members) {
        if (m->call->Check().ok()) return false;
      }
      return true;
    };
    scored = model->Score(members.size() > 1 ? all : *self->records, options);
    if (fail_merged_passes_.load()) scored = absl::InternalError("TEST_FailMergedPasses");
  }
  int64_t offset = 0;
  for (Member* m : members) {
    const int64_t n = m->records->rows;
    if (absl::Status own = m->call->Check("scoring"); !own.ok()) {
      m->result = own;  // its deadline passed or it was cancelled meanwhile: its own status
    } else if (scored.ok()) {
      Scores s;
      s.log_prob.assign(scored->log_prob.begin() + offset, scored->log_prob.begin() + offset + n);
      if (!scored->standard_error.empty()) {
        s.standard_error.assign(scored->standard_error.begin() + offset,
                                scored->standard_error.begin() + offset + n);
      }
      s.kind = scored->kind;
      s.importance_samples = scored->importance_samples;
      m->result = std::move(s);
    } else if (absl::IsCancelled(scored.status())) {
      // The pass stopped because every member's call had: each gets its own reason.
      m->result = m->call->Explain(scored.status(), "scoring");
    } else {
      m->retry_alone = true;
    }
    offset += n;
  }

  mu_.Lock();
  if (--running_[model] == 0) running_.erase(model);
  for (Member* m : members) {
    if (m->retry_alone) ++stats_.retried_alone;
    if (m == self) continue;
    m->done = true;
    m->cv.Signal();
  }
  WakeLeaders(model);
  if (!self->retry_alone) return std::move(self->result);
  mu_.Unlock();
  absl::StatusOr<Scores> alone = ScoreAlone(*model, *self->records, *self->options, *self->call);
  mu_.Lock();
  return alone;
}

ScoreBatcherStats ScoreBatcher::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

int64_t ScoreBatcher::TEST_Waiting(const Model* model) const {
  absl::MutexLock lock(&mu_);
  int64_t n = 0;
  for (const auto& [key, batch] : open_) {
    if (std::get<0>(key) == model) n += static_cast<int64_t>(batch->members.size());
  }
  return n;
}

}  // namespace logp
