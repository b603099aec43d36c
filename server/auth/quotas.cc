#include "server/auth/quotas.h"

#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "server/auth/config_text.h"
#include "server/auth/principal.h"

namespace logp {
namespace {

enum class Kind { kBytes, kCount, kRate };

struct Key {
  const char* name;
  Kind kind;
  std::optional<int64_t> TenantQuota::*count;  // kBytes and kCount
};

constexpr Key kKeys[] = {
    {kQuotaStoredBytes, Kind::kBytes, &TenantQuota::stored_bytes},
    {kQuotaDatasets, Kind::kCount, &TenantQuota::datasets},
    {kQuotaQueuedJobs, Kind::kCount, &TenantQuota::queued_jobs},
    {kQuotaRunningJobs, Kind::kCount, &TenantQuota::running_jobs},
    {kQuotaRecordsScoredPerSecond, Kind::kRate, nullptr},
};
constexpr int kKeyCount = sizeof(kKeys) / sizeof(kKeys[0]);

// One line of the file: the values it gives and which keys it names (`unlimited` is named with
// no value).
struct LineQuota {
  int line = 0;
  TenantQuota values;
  bool named[kKeyCount] = {};
};

// `*to` takes the keys `from` names.
void Override(const LineQuota& from, TenantQuota* to) {
  for (int k = 0; k < kKeyCount; ++k) {
    if (!from.named[k]) continue;
    if (kKeys[k].kind == Kind::kRate) {
      to->records_scored_per_second = from.values.records_scored_per_second;
    } else {
      to->*kKeys[k].count = from.values.*kKeys[k].count;
    }
  }
}

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  return true;
}

absl::Status LineError(int line, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", problem));
}

constexpr char kBytesSyntax[] =
    "expected a non-negative integer of bytes, optionally followed by KB, MB, GB, TB (powers of "
    "1000) or KiB, MiB, GiB, TiB (powers of 1024), or unlimited";

absl::StatusOr<int64_t> ParseBytes(int line, const std::string& field, std::string_view value) {
  size_t digits = 0;
  while (digits < value.size() && absl::ascii_isdigit(value[digits])) ++digits;
  const std::string_view number = value.substr(0, digits);
  const std::string_view unit = value.substr(digits);
  struct Unit {
    std::string_view name;
    int64_t bytes;
  };
  constexpr int64_t kKi = 1024, kK = 1000;
  constexpr Unit kUnits[] = {
      {"", 1},
      {"KB", kK},
      {"MB", kK * kK},
      {"GB", kK * kK * kK},
      {"TB", kK * kK * kK * kK},
      {"KiB", kKi},
      {"MiB", kKi * kKi},
      {"GiB", kKi * kKi * kKi},
      {"TiB", kKi * kKi * kKi * kKi},
  };
  std::optional<int64_t> multiplier;
  for (const Unit& u : kUnits) {
    if (unit == u.name) multiplier = u.bytes;
  }
  if (number.empty() || !multiplier) {
    return LineError(line, absl::StrCat(field, ": ", kBytesSyntax));
  }
  int64_t n;
  if (!absl::SimpleAtoi(ToAbsl(number), &n) ||
      n > std::numeric_limits<int64_t>::max() / *multiplier) {
    return LineError(line, absl::StrCat(field, ": too large (at most 2^63-1 bytes)"));
  }
  return n * *multiplier;
}

absl::Status ParseSetting(int line, const std::string& field, LineQuota* out) {
  const size_t eq = field.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return LineError(line, absl::StrCat("'", field, "' is not KEY=VALUE"));
  }
  const std::string key = field.substr(0, eq);
  const std::string_view value = std::string_view(field).substr(eq + 1);
  int k = 0;
  while (k < kKeyCount && key != kKeys[k].name) ++k;
  if (k == kKeyCount) {
    return LineError(line, absl::StrCat("unknown quota '", key,
                                        "' (expected stored_bytes, datasets, queued_jobs, "
                                        "running_jobs or records_scored_per_second)"));
  }
  if (out->named[k]) return LineError(line, absl::StrCat("quota ", key, " given twice"));
  out->named[k] = true;
  if (value == "unlimited") return absl::OkStatus();

  switch (kKeys[k].kind) {
    case Kind::kBytes: {
      absl::StatusOr<int64_t> bytes = ParseBytes(line, field, value);
      if (!bytes.ok()) return bytes.status();
      out->values.*kKeys[k].count = *bytes;
      return absl::OkStatus();
    }
    case Kind::kCount: {
      int64_t n;
      if (!AllDigits(value)) {
        return LineError(line,
                         absl::StrCat(field, ": expected a non-negative integer or unlimited"));
      }
      if (!absl::SimpleAtoi(ToAbsl(value), &n)) {
        return LineError(line, absl::StrCat(field, ": too large (at most 2^63-1)"));
      }
      out->values.*kKeys[k].count = n;
      return absl::OkStatus();
    }
    case Kind::kRate: {
      // DIGITS or DIGITS.DIGITS: no sign, exponent, inf or nan.
      const size_t dot = value.find('.');
      const bool well_formed = dot == std::string_view::npos ? AllDigits(value)
                                                             : AllDigits(value.substr(0, dot)) &&
                                                                   AllDigits(value.substr(dot + 1));
      double rate;
      if (!well_formed || !absl::SimpleAtod(ToAbsl(value), &rate) || !std::isfinite(rate)) {
        return LineError(line, absl::StrCat(field,
                                            ": expected a non-negative decimal number (e.g. 1000 "
                                            "or 2.5) or unlimited"));
      }
      out->values.records_scored_per_second = rate;
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown quota kind");
}

}  // namespace

absl::StatusOr<QuotaTable> QuotaTable::Parse(std::string_view contents) {
  std::optional<LineQuota> defaults;
  std::vector<std::pair<std::string, LineQuota>> lines;
  absl::flat_hash_map<std::string, int> line_of;  // tenant or "*" -> line
  for (const ConfigLine& line : SplitConfigLines(contents)) {
    const std::string tenant(line.fields[0]);
    if (tenant != "*" && !IsValidTenantName(tenant)) {
      return LineError(line.number, absl::StrCat("invalid tenant '", tenant, "': expected * or ",
                                                 kTenantNameRule));
    }
    auto [it, inserted] = line_of.emplace(tenant, line.number);
    if (!inserted) {
      return LineError(
          line.number,
          absl::StrCat("second line for ", tenant == "*" ? "" : "tenant '", tenant,
                       tenant == "*" ? "" : "'", " (the first is line ", it->second, ")"));
    }
    LineQuota parsed;
    parsed.line = line.number;
    for (size_t i = 1; i < line.fields.size(); ++i) {
      absl::Status status = ParseSetting(line.number, std::string(line.fields[i]), &parsed);
      if (!status.ok()) return status;
    }
    if (tenant == "*") {
      defaults = std::move(parsed);
    } else {
      lines.emplace_back(tenant, std::move(parsed));
    }
  }

  QuotaTable table;
  if (defaults) Override(*defaults, &table.defaults_);
  for (auto& [tenant, line] : lines) {
    TenantQuota quota = table.defaults_;
    Override(line, &quota);
    table.tenants_.emplace(tenant, quota);
  }
  return table;
}

TenantQuota QuotaTable::For(const std::string& tenant) const {
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? defaults_ : it->second;
}

absl::StatusOr<std::unique_ptr<QuotasFile>> QuotasFile::Open(std::string path,
                                                             absl::Duration check_interval) {
  absl::StatusOr<std::unique_ptr<WatchedFile<QuotaTable>>> file = WatchedFile<QuotaTable>::Open(
      std::move(path), "quotas file", check_interval, &QuotaTable::Parse);
  if (!file.ok()) return file.status();
  return std::unique_ptr<QuotasFile>(
      new QuotasFile(std::shared_ptr<WatchedFile<QuotaTable>>(*std::move(file))));
}

TenantQuota QuotasFile::For(const std::string& tenant) const {
  return file_->Current()->For(tenant);
}

QuotaFn QuotasFile::AsQuotaFn() const {
  return [file = file_](const std::string& tenant) { return file->Current()->For(tenant); };
}

}  // namespace logp
