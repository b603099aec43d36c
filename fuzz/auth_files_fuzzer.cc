// Fuzzes the parsers of the security files (server/auth): the tokens file (CredentialTable) and
// the quotas file (QuotaTable), and Authenticate with any authorization header. The first byte
// picks the target: 't' a tokens file, 'q' a quotas file, anything else a header checked against
// a fixed table. Invariants:
// - nothing crashes, hangs or leaks;
// - a tokens file's error message never quotes a long first field (it may be a token);
// - a parsed table authenticates each plain-token line a naive reference parser understands
//   (no '#', three fields, a bare token) as that line's tenant and role, and never a token
//   that is in no line;
// - a failed authentication never quotes the header.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "fuzz/fuzz_util.h"
#include "server/auth/credentials.h"
#include "server/auth/principal.h"
#include "server/auth/quotas.h"

namespace logp::fuzz {
namespace {

std::string_view Std(absl::string_view s) { return std::string_view(s.data(), s.size()); }

std::vector<absl::string_view> Fields(absl::string_view line) {
  return absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
}

// The first fields of 20 characters or more: never quoted by an error message. (A field has no
// blank, and no 20 blank-free characters of the parser's messages are a field by chance.)
void CheckNotQuoted(absl::string_view text, const absl::Status& status) {
  if (status.ok()) return;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const std::vector<absl::string_view> fields = Fields(line);
    if (fields.empty() || fields[0].size() < 20) continue;
    FUZZ_CHECK(!absl::StrContains(status.message(), fields[0]));
  }
}

void FuzzTokens(absl::string_view text) {
  absl::StatusOr<CredentialTable> table = CredentialTable::Parse(Std(text));
  CheckNotQuoted(text, table.status());
  if (!table.ok()) return;
  std::map<std::string, std::pair<std::string, std::string>> plain;  // token -> tenant, role
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripSuffix(line, "\r");
    if (absl::StrContains(line, '#')) continue;
    const std::vector<absl::string_view> f = Fields(line);
    if (f.size() != 3 || absl::StartsWith(f[0], "sha256:") || absl::StartsWith(f[0], "cert:")) {
      continue;
    }
    plain[std::string(f[0])] = {std::string(f[1]), std::string(f[2])};
  }
  for (const auto& [token, who] : plain) {
    const std::string header = "Bearer " + token;
    absl::StatusOr<Principal> p = table->Authenticate(header, {});
    FUZZ_CHECK(p.ok());
    FUZZ_CHECK(p->tenant == who.first);
    FUZZ_CHECK(RoleName(p->role) == who.second);
    FUZZ_CHECK(p->via == kViaToken);
  }
  // A token in no line.
  const std::string absent = "Bearer no-such-token-" + std::to_string(text.size());
  if (plain.count(absent.substr(7)) == 0 && !absl::StrContains(text, absent.substr(7))) {
    FUZZ_CHECK(absl::IsUnauthenticated(table->Authenticate(absent, {}).status()));
  }
}

void FuzzQuotas(absl::string_view text) {
  // (Its messages may quote tenants and key=value fields: the file holds no secret.)
  absl::StatusOr<QuotaTable> table = QuotaTable::Parse(Std(text));
  if (!table.ok()) return;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const std::vector<absl::string_view> f = Fields(line);
    if (f.empty()) continue;
    const TenantQuota q = table->For(std::string(f[0]));
    for (const auto& limit : {q.stored_bytes, q.datasets, q.queued_jobs, q.running_jobs}) {
      FUZZ_CHECK(!limit || *limit >= 0);
    }
    FUZZ_CHECK(!q.records_scored_per_second || *q.records_scored_per_second >= 0);
  }
}

void FuzzHeader(absl::string_view rest) {
  static const CredentialTable* const table = [] {
    auto t = CredentialTable::Parse(
        "alpha-token-0123456789 team-a writer\n"
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 team-a reader\n"
        "cert:team-b-client team-b admin\n");
    FUZZ_CHECK(t.ok());
    return new CredentialTable(*std::move(t));
  }();
  // rest = identity bytes, '\0', header bytes (no '\0': no header at all).
  const size_t zero = rest.find('\0');
  std::vector<std::string> identities;
  std::optional<std::string_view> header;
  if (zero == absl::string_view::npos) {
    identities.push_back(std::string(rest));
  } else {
    identities.push_back(std::string(rest.substr(0, zero)));
    header = Std(rest.substr(zero + 1));
  }
  absl::StatusOr<Principal> p = table->Authenticate(header, identities);
  if (p.ok()) {
    if (header) {
      FUZZ_CHECK(p->via == kViaToken);
      FUZZ_CHECK(p->tenant == "team-a");
    } else {
      FUZZ_CHECK(p->via == kViaCertificate);
      FUZZ_CHECK(identities[0] == "team-b-client");
    }
    return;
  }
  FUZZ_CHECK(absl::IsUnauthenticated(p.status()));
  // Authenticate's messages hold no digit: a long header with one cannot be in them by chance.
  if (header && header->size() >= 20 &&
      header->find_first_of("0123456789") != std::string_view::npos) {
    FUZZ_CHECK(!absl::StrContains(p.status().message(),
                                  absl::string_view(header->data(), header->size())));
  }
}

}  // namespace
}  // namespace logp::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  logp::fuzz::Input in(data, size);
  const char which = in.Take<char>();
  switch (which) {
    case 't':
      logp::fuzz::FuzzTokens(in.rest());
      break;
    case 'q':
      logp::fuzz::FuzzQuotas(in.rest());
      break;
    default:
      logp::fuzz::FuzzHeader(in.rest());
  }
  return 0;
}
