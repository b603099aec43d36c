#include "server/core/checkpoint_store.h"

#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "proto/cc/status_macros.h"
#include "server/core/files.h"

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
                                                                       int keep) {
  if (keep < 1) return absl::InvalidArgumentError("checkpoints kept must be >= 1");
  std::unique_ptr<CheckpointStore> store(new CheckpointStore(data_dir + "/checkpoints", keep));
  RETURN_IF_ERROR(MakeDirs(store->dir_));
  return store;
}

std::string CheckpointStore::PathOf(const std::string& job_id, int64_t step) const {
  return absl::StrFormat("%s/%020d%s", JobDir(job_id), step, kSuffix);
}

absl::Status CheckpointStore::Write(const std::string& job_id, int64_t step,
                                    absl::string_view bytes) {
  RETURN_IF_ERROR(MakeDirs(JobDir(job_id)));
  RETURN_IF_ERROR(WriteFileDurably(PathOf(job_id, step), bytes));
  const std::vector<int64_t> steps = Steps(job_id);
  for (size_t i = keep_; i < steps.size(); ++i) Remove(job_id, steps[i]);
  return absl::OkStatus();
}

std::vector<int64_t> CheckpointStore::Steps(const std::string& job_id) const {
  std::vector<int64_t> steps;
  for (const auto& name : ListDir(JobDir(job_id))) {
    const int64_t s = StepOf(name);
    if (s >= 0) steps.push_back(s);
  }
  std::sort(steps.rbegin(), steps.rend());
  return steps;
}

absl::StatusOr<std::string> CheckpointStore::Read(const std::string& job_id, int64_t step) const {
  return ReadFile(PathOf(job_id, step));
}

void CheckpointStore::Remove(const std::string& job_id, int64_t step) {
  absl::Status st = RemoveFile(PathOf(job_id, step));
  if (!st.ok()) LOG(WARNING) << "removing checkpoint: " << st;
}

void CheckpointStore::RemoveAll(const std::string& job_id) {
  const std::string dir = JobDir(job_id);
  for (const auto& name : ListDir(dir)) RemoveFile(dir + "/" + name).IgnoreError();
  ::rmdir(dir.c_str());
}

void CheckpointStore::RemoveAllExcept(const std::set<std::string>& jobs) {
  for (const auto& job : ListDir(dir_)) {
    if (jobs.count(job) == 0) {
      LOG(INFO) << "removing checkpoints of ended job " << job;
      RemoveAll(job);
      continue;
    }
    for (const auto& name : ListDir(JobDir(job))) {  // temporary files of an interrupted write
      if (StepOf(name) < 0) RemoveFile(JobDir(job) + "/" + name).IgnoreError();
    }
  }
}

}  // namespace logp
