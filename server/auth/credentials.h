// Credentials -> Principal: the tokens file (--auth_tokens_file), its parsed table and the one
// rule that authenticates a call.
//
// The tokens file
// ---------------
// One credential per line, three fields separated by spaces or tabs:
//
//   TOKEN               TENANT ROLE    a bearer token, written in the clear
//   sha256:HEX          TENANT ROLE    a bearer token given by its SHA-256: HEX is 64 hex digits
//                                      (either case), e.g. the output of
//                                      `printf %s "$TOKEN" | sha256sum`; the file need not hold
//                                      the secret
//   cert:IDENTITY       TENANT ROLE    a client certificate identity, as the TLS layer reports it
//                                      (it cannot contain spaces or tabs)
//
// - TENANT is a tenant name: 1 to 64 characters of [A-Za-z0-9._-], the first a letter or a digit.
// - ROLE is `reader`, `writer` or `admin` (lower case).
// - TOKEN is 1 or more printable ASCII characters other than space (0x21-0x7e), not beginning
//   with `#`, `sha256:` or `cert:` (those prefixes are case-sensitive).
// - A `#` at the start of a line or after a space or a tab starts a comment that runs to the end
//   of the line; blank lines are ignored; CRLF line ends are accepted.
// - The same token twice (in the clear or as its digest, on any two lines) is an error, as is
//   the same certificate identity twice. An empty file is valid and admits nobody.
// - Only the SHA-256 digests of the tokens are kept in memory.
//
// A file that breaks a rule is INVALID_ARGUMENT "line N: <the problem>". A message names the
// line and the kind of the first field ("token", "sha256 digest", "certificate identity") but
// quotes no field of the file: a token may sit in the wrong column.
#ifndef LOGP_SERVER_AUTH_CREDENTIALS_H_
#define LOGP_SERVER_AUTH_CREDENTIALS_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/auth/principal.h"
#include "server/auth/watched_file.h"

namespace logp {

using Sha256Digest = std::array<uint8_t, 32>;
Sha256Digest Sha256(std::string_view data);

// The credentials of one version of the tokens file. Immutable; thread-safe.
class CredentialTable {
 public:
  // Parses the tokens file format above.
  static absl::StatusOr<CredentialTable> Parse(std::string_view contents);

  // The principal of a call. `authorization` is the value of its `authorization` header
  // (nullopt when absent); `cert_identities` the identities of the verified client certificate,
  // in the TLS layer's order (empty without one).
  //
  // - A header, when present, decides alone (a token takes precedence over a certificate). It
  //   must be `Bearer TOKEN`: the scheme `Bearer` in any case, exactly one space, then the token
  //   (1 or more characters 0x21-0x7e); anything else is UNAUTHENTICATED "malformed
  //   authorization header: ...". The token's SHA-256 is compared with every entry of the table
  //   in constant time (every entry is visited whatever matches); no entry matching is
  //   UNAUTHENTICATED "invalid token".
  // - Without a header, the first of `cert_identities` the table maps gives the principal, via
  //   "certificate".
  // - Otherwise UNAUTHENTICATED "missing credentials: send the header authorization: Bearer
  //   TOKEN", followed, when the table maps certificates, by " or connect with a client
  //   certificate mapped to a tenant", and, when a certificate was presented, by " (the client
  //   certificate presented is mapped to no tenant)".
  // No message quotes the header or says whether a tenant exists.
  absl::StatusOr<Principal> Authenticate(std::optional<std::string_view> authorization,
                                         const std::vector<std::string>& cert_identities) const;

  size_t token_count() const { return tokens_.size(); }
  size_t certificate_count() const { return certificates_.size(); }

 private:
  struct TokenEntry {
    Sha256Digest digest;
    Principal principal;  // via kViaToken
  };
  CredentialTable() = default;

  std::vector<TokenEntry> tokens_;
  absl::flat_hash_map<std::string, Principal> certificates_;  // via kViaCertificate
};

// The tokens file, re-read when it changes (see WatchedFile: a version that fails to parse keeps
// the previous table and logs an ERROR). Thread-safe.
class AuthTokensFile {
 public:
  // Reads and parses `path`: an unreadable file is its read error (NOT_FOUND, ...), a bad one
  // INVALID_ARGUMENT "auth tokens file 'PATH': line N: ...". The file is checked for changes at
  // most every `check_interval` (0: at every call).
  static absl::StatusOr<std::unique_ptr<AuthTokensFile>> Open(
      std::string path, absl::Duration check_interval = absl::Seconds(1));

  // CredentialTable::Authenticate on the current table.
  absl::StatusOr<Principal> Authenticate(std::optional<std::string_view> authorization,
                                         const std::vector<std::string>& cert_identities) const;

  // The current table (after a check, if one is due).
  std::shared_ptr<const CredentialTable> Current() const { return file_->Current(); }
  // OK, or why the last change of the file was not taken.
  absl::Status LastReloadStatus() const { return file_->LastReloadStatus(); }

 private:
  explicit AuthTokensFile(std::unique_ptr<WatchedFile<CredentialTable>> file)
      : file_(std::move(file)) {}
  const std::unique_ptr<WatchedFile<CredentialTable>> file_;
};

}  // namespace logp

#endif  // LOGP_SERVER_AUTH_CREDENTIALS_H_
