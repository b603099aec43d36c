#include "server/core/checkpoint_store.h"

#include <glog/logging.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace {

constexpr absl::string_view kSuffix = ".ckpt";

// The step of a whole checkpoint's file name, or -1 (temporary files and strangers).
int64_t StepOf(const std::string& name) {
  if (!absl::EndsWith(name, kSuffix)) return -1;
  int64_t step;
  if (!absl::SimpleAtoi(absl::string_view(name).substr(0, name.size() - kSuffix.size()), &step)) {
    return -1;
  }
  return step;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Open(const std::string& data_dir,
                                                                       int keep, FileSystem* fs) {
  if (keep < 1) return absl::InvalidArgumentError("checkpoints kept must be >= 1");
  std::unique_ptr<CheckpointStore> store(new CheckpointStore(data_dir + "/checkpoints", keep, fs));
  RETURN_IF_ERROR(fs->MakeDirs(store->dir_));
  return store;
}

std::string CheckpointStore::PathOf(const std::string& job_id, int64_t step) const {
  return absl::StrFormat("%s/%020d%s", JobDir(job_id), step, kSuffix);
}

absl::Status CheckpointStore::Write(const std::string& job_id, int64_t step,
                                    absl::string_view bytes) {
  RETURN_IF_ERROR(fs_->MakeDirs(JobDir(job_id)));
  return WriteChecksummedFile(fs_, PathOf(job_id, step), bytes);
}

void CheckpointStore::Prune(const std::string& job_id, int64_t registered) {
  int kept = 0;
  for (const int64_t step : Steps(job_id)) {  // newest first
    if (step > registered) continue;
    if (kept < keep_) {
      ++kept;
    } else {
      Remove(job_id, step);
    }
  }
}

std::vector<int64_t> CheckpointStore::Steps(const std::string& job_id) const {
  std::vector<int64_t> steps;
  for (const auto& name : fs_->ListDir(JobDir(job_id))) {
    const int64_t s = StepOf(name);
    if (s >= 0) steps.push_back(s);
  }
  std::sort(steps.rbegin(), steps.rend());
  return steps;
}

absl::StatusOr<std::string> CheckpointStore::Read(const std::string& job_id, int64_t step) const {
  return ReadChecksummedFile(fs_, PathOf(job_id, step),
                             absl::StrCat("checkpoint at step ", step, " of job ", job_id),
                             {"LOGPCKP1"});
}

void CheckpointStore::Remove(const std::string& job_id, int64_t step) {
  absl::Status st = fs_->RemoveFile(PathOf(job_id, step));
  if (!st.ok()) LOG(WARNING) << "removing checkpoint: " << st;
}

void CheckpointStore::RemoveAll(const std::string& job_id) {
  const std::string dir = JobDir(job_id);
  for (const auto& name : fs_->ListDir(dir)) fs_->RemoveFile(dir + "/" + name).IgnoreError();
  fs_->RemoveDir(dir).IgnoreError();
}

void CheckpointStore::RemoveAllExcept(const std::function<bool(const std::string&)>& keep,
                                      bool temporaries) {
  for (const auto& job : fs_->ListDir(dir_)) {
    if (!keep(job)) {
      LOG(INFO) << "removing checkpoints of ended job " << job;
      RemoveAll(job);
      continue;
    }
    if (!temporaries) continue;
    for (const auto& name : fs_->ListDir(JobDir(job))) {  // temporary files of a torn write
      if (StepOf(name) < 0) fs_->RemoveFile(JobDir(job) + "/" + name).IgnoreError();
    }
  }
}

}  // namespace logp
