// What the core's unit tests share: a temporary directory, a status assertion, datasets written
// in the test, and polling a job until it gets somewhere. Header-only; no network, no torch.
#ifndef LOGP_TESTS_SERVER_TEST_UTIL_H_
#define LOGP_TESTS_SERVER_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/message_differencer.h"
#include "logp/v1/dataset_service.pb.h"
#include "logp/v1/job_service.pb.h"
#include "server/core/dataset_store.h"
#include "server/core/job_manager.h"
#include "tests/temp_dir.h"

namespace logp {

// `status` has `code` and its message contains `needle`.
inline ::testing::AssertionResult Is(const absl::Status& status, absl::StatusCode code,
                                     const std::string& needle = "") {
  if (status.code() != code) {
    return ::testing::AssertionFailure()
           << "expected " << absl::StatusCodeToString(code) << ", got " << status;
  }
  if (!absl::StrContains(status.message(), needle)) {
    return ::testing::AssertionFailure() << status << " does not mention \"" << needle << "\"";
  }
  return ::testing::AssertionSuccess();
}

// The value of `result`; when it is an error, a test failure and T(), so that the test goes on
// (dereferencing an error would abort the whole binary).
template <typename T>
T ValueOf(absl::StatusOr<T> result) {
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *std::move(result) : T();
}

// `got` equals `want`, field by field.
inline ::testing::AssertionResult SameProto(const google::protobuf::Message& got,
                                            const google::protobuf::Message& want) {
  if (google::protobuf::util::MessageDifferencer::Equals(got, want)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "got {" << got.ShortDebugString() << "}, want {" << want.ShortDebugString() << "}";
}

// The upload of `values`, records of `dim` values (uint8-encoded): a header, then one chunk per 100
// records. num_categories is for categorical data only.
inline std::vector<v1::CreateDatasetRequest> UploadOf(v1::DataKind kind, int dim,
                                                      const std::vector<uint8_t>& values,
                                                      int num_categories = 0) {
  const int64_t n = static_cast<int64_t>(values.size()) / dim;
  std::vector<v1::CreateDatasetRequest> reqs(1);
  auto* h = reqs[0].mutable_header();
  h->set_name("data");
  h->set_kind(kind);
  h->set_dim(dim);
  h->set_num_records(n);
  h->set_num_categories(num_categories);
  for (int64_t done = 0; done < n; done += 100) {
    const int64_t k = std::min<int64_t>(100, n - done);
    v1::CreateDatasetRequest r;
    auto* c = r.mutable_chunk();
    c->set_encoding(v1::ENCODING_UINT8);
    c->set_num_records(k);
    c->set_dim(dim);
    c->set_data(std::string(values.begin() + done * dim, values.begin() + (done + k) * dim));
    reqs.push_back(std::move(r));
  }
  return reqs;
}

// Six binary records of dimension 3, for tests that need a dataset and a model, not their values.
inline constexpr int kTinyDim = 3;
inline const std::vector<uint8_t>& TinyRecords() {
  static const std::vector<uint8_t> records = {1, 0, 1, 0, 0, 1, 1, 1, 0,
                                               0, 1, 1, 1, 0, 0, 0, 1, 0};
  return records;
}
// TinyRecords() as the block of a Score request.
inline v1::RecordBlock TinyBlock() {
  v1::RecordBlock b;
  b.set_encoding(v1::ENCODING_UINT8);
  b.set_num_records(TinyRecords().size() / kTinyDim);
  b.set_dim(kTinyDim);
  b.set_data(std::string(TinyRecords().begin(), TinyRecords().end()));
  return b;
}
// A job that trains in milliseconds: independent Bernoulli, one epoch, validated on its own
// dataset.
inline v1::JobSpec TinyBernoulliSpec(const std::string& dataset_id) {
  v1::JobSpec spec;
  spec.set_dataset_id(dataset_id);
  spec.set_validation_dataset_id(dataset_id);
  spec.mutable_model()->set_family(v1::MODEL_FAMILY_BERNOULLI);
  spec.set_epochs(1);
  return spec;
}

// n random binary records of `dim` values, each 1 with probability 1/3.
inline std::vector<v1::CreateDatasetRequest> RandomBinaryUpload(int64_t n, uint32_t seed,
                                                                int dim = 16) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> values(n * dim);
  for (auto& v : values) v = static_cast<uint8_t>(rng() % 3 == 0);
  return UploadOf(v1::DATA_KIND_BINARY, dim, values);
}

// Streams `reqs` into the store as one upload.
inline absl::StatusOr<v1::Dataset> StoreUpload(DatasetStore& store,
                                               const std::vector<v1::CreateDatasetRequest>& reqs) {
  size_t i = 0;
  return store.CreateFromStream(kDefaultTenant, [&](v1::CreateDatasetRequest* r) {
    if (i == reqs.size()) return false;
    *r = reqs[i++];
    return true;
  });
}

inline bool IsFinalState(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
}

// Polls the job until `done(job)` or it has ended; the last job read. Past 60 s, a test failure.
inline v1::Job WaitForJob(JobManager& jobs, const std::string& id,
                          const std::function<bool(const v1::Job&)>& done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  v1::Job job;
  while (absl::Now() < deadline) {
    absl::StatusOr<v1::Job> read = jobs.GetJob(id);
    if (!read.ok()) {
      ADD_FAILURE() << "job " << id << ": " << read.status();
      return job;
    }
    job = *std::move(read);
    if (done(job) || IsFinalState(job.state())) return job;
    absl::SleepFor(absl::Milliseconds(5));
  }
  ADD_FAILURE() << "job " << id << " timed out";
  return job;
}

inline v1::Job WaitForEnd(JobManager& jobs, const std::string& id) {
  return WaitForJob(jobs, id, [](const v1::Job&) { return false; });
}

// Every event of the job so far, oldest first.
inline std::vector<v1::JobEvent> AllEvents(JobManager& jobs, const std::string& id) {
  absl::StatusOr<EventBatch> batch = jobs.ReadEvents(id, 1, 1 << 20);
  if (!batch.ok()) {
    ADD_FAILURE() << "job " << id << ": " << batch.status();
    return {};
  }
  return batch->events;
}

}  // namespace logp

#endif  // LOGP_TESTS_SERVER_TEST_UTIL_H_
