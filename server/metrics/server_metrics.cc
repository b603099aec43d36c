#include "server/metrics/server_metrics.h"

#include <glog/logging.h>
#include <prometheus/text_serializer.h>

#include <map>
#include <utility>

#include "server/core/scope.h"
#include "server/metrics/process_metrics.h"

namespace logp {
namespace {

// Page size of the catalogue listings a scrape reads.
constexpr int kScrapePage = 1000;

prometheus::MetricFamily GaugeFamily(const char* name, const char* help) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = prometheus::MetricType::Gauge;
  return f;
}

void AddGauge(prometheus::MetricFamily* family, std::vector<prometheus::ClientMetric::Label> labels,
              double value) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  family->metric.push_back(std::move(m));
}

// Every page of a listing, `visit`ed item by item.
template <typename T, typename ListFn, typename VisitFn>
absl::Status VisitAll(const ListFn& list, const VisitFn& visit) {
  std::string token;
  do {
    absl::StatusOr<Page<T>> page = list(kScrapePage, token);
    if (!page.ok()) return page.status();
    for (const T& item : page->items) visit(item);
    token = page->next_page_token;
  } while (!token.empty());
  return absl::OkStatus();
}

}  // namespace

ServerMetrics::ServerMetrics(Core* core)
    : core_(core),
      registry_(std::make_shared<prometheus::Registry>()),
      rpc_(registry_.get()),
      checkpoint_write_seconds_(
          prometheus::BuildHistogram()
              .Name("logp_checkpoint_write_duration_seconds")
              .Help("Time to write one checkpoint file (temporary file, fsync, rename)")
              .Register(*registry_)
              .Add({},
                   prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                           0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60})),
      checkpoint_write_failures_(prometheus::BuildCounter()
                                     .Name("logp_checkpoint_write_failures_total")
                                     .Help("Checkpoint files that could not be written")
                                     .Register(*registry_)
                                     .Add({})) {
  core_->jobs().SetCheckpointListener([this](absl::Duration write_time, bool ok) {
    checkpoint_write_seconds_.Observe(absl::ToDoubleSeconds(write_time));
    if (!ok) checkpoint_write_failures_.Increment();
  });
}

ServerMetrics::~ServerMetrics() { core_->jobs().SetCheckpointListener(nullptr); }

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
ServerMetrics::InterceptorFactory() {
  return rpc_.InterceptorFactory();
}

std::string ServerMetrics::Scrape() {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (auto collect : {&ServerMetrics::CollectCatalog, &ServerMetrics::CollectRunningJobs,
                       &ServerMetrics::CollectModelCache}) {
    for (auto& f : (this->*collect)()) families.push_back(std::move(f));
  }
  for (auto& f : CollectProcessMetrics()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

std::vector<prometheus::MetricFamily> ServerMetrics::CollectCatalog() {
  std::vector<prometheus::MetricFamily> out;
  Catalog& catalog = core_->catalog();

  absl::StatusOr<JobQueue> queue = catalog.ReadQueue();
  if (queue.ok()) {
    prometheus::MetricFamily depth =
        GaugeFamily("logp_job_queue_depth", "Jobs waiting in the queue (QUEUED), every replica's");
    AddGauge(&depth, {}, static_cast<double>(queue->queued()));
    out.push_back(std::move(depth));
  } else {
    LOG(WARNING) << "metrics: cannot read the job queue: " << queue.status();
  }

  std::map<std::pair<std::string, std::string>, int64_t> jobs;  // (state, tenant) -> count
  absl::Status listed = VisitAll<v1::Job>(
      [&](int n, const std::string& token) { return catalog.ListJobs("", n, token); },
      [&](const v1::Job& job) {
        std::string state = v1::JobState_Name(job.state());
        if (state.rfind("JOB_STATE_", 0) == 0) state = state.substr(10);
        ++jobs[{state, OwnerOf(job.tenant())}];
      });
  if (listed.ok()) {
    prometheus::MetricFamily f =
        GaugeFamily("logp_jobs", "Jobs in the catalogue by state and tenant");
    for (const auto& [key, n] : jobs) {
      AddGauge(&f, {{"state", key.first}, {"tenant", key.second}}, static_cast<double>(n));
    }
    out.push_back(std::move(f));
  } else {
    LOG(WARNING) << "metrics: cannot list jobs: " << listed;
  }

  std::map<std::pair<std::string, std::string>, double> stored;  // (tenant, kind) -> bytes
  absl::Status datasets = VisitAll<v1::Dataset>(
      [&](int n, const std::string& token) { return catalog.ListDatasets("", n, token); },
      [&](const v1::Dataset& d) {
        stored[{OwnerOf(d.tenant()), "dataset"}] += static_cast<double>(d.stored_bytes());
      });
  absl::Status models = VisitAll<v1::Model>(
      [&](int n, const std::string& token) { return catalog.ListModels("", n, token); },
      [&](const v1::Model& m) {
        stored[{OwnerOf(m.tenant()), "model"}] += static_cast<double>(m.stored_bytes());
      });
  if (datasets.ok() && models.ok()) {
    prometheus::MetricFamily f = GaugeFamily(
        "logp_stored_bytes", "Stored bytes of each tenant's datasets and models (kind)");
    for (const auto& [key, bytes] : stored) {
      AddGauge(&f, {{"kind", key.second}, {"tenant", key.first}}, bytes);
    }
    out.push_back(std::move(f));
  } else {
    LOG(WARNING) << "metrics: cannot list datasets and models: "
                 << (datasets.ok() ? models : datasets);
  }
  return out;
}

std::vector<prometheus::MetricFamily> ServerMetrics::CollectRunningJobs() {
  prometheus::MetricFamily step =
      GaugeFamily("logp_job_step", "Optimiser steps done by each job training here");
  prometheus::MetricFamily rate = GaugeFamily(
      "logp_job_samples_per_second",
      "Training records per second of each job training here, over its newest progress interval");
  prometheus::MetricFamily train = GaugeFamily(
      "logp_job_train_nll",
      "Mean training NLL (nats per record) of each job training here, newest progress interval");
  prometheus::MetricFamily validation =
      GaugeFamily("logp_job_validation_nll",
                  "Validation NLL (nats per record) of each job training here, newest epoch");
  for (const RunningJobProgress& job : core_->jobs().RunningJobs()) {
    const std::vector<prometheus::ClientMetric::Label> labels = {
        {"family", v1::ModelFamily_Name(job.family)}, {"job", job.job_id}, {"tenant", job.tenant}};
    AddGauge(&step, labels, static_cast<double>(job.step));
    if (job.progress) {
      AddGauge(&rate, labels, job.progress->samples_per_second());
      AddGauge(&train, labels, job.progress->train_nll());
    }
    if (job.epoch) AddGauge(&validation, labels, job.epoch->validation_nll());
  }
  return {std::move(step), std::move(rate), std::move(train), std::move(validation)};
}

std::vector<prometheus::MetricFamily> ServerMetrics::CollectModelCache() {
  prometheus::MetricFamily f =
      GaugeFamily("logp_models_loaded", "Published models loaded in the scoring cache");
  AddGauge(&f, {}, static_cast<double>(core_->models().LoadedCount()));
  return {std::move(f)};
}

}  // namespace logp
