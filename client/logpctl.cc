// logpctl: command-line client of logpd. Run without arguments for usage.
//
// Exit codes: 0 success; 1 an error (printed as "error: <CODE>: <message>") or a watched job
// that did not succeed; 2 a usage mistake.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/connection_flags.h"
#include "client/data_files.h"
#include "client/logpctl_analysis.h"
#include "client/logpctl_compare.h"
#include "client/logpctl_conditional.h"
#include "client/logpctl_explain.h"
#include "client/logpctl_print.h"
#include "client/message_fields.h"
#include "google/protobuf/util/json_util.h"
#include "proto/cc/status_macros.h"

ABSL_FLAG(std::string, server, "localhost:50051",
          "Address of logpd: HOST:PORT, several IP:PORT separated by commas (calls go round "
          "robin, retried on another server), or a gRPC URI such as dns:///NAME:PORT.");
ABSL_FLAG(bool, json, false, "Print results as JSON (one object per line for lists and events).");

// Reading record files (datasets upload, models score).
ABSL_FLAG(std::string, name, "", "Dataset name (default: the file name).");
ABSL_FLAG(std::string, kind, "",
          "Record kind: binary, categorical or continuous (models score: the model's).");
ABSL_FLAG(double, binarize_threshold, -1,
          "Binary data: values above this become 1 (e.g. 127 for 8-bit images); < 0: values "
          "must already be 0 or 1.");
ABSL_FLAG(int32_t, num_categories, 0, "Categorical data: K (0: max value + 1, or the model's).");
ABSL_FLAG(int64_t, max_records, 0, "Read at most this many records (0: all).");

// jobs create. Zero / empty means "the server's default".
ABSL_FLAG(std::string, dataset, "", "Dataset id (jobs create, models evaluate).");
ABSL_FLAG(std::string, family, "",
          "Model family: bernoulli, categorical, gaussian, gaussian_mixture, fvsbn, nade, made, "
          "maf, realnvp, vae or pixelcnn.");
ABSL_FLAG(std::string, validation_dataset, "", "Validation dataset id.");
ABSL_FLAG(double, validation_fraction, 0, "Fraction of training records held out (0 < f < 1).");
// Hyper-parameters: each sets the field of that name in the chosen family's params message (see
// proto/logp/v1/job_service.proto); unset flags leave the server's defaults.
ABSL_FLAG(std::optional<std::string>, hidden_layers, std::nullopt, "Hidden layers.");
ABSL_FLAG(std::optional<std::string>, hidden_units, std::nullopt, "Units per hidden layer.");
ABSL_FLAG(std::optional<std::string>, order, std::nullopt, "Variable order: natural or random.");
ABSL_FLAG(std::optional<std::string>, order_seed, std::nullopt, "Seed of a random order/masks.");
ABSL_FLAG(std::optional<std::string>, pseudo_count, std::nullopt, "Additive smoothing.");
ABSL_FLAG(std::optional<std::string>, num_masks, std::nullopt, "MADE: masks (order-agnostic).");
ABSL_FLAG(std::optional<std::string>, conditional, std::nullopt, "MADE: gaussian or mixture.");
ABSL_FLAG(std::optional<std::string>, mixture_components, std::nullopt, "MADE mixture size.");
ABSL_FLAG(std::optional<std::string>, direct_connections, std::nullopt, "MADE: true/false.");
ABSL_FLAG(std::optional<std::string>, components, std::nullopt, "Gaussian mixture: K.");
ABSL_FLAG(std::optional<std::string>, covariance, std::nullopt, "Mixture: diagonal or full.");
ABSL_FLAG(std::optional<std::string>, training, std::nullopt, "Mixture: em or gradient.");
ABSL_FLAG(std::optional<std::string>, min_variance, std::nullopt, "Variance floor.");
ABSL_FLAG(std::optional<std::string>, flow_layers, std::nullopt, "MAF: flow layers.");
ABSL_FLAG(std::optional<std::string>, coupling_layers, std::nullopt, "RealNVP: couplings.");
ABSL_FLAG(std::optional<std::string>, batch_norm, std::nullopt, "MAF/RealNVP: true/false.");
ABSL_FLAG(std::optional<std::string>, latent_dim, std::nullopt, "VAE: latent dimension.");
ABSL_FLAG(std::optional<std::string>, channels, std::nullopt, "PixelCNN: residual channels.");
ABSL_FLAG(std::optional<std::string>, residual_blocks, std::nullopt, "PixelCNN: blocks.");
ABSL_FLAG(std::optional<std::string>, height, std::nullopt, "PixelCNN: image height.");
ABSL_FLAG(std::optional<std::string>, width, std::nullopt, "PixelCNN: image width.");
ABSL_FLAG(std::optional<int32_t>, importance_samples, std::nullopt,
          "VAE: k importance samples (jobs create: the model's default; models score/evaluate: "
          "this request's; 0 = the ELBO).");
ABSL_FLAG(std::optional<double>, l1, std::nullopt, "L1 penalty on weights.");
ABSL_FLAG(std::optional<double>, dropout, std::nullopt, "Dropout on hidden units.");
ABSL_FLAG(bool, dequantize, false, "Continuous 8-bit data: uniform dequantisation.");
ABSL_FLAG(std::optional<int32_t>, levels, std::nullopt, "Dequantisation levels (default 256).");
ABSL_FLAG(bool, logit, false, "Continuous 8-bit data: logit transform.");
ABSL_FLAG(std::optional<double>, logit_alpha, std::nullopt, "Logit transform alpha.");
ABSL_FLAG(std::string, model_json, "",
          "A ModelSpec in protobuf JSON, merged over the flags above, e.g. "
          "'{\"maf\":{\"flowLayers\":5}}'.");
ABSL_FLAG(std::optional<double>, lr, std::nullopt,
          "Adam learning rate (unset: server default 1e-3).");
ABSL_FLAG(double, weight_decay, 0, "L2 weight decay.");
ABSL_FLAG(std::optional<int32_t>, batch_size, std::nullopt,
          "Records per step (unset: server default 100).");
ABSL_FLAG(std::optional<int32_t>, epochs, std::nullopt,
          "Passes over the training records (unset: server default 10).");
ABSL_FLAG(int64_t, max_steps, 0, "jobs create: stop after this many steps (0: no limit).");
ABSL_FLAG(double, max_seconds, 0, "jobs create: stop after this many seconds of training.");
ABSL_FLAG(int32_t, early_stopping_patience, 0,
          "jobs create: stop when the validation NLL has not improved for this many epochs.");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt,
          "Seed (models sample: default 1; jobs create: 0 unless given).");
ABSL_FLAG(bool, watch, false, "jobs create: watch the job after creating it.");
ABSL_FLAG(std::string, request_id, "",
          "datasets upload / jobs create: a client-chosen id that makes the call idempotent: "
          "run again with the same id (also after a failure), it returns what the first run "
          "made instead of a duplicate, and the call is retried while the server is "
          "unavailable.");
ABSL_FLAG(int64_t, from_seq, 0, "jobs watch: first event to show (0: from the beginning).");

// models score / sample.
ABSL_FLAG(std::string, output, "",
          "models score: write per-record log p here; models sample: write samples as CSV; "
          "models export: the TorchScript file to write.");
ABSL_FLAG(uint64_t, n, 64, "Number of samples to draw.");
ABSL_FLAG(std::string, png, "", "models sample: write the samples as a PNG grid.");
ABSL_FLAG(int32_t, columns, 8, "models sample: images per row of the PNG grid.");

namespace logp {
namespace {

constexpr char kUsage[] = R"(client of the logp density-model service.

usage: logpctl [--server=HOST:PORT] [--json] [TLS flags] [--token=T] COMMAND ...
TLS flags: --tls_ca_file=CA.pem (or --tls for the system's CAs) [--tls_cert_file=C.pem
           --tls_key_file=K.pem] [--tls_server_name=NAME]; --token defaults to $LOGP_TOKEN

datasets upload FILE --kind=binary|categorical|continuous [--name=N]
                [--binarize_threshold=T] [--num_categories=K] [--max_records=N]
                [--request_id=R]  upload an IDX (.gz), .npy or .csv file
datasets get ID | list | delete ID
jobs create --dataset=ID --family=FAMILY [--validation_dataset=ID |
            --validation_fraction=F] [hyper-parameter flags, e.g. --hidden_layers=L
            --hidden_units=H --order=natural|random --num_masks=M --components=K
            --covariance=full --flow_layers=N --latent_dim=Z --channels=C
            --residual_blocks=R --height=H --width=W --dropout=P --l1=C
            --dequantize --logit] [--model_json=JSON] [--lr=R --weight_decay=W
            --batch_size=B --epochs=E --seed=S --max_steps=N --max_seconds=T
            --early_stopping_patience=P] [--watch] [--request_id=R]
            FAMILY: bernoulli categorical gaussian gaussian_mixture fvsbn nade made
                    maf realnvp vae pixelcnn
jobs get ID | list | cancel ID
jobs watch ID [--from_seq=N]      follow training; exit 0 iff the job succeeded
models get ID | list
models score ID FILE [read flags as for upload] [--output=FILE]
    [--p_values --fdr=Q --alpha=A] [--typicality=A] [--reference_model=ID]
models evaluate ID --dataset=ID [--importance_samples=K --seed=S]
models explain ID --input=FILE [--record=N --top=K] [--output=FILE.png]  least likely dimensions
                                  of one record, log p(x_d | x_<d); PNG heat map for images
models compare A B --dataset=ID [--importance_samples=K --seed=S]  paired test
models sample ID [--n=64 --seed=1] [--png=FILE --columns=8] [--output=FILE.csv]
models marginal|impute ID FILE --observed=0,2,5-9 [--n=N --importance_samples=K] [--output=F]
models export ID --output=FILE.pt the model as TorchScript (torch.jit.load): log_prob, sample
                                  ID: a model, or a job ("job-...") for its newest checkpoint
health [SERVICE]                  exit 0 iff the server (or SERVICE) is SERVING: for container
                                  and Kubernetes probes; needs no token

Run with --help for every flag.
)";

// A usage mistake: exit code 2.
constexpr int kUsageExit = 2;

using Args = std::vector<std::string>;

// Output (client/logpctl_print.h).
using logpctl::Bar;
using logpctl::Bytes;
using logpctl::ClearProgressLine;
using logpctl::DrawProgressLine;
using logpctl::FamilyParams;
using logpctl::FamilyWord;
using logpctl::Nll;
using logpctl::ParseEnum;
using logpctl::Print;
using logpctl::PrintFields;
using logpctl::PrintJson;
using logpctl::PrintListing;
using logpctl::Progress;
using logpctl::ScoreKindName;
using logpctl::ShapeWord;
using logpctl::StateWord;
using logpctl::Time;

struct Context {
  Args args;  // positional words after the command, e.g. {ID, FILE}
  std::function<absl::StatusOr<Client*>()> client;
};

using Command = std::function<absl::StatusOr<int>(Context&)>;

// Prints the usage line of a command and returns the usage exit code.
int UsageOf(const char* line) {
  std::fprintf(stderr, "usage: logpctl %s\n", line);
  return kUsageExit;
}

absl::StatusOr<ReadOptions> ReadOptionsFromFlags(const v1::Model* model) {
  ReadOptions options;
  const std::string kind = absl::GetFlag(FLAGS_kind);
  if (kind.empty() && model != nullptr) {
    options.kind = model->kind();
  } else {
    ASSIGN_OR_RETURN(options.kind,
                     ParseEnum<v1::DataKind>("kind", kind, "DATA_KIND_", v1::DataKind_Parse,
                                             "binary, categorical, continuous"));
  }
  options.binarize_threshold = absl::GetFlag(FLAGS_binarize_threshold);
  options.num_categories = absl::GetFlag(FLAGS_num_categories);
  if (options.num_categories == 0 && model != nullptr &&
      options.kind == v1::DATA_KIND_CATEGORICAL) {
    // The model's K, so that the encoding matches what the server expects.
    options.num_categories = static_cast<int32_t>(model->num_categories());
  }
  options.max_records = absl::GetFlag(FLAGS_max_records);
  return options;
}

absl::StatusOr<int> DatasetsUpload(Context& ctx) {
  if (ctx.args.size() != 1) {
    return UsageOf("datasets upload FILE --kind=binary|categorical|continuous [--name=N] ...");
  }
  const std::string& path = ctx.args[0];
  ASSIGN_OR_RETURN(const ReadOptions options, ReadOptionsFromFlags(nullptr));
  FileInfo info;
  ASSIGN_OR_RETURN(const RecordMatrix records, ReadRecordsFile(path, options, &info));
  std::string name = absl::GetFlag(FLAGS_name);
  if (name.empty()) name = path.substr(path.find_last_of('/') + 1);
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  const absl::Time start = absl::Now();
  const int64_t row_bytes =
      RowBytes(CanonicalEncoding(records.kind, records.num_categories), records.cols);
  auto progress = [&](int64_t sent, int64_t total) {
    const double seconds = std::max(1e-6, absl::ToDoubleSeconds(absl::Now() - start));
    DrawProgressLine(absl::StrFormat("upload %s %3.0f%%  %d/%d records  %.1f MiB/s",
                                     Bar(static_cast<double>(sent) / total), 100.0 * sent / total,
                                     sent, total, sent * row_bytes / seconds / (1 << 20)));
  };
  const v1::ImageShape* shape = info.image_shape.height() > 0 ? &info.image_shape : nullptr;
  absl::StatusOr<v1::Dataset> dataset =
      client->UploadDataset(name, records, shape, progress, absl::GetFlag(FLAGS_request_id));
  ClearProgressLine();
  if (!dataset.ok()) return dataset.status();
  RETURN_IF_ERROR(Print(*dataset));
  return 0;
}

absl::StatusOr<int> DatasetsGet(Context& ctx) {
  if (ctx.args.size() != 1) return UsageOf("datasets get ID");
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  ASSIGN_OR_RETURN(const v1::Dataset dataset, client->GetDataset(ctx.args[0]));
  RETURN_IF_ERROR(Print(dataset));
  return 0;
}

absl::StatusOr<int> DatasetsList(Context& ctx) {
  if (!ctx.args.empty()) return UsageOf("datasets list");
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  std::vector<v1::Dataset> all;
  std::string token;
  do {
    ASSIGN_OR_RETURN(v1::ListDatasetsResponse page, client->ListDatasets(0, token));
    for (auto& d : *page.mutable_datasets()) all.push_back(std::move(d));
    if (page.next_page_token() == token) break;  // a server bug must not loop forever
    token = page.next_page_token();
  } while (!token.empty());
  if (absl::GetFlag(FLAGS_json)) {
    for (const auto& d : all) RETURN_IF_ERROR(PrintJson(d));
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> tenants;
  for (const auto& d : all) {
    tenants.push_back(d.tenant());
    rows.push_back({d.id(), d.name(), KindName(d.kind()), absl::StrCat(d.num_records()),
                    absl::StrCat(d.dim()), ShapeWord(d.image_shape()), Bytes(d.stored_bytes()),
                    Time(d.create_time())});
  }
  PrintListing({"ID", "NAME", "KIND", "RECORDS", "DIM", "SHAPE", "STORED", "CREATED"}, rows,
               {false, false, false, true, true, false, true, false}, tenants);
  return 0;
}

absl::StatusOr<int> DatasetsDelete(Context& ctx) {
  if (ctx.args.size() != 1) return UsageOf("datasets delete ID");
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  RETURN_IF_ERROR(client->DeleteDataset(ctx.args[0]));
  if (absl::GetFlag(FLAGS_json)) {
    RETURN_IF_ERROR(PrintJson(v1::DeleteDatasetResponse()));
  } else {
    std::printf("deleted %s\n", ctx.args[0].c_str());
  }
  return 0;
}

// Watches a job, printing events; returns 0 iff it ends SUCCEEDED.
absl::StatusOr<int> Watch(Client* client, const std::string& id, int64_t from_seq) {
  ASSIGN_OR_RETURN(const v1::Job initial, client->GetJob(id));
  const int32_t epochs = initial.spec().epochs();
  const bool json = absl::GetFlag(FLAGS_json);
  auto epoch_word = [epochs](int32_t epoch) {
    return epochs > 0 ? absl::StrFormat("%d/%d", epoch, epochs) : absl::StrCat(epoch);
  };
  auto on_event = [&](const v1::JobEvent& event) {
    if (json) {
      ClearProgressLine();
      (void)PrintJson(event);
      std::fflush(stdout);
    }
    switch (event.event_case()) {
      case v1::JobEvent::kProgress: {
        const v1::TrainingProgress& p = event.progress();
        const double fraction =
            p.total_steps() > 0 ? static_cast<double>(p.step()) / p.total_steps() : 0;
        DrawProgressLine(
            absl::StrFormat("%s %5.1f%%  epoch %s  step %d/%d  train NLL %.4f  %.0f rec/s",
                            Bar(fraction), 100 * fraction, epoch_word(p.epoch()), p.step(),
                            p.total_steps(), p.train_nll(), p.samples_per_second()));
        break;
      }
      case v1::JobEvent::kEpochSummary: {
        if (json) break;
        const v1::EpochSummary& e = event.epoch_summary();
        ClearProgressLine();
        std::printf(
            "epoch %-5s  train NLL %9.4f  val NLL %9.4f ± %.4f  gap %+8.4f  %.4f bits/dim  "
            "%6.0f rec/s%s\n",
            epoch_word(e.epoch()).c_str(), e.train_nll(), e.validation_nll(),
            e.validation_standard_error(), e.generalization_gap(), e.validation_bits_per_dim(),
            e.samples_per_second(), e.is_best() ? "  *best" : "");
        std::fflush(stdout);
        break;
      }
      case v1::JobEvent::kStateChange: {
        if (json) break;
        const v1::StateChange& s = event.state_change();
        ClearProgressLine();
        std::printf("%s  %s%s%s%s%s\n", Time(event.time()).c_str(), StateWord(s.state()).c_str(),
                    s.message().empty() ? "" : "  ", s.message().c_str(),
                    s.replica_id().empty() ? "" : "  [replica ",
                    s.replica_id().empty() ? "" : (s.replica_id() + "]").c_str());
        std::fflush(stdout);
        break;
      }
      case v1::JobEvent::kWarning: {
        if (json) break;
        ClearProgressLine();
        std::printf("%s  warning: %s\n", Time(event.time()).c_str(),
                    event.warning().message().c_str());
        std::fflush(stdout);
        break;
      }
      default:
        break;
    }
    return true;
  };
  const absl::Status status = client->WatchJob(id, from_seq, on_event);
  ClearProgressLine();
  RETURN_IF_ERROR(status);
  ASSIGN_OR_RETURN(const v1::Job job, client->GetJob(id));
  if (!json) {
    if (job.state() == v1::JOB_STATE_SUCCEEDED) {
      std::printf("job %s SUCCEEDED (%s): model %s, best val NLL %s\n", job.id().c_str(),
                  job.stop_reason().c_str(), job.model_id().c_str(),
                  Nll(job.best_validation_nll()).c_str());
    } else {
      std::printf("job %s %s%s%s\n", job.id().c_str(), StateWord(job.state()).c_str(),
                  job.error().empty() ? "" : ": ", job.error().c_str());
    }
  }
  return job.state() == v1::JOB_STATE_SUCCEEDED ? 0 : 1;
}

absl::StatusOr<v1::ModelSpec> ModelSpecFromFlags() {
  v1::ModelSpec model;
  ASSIGN_OR_RETURN(
      const v1::ModelFamily family,
      ParseEnum<v1::ModelFamily>("family", absl::GetFlag(FLAGS_family), "MODEL_FAMILY_",
                                 v1::ModelFamily_Parse,
                                 "bernoulli, categorical, gaussian, gaussian_mixture, fvsbn, "
                                 "nade, made, maf, realnvp, vae, pixelcnn"));
  model.set_family(family);
  const std::pair<const char*, std::optional<std::string>> params[] = {
      {"hidden_layers", absl::GetFlag(FLAGS_hidden_layers)},
      {"hidden_units", absl::GetFlag(FLAGS_hidden_units)},
      {"order", absl::GetFlag(FLAGS_order)},
      {"order_seed", absl::GetFlag(FLAGS_order_seed)},
      {"pseudo_count", absl::GetFlag(FLAGS_pseudo_count)},
      {"num_masks", absl::GetFlag(FLAGS_num_masks)},
      {"conditional", absl::GetFlag(FLAGS_conditional)},
      {"mixture_components", absl::GetFlag(FLAGS_mixture_components)},
      {"direct_connections", absl::GetFlag(FLAGS_direct_connections)},
      {"components", absl::GetFlag(FLAGS_components)},
      {"covariance", absl::GetFlag(FLAGS_covariance)},
      {"training", absl::GetFlag(FLAGS_training)},
      {"min_variance", absl::GetFlag(FLAGS_min_variance)},
      {"flow_layers", absl::GetFlag(FLAGS_flow_layers)},
      {"coupling_layers", absl::GetFlag(FLAGS_coupling_layers)},
      {"batch_norm", absl::GetFlag(FLAGS_batch_norm)},
      {"latent_dim", absl::GetFlag(FLAGS_latent_dim)},
      {"channels", absl::GetFlag(FLAGS_channels)},
      {"residual_blocks", absl::GetFlag(FLAGS_residual_blocks)},
      {"height", absl::GetFlag(FLAGS_height)},
      {"width", absl::GetFlag(FLAGS_width)},
  };
  google::protobuf::Message* family_params = FamilyParams(&model, family);
  for (const auto& [name, value] : params) {
    if (!value) continue;
    if (family_params == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a known --family"));
    }
    RETURN_IF_ERROR(SetField(family_params, name, *value));
  }
  if (const auto k = absl::GetFlag(FLAGS_importance_samples)) {
    model.mutable_vae()->set_importance_samples(*k);
  }
  if (const auto l1 = absl::GetFlag(FLAGS_l1)) model.mutable_regularization()->set_l1(*l1);
  if (const auto p = absl::GetFlag(FLAGS_dropout)) model.mutable_regularization()->set_dropout(*p);
  if (absl::GetFlag(FLAGS_dequantize)) model.mutable_preprocessing()->set_dequantize(true);
  if (absl::GetFlag(FLAGS_logit)) model.mutable_preprocessing()->set_logit(true);
  if (const auto l = absl::GetFlag(FLAGS_levels)) model.mutable_preprocessing()->set_levels(*l);
  if (const auto a = absl::GetFlag(FLAGS_logit_alpha)) {
    model.mutable_preprocessing()->set_logit_alpha(*a);
  }
  if (const std::string json = absl::GetFlag(FLAGS_model_json); !json.empty()) {
    v1::ModelSpec extra;
    auto st = google::protobuf::util::JsonStringToMessage(json, &extra);
    if (!st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--model_json: ", st.ToString()));
    }
    model.MergeFrom(extra);
  }
  return model;
}

absl::StatusOr<int> JobsCreate(Context& ctx) {
  if (!ctx.args.empty() || absl::GetFlag(FLAGS_dataset).empty()) {
    return UsageOf("jobs create --dataset=ID --family=FAMILY [...]");
  }
  v1::JobSpec spec;
  spec.set_dataset_id(absl::GetFlag(FLAGS_dataset));
  const std::string validation_dataset = absl::GetFlag(FLAGS_validation_dataset);
  const double validation_fraction = absl::GetFlag(FLAGS_validation_fraction);
  if (!validation_dataset.empty() && validation_fraction != 0) {
    return absl::InvalidArgumentError(
        "give --validation_dataset or --validation_fraction, not both");
  }
  if (!validation_dataset.empty()) spec.set_validation_dataset_id(validation_dataset);
  if (validation_fraction != 0) spec.set_validation_fraction(validation_fraction);

  ASSIGN_OR_RETURN(*spec.mutable_model(), ModelSpecFromFlags());
  if (const auto lr = absl::GetFlag(FLAGS_lr)) spec.mutable_optimizer()->set_learning_rate(*lr);
  spec.mutable_optimizer()->set_weight_decay(absl::GetFlag(FLAGS_weight_decay));
  if (const auto b = absl::GetFlag(FLAGS_batch_size)) spec.set_batch_size(*b);
  if (const auto e = absl::GetFlag(FLAGS_epochs)) spec.set_epochs(*e);
  spec.set_seed(absl::GetFlag(FLAGS_seed).value_or(0));
  spec.set_max_steps(absl::GetFlag(FLAGS_max_steps));
  spec.set_max_seconds(absl::GetFlag(FLAGS_max_seconds));
  spec.set_early_stopping_patience(absl::GetFlag(FLAGS_early_stopping_patience));

  ASSIGN_OR_RETURN(Client * client, ctx.client());
  ASSIGN_OR_RETURN(const v1::Job job, client->CreateJob(spec, absl::GetFlag(FLAGS_request_id)));
  RETURN_IF_ERROR(Print(job));
  if (!absl::GetFlag(FLAGS_watch)) return 0;
  std::fflush(stdout);
  return Watch(client, job.id(), 0);
}

absl::StatusOr<int> JobsGet(Context& ctx) {
  if (ctx.args.size() != 1) return UsageOf("jobs get ID");
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  ASSIGN_OR_RETURN(const v1::Job job, client->GetJob(ctx.args[0]));
  RETURN_IF_ERROR(Print(job));
  return 0;
}

absl::StatusOr<int> JobsList(Context& ctx) {
  if (!ctx.args.empty()) return UsageOf("jobs list");
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  std::vector<v1::Job> all;
  std::string token;
  do {
    ASSIGN_OR_RETURN(v1::ListJobsResponse page, client->ListJobs(0, token));
    for (auto& j : *page.mutable_jobs()) all.push_back(std::move(j));
    if (page.next_page_token() == token) break;
    token = page.next_page_token();
  } while (!token.empty());
  if (absl::GetFlag(FLAGS_json)) {
    for (const auto& j : all) RETURN_IF_ERROR(PrintJson(j));
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> tenants;
  for (const auto& j : all) {
    tenants.push_back(j.tenant());
    rows.push_back({j.id(), StateWord(j.state()), FamilyWord(j.spec().model().family()),
                    j.spec().dataset_id(), Progress(j),
                    j.best_validation_nll() != 0 ? Nll(j.best_validation_nll()) : "-",
                    j.model_id().empty() ? "-" : j.model_id(), Time(j.create_time())});
  }
  PrintListing({"ID", "STATE", "FAMILY", "DATASET", "PROGRESS", "BEST VAL NLL", "MODEL", "CREATED"},
               rows, {false, false, false, false, true, true, false, false}, tenants);
  return 0;
}

absl::StatusOr<int> JobsCancel(Context& ctx) {
  if (ctx.args.size() != 1) return UsageOf("jobs cancel ID");
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  ASSIGN_OR_RETURN(const v1::Job job, client->CancelJob(ctx.args[0]));
  RETURN_IF_ERROR(Print(job));
  return 0;
}

absl::StatusOr<int> JobsWatch(Context& ctx) {
  if (ctx.args.size() != 1) return UsageOf("jobs watch ID [--from_seq=N]");
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  return Watch(client, ctx.args[0], absl::GetFlag(FLAGS_from_seq));
}

absl::StatusOr<int> ModelsGet(Context& ctx) {
  if (ctx.args.size() != 1) return UsageOf("models get ID");
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  ASSIGN_OR_RETURN(const v1::Model model, client->GetModel(ctx.args[0]));
  RETURN_IF_ERROR(Print(model));
  return 0;
}

absl::StatusOr<int> ModelsList(Context& ctx) {
  if (!ctx.args.empty()) return UsageOf("models list");
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  std::vector<v1::Model> all;
  std::string token;
  do {
    ASSIGN_OR_RETURN(v1::ListModelsResponse page, client->ListModels(0, token));
    for (auto& m : *page.mutable_models()) all.push_back(std::move(m));
    if (page.next_page_token() == token) break;
    token = page.next_page_token();
  } while (!token.empty());
  if (absl::GetFlag(FLAGS_json)) {
    for (const auto& m : all) RETURN_IF_ERROR(PrintJson(m));
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> tenants;
  for (const auto& m : all) {
    tenants.push_back(m.tenant());
    rows.push_back({m.id(), FamilyWord(m.spec().family()), KindName(m.kind()),
                    absl::StrCat(m.dim()), absl::StrCat(m.num_parameters()),
                    Nll(m.validation_nll()), ScoreKindName(m.score_kind()), m.job_id(),
                    Time(m.create_time())});
  }
  PrintListing({"ID", "FAMILY", "KIND", "DIM", "PARAMS", "VAL NLL", "SCORES", "JOB", "CREATED"},
               rows, {false, false, false, true, true, true, false, false, false}, tenants);
  return 0;
}

// Mean and standard error of `values`.
std::pair<double, double> MeanAndStandardError(const std::vector<double>& values) {
  const double n = static_cast<double>(values.size());
  double sum = 0;
  for (double v : values) sum += v;
  const double mean = sum / n;
  double squares = 0;
  for (double v : values) squares += (v - mean) * (v - mean);
  const double se = values.size() > 1 ? std::sqrt(squares / (n - 1) / n) : 0;
  return {mean, se};
}

ScoringOptions ScoringOptionsFromFlags() {
  ScoringOptions options;
  options.importance_samples = absl::GetFlag(FLAGS_importance_samples);
  options.seed = absl::GetFlag(FLAGS_seed).value_or(0);
  return options;
}

std::string ScoreKindWords(v1::ScoreKind kind, int32_t k) {
  if (kind == v1::SCORE_KIND_ESTIMATE) {
    return absl::StrCat(ScoreKindName(kind), " (importance-weighted, k = ", k, ")");
  }
  if (kind == v1::SCORE_KIND_LOWER_BOUND) return absl::StrCat(ScoreKindName(kind), " (ELBO)");
  return ScoreKindName(kind);
}

// The model a command names: a model id, or a job id ("job-...") for that job's newest
// checkpoint (running) or model (finished); a job's data shape is its training dataset's.
absl::StatusOr<v1::Model> TargetModel(Client* client, const std::string& id) {
  if (!IsJobId(id)) return client->GetModel(id);
  ASSIGN_OR_RETURN(const v1::Job job, client->GetJob(id));
  ASSIGN_OR_RETURN(const v1::Dataset ds, client->GetDataset(job.spec().dataset_id()));
  v1::Model m;
  m.set_id(id);
  m.set_job_id(id);
  m.set_dataset_id(ds.id());
  *m.mutable_spec() = job.spec().model();
  m.set_kind(ds.kind());
  m.set_dim(ds.dim());
  m.set_num_categories(ds.num_categories());
  if (ds.has_image_shape()) *m.mutable_image_shape() = ds.image_shape();
  return m;
}

absl::StatusOr<int> ModelsScore(Context& ctx) {
  if (ctx.args.size() != 2) {
    return UsageOf("models score ID FILE [--kind=K --binarize_threshold=T ...] [--output=FILE]");
  }
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  ASSIGN_OR_RETURN(const v1::Model model, TargetModel(client, ctx.args[0]));
  ASSIGN_OR_RETURN(const ReadOptions options, ReadOptionsFromFlags(&model));
  ASSIGN_OR_RETURN(const RecordMatrix records, ReadRecordsFile(ctx.args[1], options));
  ScoringOptions scoring = ScoringOptionsFromFlags();
  logpctl::AddAnalysisFlags(&scoring);  // logpctl_analysis.h
  ASSIGN_OR_RETURN(const v1::ScoreResponse scored, client->ScoreAll(model.id(), records, scoring));
  const std::vector<double> log_probs(scored.log_prob().begin(), scored.log_prob().end());

  const std::string output = absl::GetFlag(FLAGS_output);
  if (!output.empty()) {
    std::FILE* file = std::fopen(output.c_str(), "w");
    if (file == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("cannot open ", output, " for writing"));
    }
    for (double v : log_probs) std::fprintf(file, "%.9g\n", v);
    if (std::fclose(file) != 0) {
      return absl::InternalError(absl::StrCat("cannot write ", output));
    }
  }
  if (absl::GetFlag(FLAGS_json)) {
    RETURN_IF_ERROR(PrintJson(scored));
    return 0;
  }
  if (output.empty()) {
    if (logpctl::HasAnalysis(scored)) {
      logpctl::PrintAnalyzedRecords(scored);
      return 0;
    }
    for (double v : log_probs) std::printf("%.9g\n", v);
    return 0;
  }
  const auto [mean, se] = MeanAndStandardError(log_probs);
  PrintFields({{"records", absl::StrCat(log_probs.size())},
               {"mean log p", absl::StrFormat("%.4f ± %.4f nats", mean, se)},
               {"mean NLL", absl::StrFormat("%.4f nats (%.4f bits/dim)", -mean,
                                            -mean / (records.cols * M_LN2))},
               {"scores", ScoreKindWords(scored.score_kind(), scored.importance_samples())},
               {"written to", output}});
  logpctl::PrintAnalysisSummary(scored);
  return 0;
}

// client/logpctl_explain.cc.
absl::StatusOr<int> ModelsExplain(Context& ctx) {
  if (ctx.args.size() != 1) return UsageOf(logpctl::kExplainUsage);
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  ASSIGN_OR_RETURN(const v1::Model model, TargetModel(client, ctx.args[0]));
  ASSIGN_OR_RETURN(const ReadOptions options, ReadOptionsFromFlags(&model));
  return logpctl::ModelsExplain(*client, model, options);
}

absl::StatusOr<int> ModelsEvaluate(Context& ctx) {
  if (ctx.args.size() != 1 || absl::GetFlag(FLAGS_dataset).empty()) {
    return UsageOf("models evaluate ID --dataset=ID");
  }
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  ASSIGN_OR_RETURN(
      const v1::EvaluateResponse r,
      client->Evaluate(ctx.args[0], absl::GetFlag(FLAGS_dataset), ScoringOptionsFromFlags()));
  if (absl::GetFlag(FLAGS_json)) {
    RETURN_IF_ERROR(PrintJson(r));
    return 0;
  }
  PrintFields({{"records", absl::StrCat(r.num_records())},
               {"mean NLL", absl::StrFormat("%.4f ± %.4f nats (standard error)", r.mean_nll(),
                                            r.standard_error())},
               {"95% interval", absl::StrFormat("[%.4f, %.4f]", r.ci95_low(), r.ci95_high())},
               {"bits/dim", absl::StrFormat("%.4f", r.bits_per_dim())},
               {"scores", ScoreKindWords(r.score_kind(), r.importance_samples())}});
  return 0;
}

// client/logpctl_compare.cc
absl::StatusOr<int> ModelsCompare(Context& ctx) {
  return logpctl::ModelsCompare(ctx.args, ctx.client);
}

absl::Status WriteCsv(const RecordMatrix& m, const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "w");
  if (file == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot open ", path, " for writing"));
  }
  for (int64_t r = 0; r < m.rows; ++r) {
    for (int64_t c = 0; c < m.cols; ++c) {
      std::fprintf(file, c == 0 ? "%.9g" : ",%.9g", m.At(r, c));
    }
    std::fputc('\n', file);
  }
  if (std::fclose(file) != 0) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<int> ModelsSample(Context& ctx) {
  if (ctx.args.size() != 1) {
    return UsageOf("models sample ID [--n=64 --seed=1] [--png=FILE --columns=8] [--output=F]");
  }
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  ASSIGN_OR_RETURN(const v1::Model model, TargetModel(client, ctx.args[0]));
  const std::string png = absl::GetFlag(FLAGS_png);
  v1::ImageShape shape = model.image_shape();
  if (!png.empty() && shape.height() == 0) {
    // No display shape: draw square records as single-channel images.
    const auto side = static_cast<uint32_t>(std::lround(std::sqrt(model.dim())));
    if (side * side != model.dim()) {
      return absl::FailedPreconditionError(
          absl::StrCat("model ", model.id(), " has no image shape and its dim ", model.dim(),
                       " is not a perfect square; cannot draw a PNG"));
    }
    shape.set_height(side);
    shape.set_width(side);
    shape.set_channels(1);
  }
  ASSIGN_OR_RETURN(
      const RecordMatrix samples,
      client->Sample(model.id(), absl::GetFlag(FLAGS_n), absl::GetFlag(FLAGS_seed).value_or(1)));
  const std::string output = absl::GetFlag(FLAGS_output);
  if (!png.empty()) {
    RETURN_IF_ERROR(WritePngGrid(samples, shape, absl::GetFlag(FLAGS_columns), png));
    std::printf("wrote %lld samples to %s\n", static_cast<long long>(samples.rows), png.c_str());
  }
  if (!output.empty()) {
    RETURN_IF_ERROR(WriteCsv(samples, output));
    std::printf("wrote %lld samples to %s\n", static_cast<long long>(samples.rows), output.c_str());
  }
  if (png.empty() && output.empty()) {
    // One record per line: CSV, or JSON arrays with --json.
    const bool json = absl::GetFlag(FLAGS_json);
    for (int64_t r = 0; r < samples.rows; ++r) {
      std::string line = json ? "[" : "";
      for (int64_t c = 0; c < samples.cols; ++c) {
        absl::StrAppendFormat(&line, c == 0 ? "%.9g" : ",%.9g", samples.At(r, c));
      }
      if (json) line += "]";
      std::printf("%s\n", line.c_str());
    }
  }
  return 0;
}

absl::StatusOr<int> ModelsExport(Context& ctx) {
  const std::string output = absl::GetFlag(FLAGS_output);
  if (ctx.args.size() != 1 || output.empty()) return UsageOf("models export ID --output=FILE.pt");
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  ASSIGN_OR_RETURN(const int64_t bytes, client->ExportModel(ctx.args[0], output));
  std::printf("wrote model %s (%lld bytes) to %s\n", ctx.args[0].c_str(),
              static_cast<long long>(bytes), output.c_str());
  return 0;
}

absl::StatusOr<int> Health(Context& ctx) {
  if (ctx.args.size() > 1) return UsageOf("health [SERVICE]");
  ASSIGN_OR_RETURN(Client * client, ctx.client());
  ASSIGN_OR_RETURN(const bool serving, client->Health(ctx.args.empty() ? "" : ctx.args[0]));
  const char* const status = serving ? "SERVING" : "NOT_SERVING";
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("{\"status\": \"%s\"}\n", status);
  } else {
    std::printf("%s\n", status);
  }
  return serving ? 0 : 1;
}

Command Cond(absl::StatusOr<int> (*run)(const ConditionalCommandContext&)) {
  return [run](Context& c) { return run({c.args, c.client, ReadOptionsFromFlags, TargetModel}); };
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  const std::map<std::string, Command> commands = {{"datasets upload", DatasetsUpload},
                                                   {"datasets get", DatasetsGet},
                                                   {"datasets list", DatasetsList},
                                                   {"datasets delete", DatasetsDelete},
                                                   {"jobs create", JobsCreate},
                                                   {"jobs get", JobsGet},
                                                   {"jobs list", JobsList},
                                                   {"jobs cancel", JobsCancel},
                                                   {"jobs watch", JobsWatch},
                                                   {"models get", ModelsGet},
                                                   {"models list", ModelsList},
                                                   {"models score", ModelsScore},
                                                   {"models evaluate", ModelsEvaluate},
                                                   {"models explain", ModelsExplain},
                                                   {"models compare", ModelsCompare},
                                                   {"models sample", ModelsSample},
                                                   {"models export", ModelsExport},
                                                   {"models marginal", Cond(MarginalCmd)},
                                                   {"models impute", Cond(ImputeCmd)},
                                                   {"health", Health}};
  // Commands are two words (NOUN VERB), but for "health".
  const size_t words = positional.size() >= 2 && std::string(positional[1]) == "health" ? 1 : 2;
  if (positional.size() < 1 + words) {
    std::fprintf(stderr, "logpctl: %s", kUsage);
    return kUsageExit;
  }
  const std::string name =
      words == 1 ? std::string(positional[1]) : absl::StrCat(positional[1], " ", positional[2]);
  const auto command = commands.find(name);
  if (command == commands.end()) {
    std::fprintf(stderr, "logpctl: unknown command '%s'\n\nlogpctl: %s", name.c_str(), kUsage);
    return kUsageExit;
  }

  Context ctx;
  ctx.args.assign(positional.begin() + 1 + words, positional.end());
  std::unique_ptr<Client> client;
  ctx.client = [&client]() -> absl::StatusOr<Client*> {
    if (client == nullptr) {
      ASSIGN_OR_RETURN(client,
                       Client::Connect(absl::GetFlag(FLAGS_server), ConnectionOptionsFromFlags()));
    }
    return client.get();
  };
  const absl::StatusOr<int> result = command->second(ctx);
  std::fflush(stdout);
  if (!result.ok()) {
    std::fprintf(stderr, "error: %s: %s\n",
                 absl::StatusCodeToString(result.status().code()).c_str(),
                 std::string(result.status().message()).c_str());
    return 1;
  }
  return *result;
}

}  // namespace
}  // namespace logp

int main(int argc, char** argv) { return logp::Main(argc, argv); }
