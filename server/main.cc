// logpd: the logp server. Serves until SIGINT or SIGTERM, then shuts down gracefully: stops
// accepting calls, checkpoints running jobs at their next step boundary (they resume from there
// on the next launch), ends watch streams and stops Score, Evaluate and Sample (UNAVAILABLE),
// finishes the other calls in flight within --shutdown_grace_seconds, closes the connections
// without waiting for clients to hang up, and exits 0.
#include <glog/logging.h>
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "models/blas_core.h"
#include "models/compute_threads.h"
#include "models/malloc_tuning.h"
#include "models/memory_estimate.h"
#include "server/auth/credentials.h"
#include "server/auth/quotas.h"
#include "server/core/core.h"
#include "server/core/job_memory.h"
#include "server/core/open_catalog.h"
#include "server/grpc/server.h"
#include "server/http/dashboard_assets.h"
#include "server/http/http_server.h"
#include "server/metrics/server_metrics.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "Address to serve on (host:port; port 0 = any)");
ABSL_FLAG(std::string, data_dir, "./logp-data",
          "Data directory: SQLite catalogue, datasets, models (created if missing)");
ABSL_FLAG(std::string, catalog, "",
          "Catalogue: empty for SQLite in --data_dir (catalog.db); postgresql://USER@HOST:PORT/DB "
          "(a libpq URI; ?host=/socket/dir for a Unix socket) for PostgreSQL. Datasets, models "
          "and checkpoints stay in --data_dir either way");
ABSL_FLAG(std::string, replica_id, "",
          "This replica's name in job leases and events (default: host name and pid). Give each "
          "replica a stable, unique one (a pod name) and a restarted replica takes its jobs back "
          "at once instead of after their leases expire");
ABSL_FLAG(double, job_lease_seconds, 30,
          "A training job's lease: renewed while it trains; a replica silent this long loses its "
          "jobs to the others");
ABSL_FLAG(int, training_slots, 1, "Jobs that train at the same time");
ABSL_FLAG(int, max_queued_jobs, 64, "Queued jobs beyond which CreateJob is RESOURCE_EXHAUSTED");
ABSL_FLAG(int, compute_threads, 0, "LibTorch intra-op threads (0: one per core)");
ABSL_FLAG(int, max_message_bytes, 64 << 20, "Largest gRPC message accepted or sent");
ABSL_FLAG(int64_t, max_score_records, 100000, "Records one Score request may carry");
ABSL_FLAG(int64_t, max_samples, 100000, "Samples one Sample request may ask for");
ABSL_FLAG(double, max_request_seconds, 0,
          "Longest a Score, Evaluate or Sample call may run whatever the client's deadline "
          "(DEADLINE_EXCEEDED past it); 0: no cap");
ABSL_FLAG(int64_t, score_batch_max_records, 256,
          "Dynamic batching: concurrent Score calls on one model share a forward pass of at most "
          "this many records (a request this large or larger is scored alone; < 2: off)");
ABSL_FLAG(int64_t, score_batch_max_delay_us, 0,
          "Dynamic batching: longest the first call of a batch waits for others, in "
          "microseconds (0: off, the default: on 2 vCPUs it cost throughput, see the README; "
          "e.g. 1000 turns it on). A batch starts at once when its model is not busy");
ABSL_FLAG(bool, score_batch_start_when_idle, true,
          "Dynamic batching: start a batch as soon as no other batch of its model is being "
          "computed (false: always wait --score_batch_max_delay_us or until full)");
ABSL_FLAG(int, grpc_min_pollers, 0,
          "gRPC sync server: least threads polling for calls (0: gRPC's default, 1)");
ABSL_FLAG(int, grpc_max_pollers, 0,
          "gRPC sync server: most threads polling for calls; a thread that ends a call while "
          "this many poll exits (0: gRPC's default, 2)");
ABSL_FLAG(int64_t, max_dataset_bytes, int64_t{4} << 30, "Largest dataset (stored bytes)");
ABSL_FLAG(double, progress_interval_seconds, 1.0, "Seconds between a job's progress events");
ABSL_FLAG(int64_t, checkpoint_interval_steps, 0,
          "A running job writes a checkpoint after this many steps (0: not by steps)");
ABSL_FLAG(double, checkpoint_interval_seconds, 60,
          "... or this many seconds after its last checkpoint (0: not by time)");
ABSL_FLAG(int, checkpoints_kept, 2, "Newest checkpoints kept per running job");
ABSL_FLAG(int, threads_per_slot, 0,
          "LibTorch intra-op threads of each training slot (0: --compute_threads)");
ABSL_FLAG(bool, block_products, true,
          "MADE training on binary data skips the matrix blocks its masks zero out (false: dense "
          "products, for benchmarks)");
ABSL_FLAG(int, max_job_crashes, 3,
          "A job running when the server died this many times in a row (no newer checkpoint "
          "in between) is failed at the next start instead of resumed; 0: always resume");
ABSL_FLAG(int64_t, max_job_memory_bytes, -1,
          "CreateJob refuses a job whose estimated peak memory is above this (bytes; 0: no "
          "limit; -1: three quarters of the machine's or cgroup's memory over --training_slots)");
ABSL_FLAG(int, training_nice, 10,
          "Nice value of training threads, so that scoring calls take the CPU first (0: the "
          "server's own)");
ABSL_FLAG(double, shutdown_grace_seconds, 10.0, "Time calls in flight get to finish on shutdown");
ABSL_FLAG(std::string, port_file, "", "If set, the bound port is written to this file");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain of the server; with --tls_key_file, --listen serves TLS only. "
          "Re-read when it changes (checked every second)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file (unencrypted)");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA certificates: with it, every client must present a valid certificate signed "
          "by one of them (mutual TLS). Re-read when it changes");
ABSL_FLAG(std::string, health_listen, "",
          "If set, HOST:PORT of a second, plaintext port that serves only the grpc.health.v1 "
          "health service (for probes that cannot present client certificates)");
ABSL_FLAG(std::string, http_listen, "",
          "If set, HOST:PORT of the HTTP port: REST/JSON calls under /v1, Prometheus metrics at "
          "/metrics and the dashboard at / (README: HTTP). TLS and tokens as on --listen");
ABSL_FLAG(std::string, http_port_file, "", "If set, the bound HTTP port is written to this file");
ABSL_FLAG(int, http_threads, 16,
          "Connections the HTTP port serves at once (each open event stream holds one)");
ABSL_FLAG(bool, reflection, true, "Serve gRPC server reflection on --listen");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "Credentials, one per line: TOKEN TENANT ROLE, sha256:HEX TENANT ROLE or "
          "cert:IDENTITY TENANT ROLE (README: Security). With it every call must authenticate; "
          "without it every call is tenant 'default' with role admin. Re-read when it changes");
ABSL_FLAG(bool, metrics, true,
          "Keep Prometheus metrics (README: Metrics): RPC counts and latencies, jobs, storage, "
          "process; served at /metrics on --http_listen (false: no RPC interceptor, no /metrics)");
ABSL_FLAG(std::string, quotas_file, "",
          "Per-tenant quotas, one line per tenant or '*': TENANT key=value ... with keys "
          "stored_bytes, datasets, queued_jobs, running_jobs, records_scored_per_second (README: "
          "Security). Re-read when it changes");

// How long closing the connections may take once the server has drained (normally a few ms; see
// LogpServer::Close for what can hold it up).
constexpr absl::Duration kCloseWait = absl::Seconds(1);

int main(int argc, char** argv) {
  // Before anything else: may execute logpd again with OPENBLAS_CORETYPE set.
  logp::UseBestBlasCore(argv);
  absl::SetProgramUsageMessage("logpd --data_dir=DIR [--listen=HOST:PORT] [flags]");
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (std::string malloc_note = logp::KeepTrainingBlocksInHeap(); !malloc_note.empty()) {
    LOG(INFO) << malloc_note;
  }
  if (std::string core = logp::BlasCoreName(); !core.empty()) {
    const char* set = std::getenv("OPENBLAS_CORETYPE");
    LOG(INFO) << "OpenBLAS kernels: " << core
              << (std::getenv("LOGP_BLAS_REEXEC") != nullptr
                      ? absl::StrCat(" (OPENBLAS_CORETYPE=", set == nullptr ? "" : set,
                                     " set by logpd: OpenBLAS had chosen older kernels than this "
                                     "CPU runs; LOGP_BLAS_CORE=keep keeps them)")
                      : "");
  }

  // Block the stop signals in every thread; one thread waits for them with sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  logp::SetComputeThreads(absl::GetFlag(FLAGS_compute_threads));
  logp::CoreOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.jobs.training_slots = absl::GetFlag(FLAGS_training_slots);
  options.jobs.replica_id = absl::GetFlag(FLAGS_replica_id);
  options.jobs.lease_seconds = absl::GetFlag(FLAGS_job_lease_seconds);
  options.jobs.max_queued = absl::GetFlag(FLAGS_max_queued_jobs);
  options.jobs.progress_interval_seconds = absl::GetFlag(FLAGS_progress_interval_seconds);
  options.jobs.checkpoint_interval_steps = absl::GetFlag(FLAGS_checkpoint_interval_steps);
  options.jobs.checkpoint_interval_seconds = absl::GetFlag(FLAGS_checkpoint_interval_seconds);
  options.jobs.checkpoints_kept = absl::GetFlag(FLAGS_checkpoints_kept);
  options.jobs.threads_per_slot = absl::GetFlag(FLAGS_threads_per_slot);
  options.jobs.block_products = absl::GetFlag(FLAGS_block_products);
  options.jobs.training_nice = absl::GetFlag(FLAGS_training_nice);
  options.jobs.max_job_crashes = absl::GetFlag(FLAGS_max_job_crashes);
  options.jobs.max_job_memory_bytes = absl::GetFlag(FLAGS_max_job_memory_bytes);
  if (options.jobs.max_job_memory_bytes < 0) {
    options.jobs.max_job_memory_bytes = logp::DefaultMaxJobMemoryBytes(options.jobs.training_slots);
  }
  LOG(INFO) << "jobs estimated above "
            << (options.jobs.max_job_memory_bytes > 0
                    ? logp::HumanBytes(options.jobs.max_job_memory_bytes)
                    : std::string("no limit"))
            << " of memory are refused (--max_job_memory_bytes)";
  options.scoring.max_score_records = absl::GetFlag(FLAGS_max_score_records);
  options.scoring.max_samples = absl::GetFlag(FLAGS_max_samples);
  options.scoring.max_request_seconds = absl::GetFlag(FLAGS_max_request_seconds);
  options.scoring.batching.max_records = absl::GetFlag(FLAGS_score_batch_max_records);
  options.scoring.batching.max_delay =
      absl::Microseconds(absl::GetFlag(FLAGS_score_batch_max_delay_us));
  options.scoring.batching.start_when_idle = absl::GetFlag(FLAGS_score_batch_start_when_idle);
  options.max_dataset_bytes = absl::GetFlag(FLAGS_max_dataset_bytes);
  logp::TlsOptions tls;
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  if (tls.enabled()) {  // before the data directory is opened (LogpServer::Start checks again)
    if (auto checked = logp::ReadTlsMaterial(tls); !checked.ok()) {
      LOG(ERROR) << checked.status();
      return 1;
    }
  }
  std::unique_ptr<logp::AuthTokensFile> tokens;
  if (const std::string path = absl::GetFlag(FLAGS_auth_tokens_file); !path.empty()) {
    auto opened = logp::AuthTokensFile::Open(path);
    if (!opened.ok()) {
      LOG(ERROR) << "--auth_tokens_file: " << opened.status();
      return 1;
    }
    tokens = std::move(*opened);
    LOG(INFO) << "authentication on: " << tokens->Current()->token_count() << " tokens and "
              << tokens->Current()->certificate_count() << " certificate identities in " << path;
  }
  std::unique_ptr<logp::QuotasFile> quotas;
  if (const std::string path = absl::GetFlag(FLAGS_quotas_file); !path.empty()) {
    auto opened = logp::QuotasFile::Open(path);
    if (!opened.ok()) {
      LOG(ERROR) << "--quotas_file: " << opened.status();
      return 1;
    }
    quotas = std::move(*opened);
    options.quotas = quotas->AsQuotaFn();
  }
  // Declared before the Core, which uses it until it goes.
  std::unique_ptr<logp::Catalog> catalog;
  if (const std::string spec = absl::GetFlag(FLAGS_catalog); !spec.empty()) {
    auto where = logp::DescribeCatalog(spec, options.data_dir);
    if (!where.ok()) {
      LOG(ERROR) << "--catalog: " << where.status();
      return 1;
    }
    auto opened = logp::OpenCatalog(spec, options.data_dir);
    if (!opened.ok()) {
      LOG(ERROR) << "--catalog: " << opened.status();
      return 1;
    }
    catalog = std::move(*opened);
    options.catalog = catalog.get();
    LOG(INFO) << "catalogue: " << *where;
  }
  auto core = logp::Core::Open(options);
  if (!core.ok()) {
    LOG(ERROR) << "cannot open data directory " << options.data_dir << ": " << core.status();
    return 1;
  }
  logp::ServerOptions server_options;
  server_options.listen_address = absl::GetFlag(FLAGS_listen);
  server_options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  server_options.tls = tls;
  server_options.health_listen_address = absl::GetFlag(FLAGS_health_listen);
  server_options.reflection = absl::GetFlag(FLAGS_reflection);
  server_options.sync_min_pollers = absl::GetFlag(FLAGS_grpc_min_pollers);
  server_options.sync_max_pollers = absl::GetFlag(FLAGS_grpc_max_pollers);
  server_options.auth_tokens = tokens.get();
  std::unique_ptr<logp::ServerMetrics> metrics;
  if (absl::GetFlag(FLAGS_metrics)) {
    metrics = std::make_unique<logp::ServerMetrics>(core->get());
    server_options.interceptors.push_back([m = metrics.get()] { return m->InterceptorFactory(); });
  }
  auto server = logp::LogpServer::Start(core->get(), server_options);
  if (!server.ok()) {
    LOG(ERROR) << server.status();
    return 1;
  }
  LOG(INFO) << "logpd serving on port " << (*server)->port()
            << (server_options.tls.mutual()    ? " (mutual TLS)"
                : server_options.tls.enabled() ? " (TLS)"
                                               : " (plaintext)")
            << ", data in " << options.data_dir;
  if ((*server)->health_port() != 0) {
    LOG(INFO) << "health service alone, in plaintext, on port " << (*server)->health_port();
  }
  // Whether clients are authenticated: by tokens (or mapped certificates), or by client
  // certificates alone.
  const bool clients_authenticated = tokens != nullptr || server_options.tls.mutual();
  for (const std::string& line : logp::ExposureWarnings(
           server_options.listen_address, server_options.tls.enabled(), clients_authenticated)) {
    LOG(WARNING) << line;
  }
  std::unique_ptr<logp::HttpServer> http;
  if (const std::string address = absl::GetFlag(FLAGS_http_listen); !address.empty()) {
    logp::HttpOptions http_options;
    http_options.listen_address = address;
    http_options.tls = tls;
    http_options.threads = absl::GetFlag(FLAGS_http_threads);
    http_options.max_body_bytes = static_cast<size_t>(server_options.max_message_bytes) * 2;
    http_options.auth_tokens = tokens.get();
    http_options.static_files = [](std::string_view path) -> std::optional<logp::StaticFile> {
      const logp::DashboardAsset* asset = logp::FindDashboardAsset(path);
      if (asset == nullptr) return std::nullopt;
      return logp::StaticFile{asset->content_type, asset->body};
    };
    if (metrics) http_options.metrics = [m = metrics.get()] { return m->Scrape(); };
    auto started = logp::HttpServer::Start(http_options, (*server)->InProcessChannel());
    if (!started.ok()) {
      LOG(ERROR) << started.status();
      return 1;
    }
    http = std::move(*started);
    LOG(INFO) << "HTTP (REST, /metrics, dashboard) on port " << http->port()
              << (tls.enabled() ? " (TLS)" : " (plaintext)");
    for (const std::string& line :
         logp::ExposureWarnings(address, tls.enabled(), clients_authenticated)) {
      LOG(WARNING) << "HTTP port: " << line;
    }
  }
  for (const auto& [file, port] :
       {std::pair{absl::GetFlag(FLAGS_port_file), (*server)->port()},
        std::pair{absl::GetFlag(FLAGS_http_port_file), http ? http->port() : 0}}) {
    if (file.empty() || port == 0) continue;
    const std::string tmp = file + ".tmp";
    std::ofstream(tmp) << port << "\n";
    std::rename(tmp.c_str(), file.c_str());
  }

  int sig = 0;
  sigwait(&stop_signals, &sig);
  LOG(INFO) << "received signal " << sig << ", shutting down";
  (*server)->Drain(absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds)));
  // Drained: event streams have ended, REST calls in flight had their grace.
  if (http) http->Stop();
  // Everything is saved now. Closing can be held up by a long scoring batch or by a client that
  // stopped reading in the middle of a stream; the process does not wait for them.
  absl::Notification closed;
  std::thread closer([&] {
    (*server)->Close();
    closed.Notify();
  });
  if (!closed.WaitForNotificationWithTimeout(kCloseWait)) {
    LOG(WARNING) << "a call did not end within " << kCloseWait
                 << " of closing the connections (a long scoring batch, or a client that stopped "
                    "reading); logpd stopped without waiting for it";
    std::_Exit(0);
  }
  closer.join();
  http.reset();  // before the gRPC server its channel goes to
  server->reset();
  metrics.reset();  // after the server that used its interceptors, before the core
  core->reset();
  LOG(INFO) << "logpd stopped cleanly";
  return 0;
}
