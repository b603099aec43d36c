#include "server/core/memory_catalog.h"

#include <algorithm>
#include <climits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/cc/status_macros.h"

namespace logp {
namespace {

// As in the SQLite catalogue.
constexpr int kDefaultPage = 50;
constexpr int kMaxPage = 1000;

}  // namespace

absl::StatusOr<MemoryCatalog::PageStart> MemoryCatalog::ParsePage(int page_size,
                                                                  const std::string& token) {
  if (page_size < 0 || page_size > kMaxPage) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size must be in [0, ", kMaxPage, "], got ", page_size));
  }
  PageStart start;
  start.size = page_size == 0 ? kDefaultPage : page_size;
  start.before_seq = INT64_MAX;
  if (!token.empty() && (!absl::SimpleAtoi(token, &start.before_seq) || start.before_seq < 0)) {
    return absl::InvalidArgumentError(absl::StrCat("page_token '", token, "' is not valid"));
  }
  return start;
}

template <typename T>
absl::Status MemoryCatalog::InsertLocked(Table<T>* table, const T& row, const std::string& what) {
  if (table->by_id.count(row.id()) > 0) {
    return absl::AlreadyExistsError(absl::StrCat(what, " ", row.id()));
  }
  const int64_t seq = ++table->last_seq;
  table->rows.emplace(seq, row);
  table->by_id.emplace(row.id(), seq);
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<T> MemoryCatalog::GetLocked(const Table<T>& table, const std::string& id,
                                           const char* what) {
  auto it = table.by_id.find(id);
  if (it == table.by_id.end()) {
    return UnknownIdError(what, id);
  }
  return table.rows.at(it->second);
}

// Newest first from the row before `start.before_seq`; the token is the seq of the last row
// returned, and is set only when an older row remains.
template <typename T>
Page<T> MemoryCatalog::ListLocked(const Table<T>& table, const std::string& tenant,
                                  const PageStart& start) {
  Page<T> page;
  auto it = std::make_reverse_iterator(table.rows.lower_bound(start.before_seq));
  int64_t last = 0;
  for (; it != table.rows.rend(); ++it) {
    if (static_cast<int>(page.items.size()) == start.size) {
      page.next_page_token = absl::StrCat(last);
      break;
    }
    if (!tenant.empty() && OwnerOf(it->second.tenant()) != tenant) continue;
    last = it->first;
    page.items.push_back(it->second);
  }
  return page;
}

absl::Status MemoryCatalog::InsertDataset(const v1::Dataset& d) {
  absl::MutexLock lock(&mu_);
  return InsertLocked(&datasets_, d, "id");
}

absl::StatusOr<v1::Dataset> MemoryCatalog::GetDataset(const std::string& id) {
  absl::MutexLock lock(&mu_);
  return GetLocked(datasets_, id, "dataset");
}

absl::StatusOr<Page<v1::Dataset>> MemoryCatalog::ListDatasets(const std::string& tenant, int n,
                                                              const std::string& token) {
  ASSIGN_OR_RETURN(const PageStart start, ParsePage(n, token));
  absl::MutexLock lock(&mu_);
  return ListLocked(datasets_, tenant, start);
}

absl::Status MemoryCatalog::DeleteDataset(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = datasets_.by_id.find(id);
  if (it == datasets_.by_id.end()) return absl::NotFoundError(absl::StrCat("dataset ", id));
  datasets_.rows.erase(it->second);
  datasets_.by_id.erase(it);
  for (auto r = requests_.begin(); r != requests_.end();) {
    if (r->second.kind == "dataset" && r->second.resource_id == id) {
      r = requests_.erase(r);
    } else {
      ++r;
    }
  }
  return absl::OkStatus();
}

absl::Status MemoryCatalog::InsertJobWithEvents(const v1::Job& j,
                                                const std::vector<v1::JobEvent>& events,
                                                const CreateRequest* r) {
  absl::MutexLock lock(&mu_);
  // Every check before any write: all or nothing. The row's check comes first, as in SQLite.
  if (jobs_.by_id.count(j.id()) > 0) return absl::AlreadyExistsError(absl::StrCat("job ", j.id()));
  if (r != nullptr) RETURN_IF_ERROR(CheckRequestFreeLocked(*r));
  RETURN_IF_ERROR(InsertLocked(&jobs_, j, "job"));
  if (r != nullptr) requests_.emplace(KeyOf(*r), *r);
  for (const auto& e : events) events_[j.id()][e.seq()] = e;
  return absl::OkStatus();
}

absl::Status MemoryCatalog::UpdateJobLocked(const v1::Job& j) {
  auto it = jobs_.by_id.find(j.id());
  if (it == jobs_.by_id.end()) return absl::NotFoundError(absl::StrCat("job ", j.id()));
  jobs_.rows.at(it->second) = j;
  return absl::OkStatus();
}

absl::Status MemoryCatalog::UpdateJob(const v1::Job& j) {
  absl::MutexLock lock(&mu_);
  return UpdateJobLocked(j);
}

absl::StatusOr<v1::Job> MemoryCatalog::GetJob(const std::string& id) {
  absl::MutexLock lock(&mu_);
  return GetLocked(jobs_, id, "job");
}

absl::StatusOr<Page<v1::Job>> MemoryCatalog::ListJobs(const std::string& tenant, int n,
                                                      const std::string& token) {
  ASSIGN_OR_RETURN(const PageStart start, ParsePage(n, token));
  absl::MutexLock lock(&mu_);
  return ListLocked(jobs_, tenant, start);
}

absl::StatusOr<std::vector<v1::Job>> MemoryCatalog::JobsInStates(
    const std::vector<v1::JobState>& states) {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Job> out;
  for (const auto& [seq, job] : jobs_.rows) {  // oldest first
    if (std::find(states.begin(), states.end(), job.state()) != states.end()) out.push_back(job);
  }
  return out;
}

absl::Status MemoryCatalog::WriteJob(const JobWrite& w) {
  absl::MutexLock lock(&mu_);
  // Every check first: when one fails nothing is written, as when the SQLite transaction rolls
  // back.
  if (jobs_.by_id.count(w.job.id()) == 0)
    return absl::NotFoundError(absl::StrCat("job ", w.job.id()));
  if (w.lease_token != 0) RETURN_IF_ERROR(leases_.Check(w.job.id(), w.lease_token));
  if (w.model) RETURN_IF_ERROR(InsertLocked(&models_, *w.model, "id"));
  RETURN_IF_ERROR(UpdateJobLocked(w.job));
  std::map<int64_t, v1::JobEvent>& stored = events_[w.job.id()];
  for (const auto& e : w.events) stored[e.seq()] = e;  // a seq written again replaces the event
  if (w.release_lease) leases_.Release(w.job.id(), w.lease_token);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::JobEvent>> MemoryCatalog::ListEvents(const std::string& job_id,
                                                                    int64_t from_seq) {
  absl::MutexLock lock(&mu_);
  std::vector<v1::JobEvent> out;
  auto it = events_.find(job_id);
  if (it == events_.end()) return out;
  for (auto e = it->second.lower_bound(from_seq); e != it->second.end(); ++e) {
    out.push_back(e->second);
  }
  return out;
}

absl::StatusOr<CreateRequest> MemoryCatalog::GetCreateRequest(const std::string& kind,
                                                              const std::string& tenant,
                                                              const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  auto it = requests_.find({kind, OwnerOf(tenant), request_id});
  if (it == requests_.end()) return absl::NotFoundError(absl::StrCat("no ", kind, " request"));
  return it->second;
}

absl::Status MemoryCatalog::CheckRequestFreeLocked(const CreateRequest& r) {
  if (requests_.count(KeyOf(r)) > 0) {
    return absl::AlreadyExistsError("request_id already used");
  }
  return absl::OkStatus();
}

absl::Status MemoryCatalog::InsertDatasetForRequest(const v1::Dataset& d, const CreateRequest& r) {
  absl::MutexLock lock(&mu_);
  // Both checks before either write: all or nothing. The row's check comes first, as in SQLite.
  if (datasets_.by_id.count(d.id()) > 0)
    return absl::AlreadyExistsError(absl::StrCat("id ", d.id()));
  RETURN_IF_ERROR(CheckRequestFreeLocked(r));
  RETURN_IF_ERROR(InsertLocked(&datasets_, d, "id"));
  requests_.emplace(KeyOf(r), r);
  return absl::OkStatus();
}

absl::Status MemoryCatalog::InsertModel(const v1::Model& m) {
  absl::MutexLock lock(&mu_);
  return InsertLocked(&models_, m, "id");
}

absl::StatusOr<v1::Model> MemoryCatalog::GetModel(const std::string& id) {
  absl::MutexLock lock(&mu_);
  return GetLocked(models_, id, "model");
}

absl::StatusOr<Page<v1::Model>> MemoryCatalog::ListModels(const std::string& tenant, int n,
                                                          const std::string& token) {
  ASSIGN_OR_RETURN(const PageStart start, ParsePage(n, token));
  absl::MutexLock lock(&mu_);
  return ListLocked(models_, tenant, start);
}

absl::StatusOr<TenantStorage> MemoryCatalog::StoredBy(const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  TenantStorage out;
  for (const auto& [seq, d] : datasets_.rows) {
    if (OwnerOf(d.tenant()) != OwnerOf(tenant)) continue;
    ++out.datasets;
    out.dataset_bytes += static_cast<int64_t>(d.stored_bytes());
  }
  for (const auto& [seq, m] : models_.rows) {
    if (OwnerOf(m.tenant()) != OwnerOf(tenant)) continue;
    ++out.models;
    out.model_bytes += static_cast<int64_t>(m.stored_bytes());
  }
  return out;
}

absl::StatusOr<JobQueue> MemoryCatalog::ReadQueue() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  JobQueue q;
  std::vector<v1::Job> queued;
  for (const auto& [seq, job] : jobs_.rows) {  // oldest first
    const bool pending =
        job.state() == v1::JOB_STATE_QUEUED || job.state() == v1::JOB_STATE_RUNNING;
    if (!pending) continue;
    const std::string tenant = OwnerOf(job.tenant());
    if (job.state() == v1::JOB_STATE_QUEUED) ++q.queued_by_tenant[tenant];
    if (leases_.Held(job.id(), now)) {
      ++q.leased_by_tenant[tenant];
    } else if (job.state() == v1::JOB_STATE_RUNNING) {
      q.claimable.push_back(job);
    } else {
      queued.push_back(job);
    }
  }
  q.claimable.insert(q.claimable.end(), queued.begin(), queued.end());
  return q;
}

absl::StatusOr<std::optional<JobClaim>> MemoryCatalog::ClaimJob(const std::string& job_id,
                                                                const std::string& owner,
                                                                absl::Duration duration) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  auto it = jobs_.by_id.find(job_id);
  if (it == jobs_.by_id.end()) return std::nullopt;
  const v1::Job& job = jobs_.rows.at(it->second);
  if (job.state() != v1::JOB_STATE_QUEUED && job.state() != v1::JOB_STATE_RUNNING) {
    return std::nullopt;
  }
  if (leases_.Held(job_id, now)) return std::nullopt;
  JobClaim claim = leases_.Claim(job_id, owner, now, duration);
  claim.job = job;
  return claim;
}

absl::StatusOr<bool> MemoryCatalog::RenewLease(const JobLease& lease, absl::Duration duration) {
  absl::MutexLock lock(&mu_);
  return leases_.Renew(lease, absl::Now(), duration);
}

absl::Status MemoryCatalog::ReleaseLeasesOf(const std::string& owner) {
  absl::MutexLock lock(&mu_);
  leases_.ReleaseOf(owner);
  return absl::OkStatus();
}

absl::Status MemoryCatalog::RequestCancel(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  if (jobs_.by_id.count(job_id) == 0) return UnknownIdError("job", job_id);
  leases_.RequestCancel(job_id);
  return absl::OkStatus();
}

}  // namespace logp
