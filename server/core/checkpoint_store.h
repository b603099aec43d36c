// CheckpointStore: durable training checkpoints of running jobs, one directory per job:
// <data_dir>/checkpoints/<job id>/<step, 20 digits>.ckpt. Every file is written to a temporary
// name, fsynced and renamed, so a crash leaves whole checkpoints only; the newest `keep` of a job
// are kept. Each carries a checksum: a torn or corrupt file reads as DATA_LOSS.
//
// Thread-safety: all methods may be called concurrently for different jobs; one job's
// checkpoints are written by its training thread only.
#ifndef LOGP_SERVER_CORE_CHECKPOINT_STORE_H_
#define LOGP_SERVER_CORE_CHECKPOINT_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/file_system.h"

namespace logp {

class CheckpointStore {
 public:
  // Creates <data_dir>/checkpoints if missing. `keep` >= 1. `fs` must outlive the store.
  static absl::StatusOr<std::unique_ptr<CheckpointStore>> Open(const std::string& data_dir,
                                                               int keep, FileSystem* fs);

  // Writes the checkpoint of `job_id` after `step` durably. It counts once the job's catalogue
  // row names it (Job.checkpoint_step, a fenced write: see JobManager); then Prune.
  absl::Status Write(const std::string& job_id, int64_t step, absl::string_view bytes);
  // Keeps the newest `keep` checkpoints at or before `registered` (the step the catalogue names)
  // and removes the older ones.
  void Prune(const std::string& job_id, int64_t registered);
  // Steps of the job's whole checkpoints, newest first (empty if none).
  std::vector<int64_t> Steps(const std::string& job_id) const;
  // DATA_LOSS naming job and step when unreadable, torn or corrupt.
  absl::StatusOr<std::string> Read(const std::string& job_id, int64_t step) const;
  // Removes one checkpoint (e.g. one that cannot be read back).
  void Remove(const std::string& job_id, int64_t step);
  // Removes all of a job's checkpoints (the job has ended).
  void RemoveAll(const std::string& job_id);
  // Removes the checkpoints of every job `keep` refuses and, with `temporaries`, leftover
  // temporary files (startup; not while other processes may be writing: replicas).
  void RemoveAllExcept(const std::function<bool(const std::string& job_id)>& keep,
                       bool temporaries);

 private:
  CheckpointStore(std::string dir, int keep, FileSystem* fs)
      : dir_(std::move(dir)), keep_(keep), fs_(fs) {}
  std::string JobDir(const std::string& job_id) const { return dir_ + "/" + job_id; }
  std::string PathOf(const std::string& job_id, int64_t step) const;

  const std::string dir_;
  const int keep_;
  FileSystem* const fs_;
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_CHECKPOINT_STORE_H_
