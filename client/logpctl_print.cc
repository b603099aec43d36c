#include "client/logpctl_print.h"

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

#include "absl/flags/declare.h"
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
#include "client/data_files.h"
#include "google/protobuf/util/json_util.h"
#include "proto/cc/status_macros.h"

ABSL_DECLARE_FLAG(bool, json);

namespace logp::logpctl {

// --- output helpers ---

namespace {

bool StderrIsTerminal() {
  static const bool tty = isatty(fileno(stderr)) != 0;
  return tty;
}

}  // namespace

// Erases a progress line drawn on stderr so that the next output starts on a clean line.
void ClearProgressLine() {
  if (StderrIsTerminal()) std::fputs("\r\033[K", stderr);
}

void DrawProgressLine(const std::string& line) {
  if (!StderrIsTerminal()) return;
  std::fprintf(stderr, "\r\033[K%s", line.c_str());
  std::fflush(stderr);
}

std::string Bar(double fraction, int width) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  const int filled = static_cast<int>(std::lround(fraction * width));
  return absl::StrCat("[", std::string(filled, '#'), std::string(width - filled, '.'), "]");
}

absl::Status PrintJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  const auto status = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("cannot print JSON: ", status.ToString()));
  }
  std::printf("%s\n", out.c_str());
  return absl::OkStatus();
}

// Prints "key  value" lines with the values aligned.
void PrintFields(const std::vector<std::pair<std::string, std::string>>& fields) {
  size_t width = 0;
  for (const auto& [key, value] : fields) width = std::max(width, key.size());
  for (const auto& [key, value] : fields) {
    std::printf("%-*s  %s\n", static_cast<int>(width), key.c_str(), value.c_str());
  }
}

namespace {

// Prints a table; columns whose header is in `right` are right-aligned.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      if (c > 0) line += "  ";
      line += right[c] ? pad + row[c] : (c + 1 < row.size() ? row[c] + pad : row[c]);
    }
    std::printf("%s\n", line.c_str());
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

}  // namespace

// A listing's table, with a TENANT column after the id when its items belong to more than one
// tenant (what an admin sees); `tenants` holds each row's.
void PrintListing(std::vector<std::string> header, std::vector<std::vector<std::string>> rows,
                  std::vector<bool> right, const std::vector<std::string>& tenants) {
  const bool mixed =
      std::adjacent_find(tenants.begin(), tenants.end(), std::not_equal_to<>()) != tenants.end();
  if (mixed) {
    header.insert(header.begin() + 1, "TENANT");
    right.insert(right.begin() + 1, false);
    for (size_t r = 0; r < rows.size(); ++r) rows[r].insert(rows[r].begin() + 1, tenants[r]);
  }
  PrintTable(header, rows, right);
}

std::string Time(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixSeconds(t.seconds()),
                          absl::LocalTimeZone());
}

std::string Bytes(uint64_t n) {
  if (n < 1024) return absl::StrCat(n, " B");
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = n / 1024.0;
  int u = 0;
  while (v >= 1024 && u < 3) v /= 1024, ++u;
  return absl::StrFormat("%.1f %s", v, units[u]);
}

// "MODEL_FAMILY_MADE" -> "made".
std::string EnumWord(const std::string& name, absl::string_view prefix) {
  return absl::AsciiStrToLower(absl::StripPrefix(name, prefix));
}

std::string FamilyWord(v1::ModelFamily f) {
  return EnumWord(v1::ModelFamily_Name(f), "MODEL_FAMILY_");
}
// The params message of `family` inside `spec` (the field named like the family), or nullptr.
google::protobuf::Message* FamilyParams(v1::ModelSpec* spec, v1::ModelFamily family) {
  const auto* field = spec->GetDescriptor()->FindFieldByName(FamilyWord(family));
  if (field == nullptr) return nullptr;
  return spec->GetReflection()->MutableMessage(spec, field);
}

std::string StateWord(v1::JobState s) {
  return std::string(absl::StripPrefix(v1::JobState_Name(s), "JOB_STATE_"));
}
std::string ScoreKindName(v1::ScoreKind k) {
  switch (k) {
    case v1::SCORE_KIND_EXACT:
      return "exact";
    case v1::SCORE_KIND_LOWER_BOUND:
      return "lower bound";
    case v1::SCORE_KIND_ESTIMATE:
      return "estimate";
    default:
      return "unspecified";
  }
}

std::string ShapeWord(const v1::ImageShape& s) {
  if (s.height() == 0) return "-";
  return absl::StrCat(s.height(), "x", s.width(), "x", s.channels());
}

std::string Nll(double v) { return absl::StrFormat("%.4f", v); }

// A spec value, where 0 means the server's default.
template <typename T>
std::string OrDefault(T v) {
  return v == 0 ? std::string("default") : absl::StrCat(v);
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

// --- printing resources ---

absl::Status Print(const v1::Dataset& d) {
  if (absl::GetFlag(FLAGS_json)) return PrintJson(d);
  PrintFields({{"id", d.id()},
               {"name", OrDash(d.name())},
               {"kind", KindName(d.kind())},
               {"records", absl::StrCat(d.num_records())},
               {"dim", absl::StrCat(d.dim())},
               {"categories", absl::StrCat(d.num_categories())},
               {"image shape", ShapeWord(d.image_shape())},
               {"content hash", OrDash(d.content_hash())},
               {"stored", Bytes(d.stored_bytes())},
               {"created", Time(d.create_time())}});
  return absl::OkStatus();
}

std::string Validation(const v1::JobSpec& s) {
  switch (s.validation_case()) {
    case v1::JobSpec::kValidationDatasetId:
      return s.validation_dataset_id();
    case v1::JobSpec::kValidationFraction:
      return absl::StrFormat("%g of training records", s.validation_fraction());
    default:
      return "server default";
  }
}

std::string Progress(const v1::Job& j) {
  if (j.total_steps() <= 0) return "-";
  return absl::StrFormat("%d/%d (%.0f%%)", j.step(), j.total_steps(),
                         100.0 * j.step() / j.total_steps());
}

// Bytes as "12.3 MiB".
std::string Mib(int64_t bytes) {
  return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

absl::Status Print(const v1::Job& j) {
  if (absl::GetFlag(FLAGS_json)) return PrintJson(j);
  const v1::JobSpec& s = j.spec();
  std::vector<std::pair<std::string, std::string>> fields = {
      {"id", j.id()},
      {"state", StateWord(j.state())},
      {"dataset", s.dataset_id()},
      {"validation", Validation(s)},
      {"family", FamilyWord(s.model().family())}};
  {
    v1::ModelSpec model = s.model();
    if (const auto* params = FamilyParams(&model, model.family())) {
      const std::string text = params->ShortDebugString();
      fields.push_back({FamilyWord(model.family()), text.empty() ? "defaults" : text});
    }
    if (model.has_regularization()) {
      fields.push_back({"regularization", model.regularization().ShortDebugString()});
    }
    if (model.has_preprocessing()) {
      fields.push_back({"preprocessing", model.preprocessing().ShortDebugString()});
    }
  }
  fields.push_back({"optimizer", absl::StrFormat("adam lr %s, weight decay %g",
                                                 OrDefault(s.optimizer().learning_rate()),
                                                 s.optimizer().weight_decay())});
  fields.push_back(
      {"training", absl::StrFormat("batch %s, epochs %s, seed %d", OrDefault(s.batch_size()),
                                   OrDefault(s.epochs()), s.seed())});
  if (j.memory_estimate().total_bytes() > 0) {
    const v1::MemoryEstimate& e = j.memory_estimate();
    fields.push_back({"memory", absl::StrFormat("%s estimated (parameters %s, activations %s, "
                                                "data %s)",
                                                Mib(e.total_bytes()), Mib(e.parameter_bytes()),
                                                Mib(e.activation_bytes()), Mib(e.data_bytes()))});
  }
  fields.push_back({"progress", Progress(j)});
  if (j.best_validation_nll() != 0) {
    fields.push_back({"best val NLL", Nll(j.best_validation_nll())});
  }
  if (!j.model_id().empty()) fields.push_back({"model", j.model_id()});
  if (!j.error().empty()) fields.push_back({"error", j.error()});
  fields.push_back({"created", Time(j.create_time())});
  fields.push_back({"started", Time(j.start_time())});
  fields.push_back({"ended", Time(j.end_time())});
  PrintFields(fields);
  return absl::OkStatus();
}

absl::Status Print(const v1::Model& m) {
  if (absl::GetFlag(FLAGS_json)) return PrintJson(m);
  std::string val = Nll(m.validation_nll());
  if (m.dim() > 0) {
    absl::StrAppendFormat(&val, " nats (%.4f bits/dim)", m.validation_nll() / (m.dim() * M_LN2));
  }
  PrintFields({{"id", m.id()},
               {"job", OrDash(m.job_id())},
               {"dataset", OrDash(m.dataset_id())},
               {"family", FamilyWord(m.spec().family())},
               {"kind", KindName(m.kind())},
               {"dim", absl::StrCat(m.dim())},
               {"categories", absl::StrCat(m.num_categories())},
               {"image shape", ShapeWord(m.image_shape())},
               {"parameters", absl::StrCat(m.num_parameters())},
               {"val NLL", val},
               {"scores", ScoreKindName(m.score_kind())},
               {"reference scores", absl::StrCat(m.reference_scores())},
               {"created", Time(m.create_time())}});
  return absl::OkStatus();
}

// --- commands ---

}  // namespace logp::logpctl
