#include "server/auth/credentials.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "server/auth/config_text.h"

namespace logp {
namespace {

constexpr std::string_view kDigestPrefix = "sha256:";
constexpr std::string_view kCertPrefix = "cert:";

bool IsTokenChar(char c) { return c >= 0x21 && c <= 0x7e; }

bool IsValidToken(std::string_view token) {
  if (token.empty()) return false;
  for (char c : token) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<Sha256Digest> ParseHexDigest(std::string_view hex) {
  Sha256Digest digest;
  if (hex.size() != 2 * digest.size()) return std::nullopt;
  for (size_t i = 0; i < digest.size(); ++i) {
    const int high = HexValue(hex[2 * i]);
    const int low = HexValue(hex[2 * i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    digest[i] = static_cast<uint8_t>(high * 16 + low);
  }
  return digest;
}

absl::Status LineError(int line, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", problem));
}

// The token of a well-formed header `Bearer TOKEN`.
std::optional<std::string_view> BearerToken(std::string_view header) {
  constexpr std::string_view kScheme = "bearer";
  if (header.size() < kScheme.size() + 2) return std::nullopt;
  if (!absl::EqualsIgnoreCase(ToAbsl(header.substr(0, kScheme.size())), ToAbsl(kScheme)))
    return std::nullopt;
  if (header[kScheme.size()] != ' ') return std::nullopt;
  std::string_view token = header.substr(kScheme.size() + 1);
  if (!IsValidToken(token)) return std::nullopt;
  return token;
}

}  // namespace

Sha256Digest Sha256(std::string_view data) {
  Sha256Digest digest;
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest.data());
  return digest;
}

absl::StatusOr<CredentialTable> CredentialTable::Parse(std::string_view contents) {
  CredentialTable table;
  absl::flat_hash_map<std::string, int> token_lines;  // digest bytes -> line
  absl::flat_hash_map<std::string, int> cert_lines;   // identity -> line
  for (const ConfigLine& line : SplitConfigLines(contents)) {
    if (line.fields.size() != 3) {
      return LineError(line.number, absl::StrCat("expected 3 fields (TOKEN TENANT ROLE), found ",
                                                 line.fields.size()));
    }
    const std::string_view first = line.fields[0];
    const bool is_digest = absl::StartsWith(ToAbsl(first), ToAbsl(kDigestPrefix));
    const bool is_cert = absl::StartsWith(ToAbsl(first), ToAbsl(kCertPrefix));
    Sha256Digest digest{};
    std::string identity;
    if (is_digest) {
      std::optional<Sha256Digest> parsed = ParseHexDigest(first.substr(kDigestPrefix.size()));
      if (!parsed) {
        return LineError(line.number, "the sha256 digest must be 64 hexadecimal digits");
      }
      digest = *parsed;
    } else if (is_cert) {
      identity = std::string(first.substr(kCertPrefix.size()));
      if (identity.empty()) return LineError(line.number, "the certificate identity is empty");
      for (char c : identity) {
        if (absl::ascii_iscntrl(c)) {
          return LineError(line.number,
                           "the certificate identity may contain no control characters");
        }
      }
    } else {
      if (!IsValidToken(first)) {
        return LineError(line.number,
                         "the token may contain only printable ASCII characters other than "
                         "space (0x21-0x7e)");
      }
      digest = Sha256(first);
    }

    const std::string_view tenant = line.fields[1];
    if (!IsValidTenantName(tenant)) {
      return LineError(line.number,
                       absl::StrCat("the tenant (second field) must be ", kTenantNameRule));
    }
    const std::optional<Role> role = ParseRole(line.fields[2]);
    if (!role) {
      return LineError(line.number, "the role (third field) must be reader, writer or admin");
    }

    if (is_cert) {
      auto [it, inserted] = cert_lines.emplace(identity, line.number);
      if (!inserted) {
        return LineError(line.number,
                         absl::StrCat("duplicate certificate identity: also on line ", it->second));
      }
      table.certificates_.emplace(std::move(identity),
                                  Principal{std::string(tenant), *role, kViaCertificate});
    } else {
      auto [it, inserted] = token_lines.emplace(
          std::string(reinterpret_cast<const char*>(digest.data()), digest.size()), line.number);
      if (!inserted) {
        return LineError(line.number,
                         absl::StrCat("duplicate ", is_digest ? "sha256 digest" : "token",
                                      ": the same token is on line ", it->second));
      }
      table.tokens_.push_back(TokenEntry{digest, Principal{std::string(tenant), *role, kViaToken}});
    }
  }
  return table;
}

absl::StatusOr<Principal> CredentialTable::Authenticate(
    std::optional<std::string_view> authorization,
    const std::vector<std::string>& cert_identities) const {
  if (authorization.has_value()) {
    const std::optional<std::string_view> token = BearerToken(*authorization);
    if (!token) {
      return absl::UnauthenticatedError(
          "malformed authorization header: expected \"Bearer TOKEN\" (the scheme Bearer, one "
          "space, then the token)");
    }
    const Sha256Digest digest = Sha256(*token);
    // Constant time: every entry is compared, and a match does not end the loop.
    const TokenEntry* match = nullptr;
    for (const TokenEntry& entry : tokens_) {
      const bool equal = CRYPTO_memcmp(digest.data(), entry.digest.data(), digest.size()) == 0;
      match = equal ? &entry : match;
    }
    if (match == nullptr) return absl::UnauthenticatedError("invalid token");
    return match->principal;
  }

  for (const std::string& identity : cert_identities) {
    auto it = certificates_.find(identity);
    if (it != certificates_.end()) return it->second;
  }
  std::string message = "missing credentials: send the header authorization: Bearer TOKEN";
  if (!certificates_.empty()) {
    absl::StrAppend(&message, " or connect with a client certificate mapped to a tenant");
  }
  if (!cert_identities.empty()) {
    absl::StrAppend(&message, " (the client certificate presented is mapped to no tenant)");
  }
  return absl::UnauthenticatedError(message);
}

absl::StatusOr<std::unique_ptr<AuthTokensFile>> AuthTokensFile::Open(
    std::string path, absl::Duration check_interval) {
  auto parse = [path](std::string_view contents) -> absl::StatusOr<CredentialTable> {
    absl::StatusOr<CredentialTable> table = CredentialTable::Parse(contents);
    if (table.ok()) {
      LOG(INFO) << "auth tokens file '" << path << "': " << table->token_count() << " tokens, "
                << table->certificate_count() << " certificate identities";
    }
    return table;
  };
  absl::StatusOr<std::unique_ptr<WatchedFile<CredentialTable>>> file =
      WatchedFile<CredentialTable>::Open(std::move(path), "auth tokens file", check_interval,
                                         std::move(parse));
  if (!file.ok()) return file.status();
  return std::unique_ptr<AuthTokensFile>(new AuthTokensFile(*std::move(file)));
}

absl::StatusOr<Principal> AuthTokensFile::Authenticate(
    std::optional<std::string_view> authorization,
    const std::vector<std::string>& cert_identities) const {
  return file_->Current()->Authenticate(authorization, cert_identities);
}

}  // namespace logp
