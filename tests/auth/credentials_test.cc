// The tokens file format, its parse errors, and CredentialTable::Authenticate's rules.
#include "server/auth/credentials.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace logp {
namespace {

constexpr char kMalformed[] =
    "malformed authorization header: expected \"Bearer TOKEN\" (the scheme Bearer, one space, "
    "then the token)";
constexpr char kMissing[] = "missing credentials: send the header authorization: Bearer TOKEN";

std::string Hex(const Sha256Digest& digest) {
  std::string hex;
  for (uint8_t b : digest)
    absl::StrAppend(&hex, absl::Hex(static_cast<unsigned>(b), absl::kZeroPad2));
  return hex;
}

CredentialTable ParseOrDie(const std::string& contents) {
  absl::StatusOr<CredentialTable> table = CredentialTable::Parse(contents);
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *std::move(table) : *CredentialTable::Parse("");
}

void ExpectPrincipal(const absl::StatusOr<Principal>& got, const std::string& tenant, Role role,
                     const std::string& via) {
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->tenant, tenant);
  EXPECT_EQ(got->role, role);
  EXPECT_EQ(got->via, via);
}

absl::StatusOr<Principal> WithHeader(const CredentialTable& table, const std::string& header) {
  return table.Authenticate(header, {});
}

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Hex(Sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Hex(Sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(CredentialTableTest, EveryKindOfLineWithCommentsBlanksTabsAndCrlf) {
  const std::string contents = absl::StrCat(
      "# logp tokens\n"
      "\n"
      "   \t \n"
      "tok-reader team-a reader   # trailing comment\n"
      "tok-writer\tteam-a\twriter\r\n",
      "sha256:", Hex(Sha256("tok-hashed")), " team-b admin\n",
      "  # indented comment\n"
      "cert:client-c.example team-c writer\n"
      "ab#cd team-d reader#not-a-comment-inside-a-field-but-this-is-the-role\n");
  // A '#' inside a field does not start a comment: the role "reader#not-..." is invalid.
  absl::StatusOr<CredentialTable> bad = CredentialTable::Parse(contents);
  EXPECT_EQ(bad.status(), absl::InvalidArgumentError(
                              "line 9: the role (third field) must be reader, writer or admin"));

  const CredentialTable table =
      ParseOrDie(contents.substr(0, contents.rfind("ab#cd")) + "ab#cd team-d reader\n");
  EXPECT_EQ(table.token_count(), 4);
  EXPECT_EQ(table.certificate_count(), 1);
  ExpectPrincipal(WithHeader(table, "Bearer tok-reader"), "team-a", Role::kReader, kViaToken);
  ExpectPrincipal(WithHeader(table, "Bearer tok-writer"), "team-a", Role::kWriter, kViaToken);
  ExpectPrincipal(WithHeader(table, "Bearer tok-hashed"), "team-b", Role::kAdmin, kViaToken);
  // A '#' inside a field is part of it.
  ExpectPrincipal(WithHeader(table, "Bearer ab#cd"), "team-d", Role::kReader, kViaToken);
  EXPECT_EQ(WithHeader(table, "Bearer ab").status(), absl::UnauthenticatedError("invalid token"));
  ExpectPrincipal(table.Authenticate(std::nullopt, {"client-c.example"}), "team-c", Role::kWriter,
                  kViaCertificate);
}

TEST(CredentialTableTest, DigestInUpperCaseHexAndTheHashedSecretIsNotAToken) {
  std::string upper = Hex(Sha256("s3cret"));
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  const CredentialTable table = ParseOrDie(absl::StrCat("sha256:", upper, " t admin\n"));
  ExpectPrincipal(WithHeader(table, "Bearer s3cret"), "t", Role::kAdmin, kViaToken);
  // The digest itself, or the whole first field, does not authenticate.
  EXPECT_EQ(WithHeader(table, "Bearer " + upper).status(),
            absl::UnauthenticatedError("invalid token"));
  EXPECT_EQ(WithHeader(table, "Bearer sha256:" + upper).status(),
            absl::UnauthenticatedError("invalid token"));
}

TEST(CredentialTableTest, EmptyFileAdmitsNobody) {
  const CredentialTable table = ParseOrDie("# nobody yet\n\n");
  EXPECT_EQ(table.token_count(), 0);
  EXPECT_EQ(WithHeader(table, "Bearer anything").status(),
            absl::UnauthenticatedError("invalid token"));
  EXPECT_EQ(table.Authenticate(std::nullopt, {}).status(), absl::UnauthenticatedError(kMissing));
}

TEST(CredentialTableTest, SchemeIsCaseInsensitive) {
  const CredentialTable table = ParseOrDie("tok t writer\n");
  for (const char* scheme : {"Bearer", "bearer", "BEARER", "bEaReR"}) {
    ExpectPrincipal(WithHeader(table, absl::StrCat(scheme, " tok")), "t", Role::kWriter, kViaToken);
  }
}

TEST(CredentialTableTest, MalformedHeaders) {
  const CredentialTable table = ParseOrDie("tok t writer\ncert:c t admin\n");
  for (const std::string& header : std::vector<std::string>{
           "", "tok", "Bearer", "Bearer ", "Bearer  tok", "Bearer\ttok", "Bearertok", "Basic dG9r",
           "Token tok", " Bearer tok", "Bearer tok ", "Bearer tok extra", "Bearer tok\n",
           "Bearer t\xc3\xa9k", std::string("Bearer tok\0", 11)}) {
    const absl::StatusOr<Principal> got = table.Authenticate(header, {"c"});
    // A malformed header is not overridden by a mapped certificate.
    EXPECT_EQ(got.status(), absl::UnauthenticatedError(kMalformed)) << "header: " << header;
  }
}

TEST(CredentialTableTest, UnknownTokensAreInvalidWhateverTheyResemble) {
  const std::string token = "0123456789abcdef-secret-token-Z";
  const CredentialTable table = ParseOrDie(token + " team-a admin\nother team-b reader\n");
  ExpectPrincipal(WithHeader(table, "Bearer " + token), "team-a", Role::kAdmin, kViaToken);
  std::string last_byte = token;
  last_byte.back() = 'Y';
  std::string first_byte = token;
  first_byte.front() = '1';
  for (const std::string& wrong :
       {last_byte, first_byte, token.substr(0, token.size() - 1), token + "Z", std::string("Z"),
        std::string("team-a"), std::string("admin")}) {
    const absl::Status status = WithHeader(table, "Bearer " + wrong).status();
    EXPECT_EQ(status, absl::UnauthenticatedError("invalid token")) << wrong;
  }
}

TEST(CredentialTableTest, TokenTakesPrecedenceOverCertificate) {
  const CredentialTable table = ParseOrDie("tok team-a reader\ncert:client team-b admin\n");
  ExpectPrincipal(table.Authenticate("Bearer tok", {"client"}), "team-a", Role::kReader, kViaToken);
  // A wrong token is refused even with a mapped certificate.
  EXPECT_EQ(table.Authenticate("Bearer nope", {"client"}).status(),
            absl::UnauthenticatedError("invalid token"));
  ExpectPrincipal(table.Authenticate(std::nullopt, {"client"}), "team-b", Role::kAdmin,
                  kViaCertificate);
}

TEST(CredentialTableTest, FirstMappedCertificateIdentityWins) {
  const CredentialTable table = ParseOrDie(
      "cert:spiffe://example.org/a team-a reader\n"
      "cert:b.example team-b writer\n");
  ExpectPrincipal(
      table.Authenticate(std::nullopt, {"unmapped", "b.example", "spiffe://example.org/a"}),
      "team-b", Role::kWriter, kViaCertificate);
  ExpectPrincipal(table.Authenticate(std::nullopt, {"spiffe://example.org/a", "b.example"}),
                  "team-a", Role::kReader, kViaCertificate);
  // Identities match exactly.
  EXPECT_FALSE(table.Authenticate(std::nullopt, {"B.example"}).ok());
  EXPECT_FALSE(table.Authenticate(std::nullopt, {"cert:b.example"}).ok());
}

TEST(CredentialTableTest, MissingCredentialsMessages) {
  const CredentialTable tokens_only = ParseOrDie("tok t reader\n");
  EXPECT_EQ(tokens_only.Authenticate(std::nullopt, {}).status(),
            absl::UnauthenticatedError(kMissing));
  EXPECT_EQ(
      tokens_only.Authenticate(std::nullopt, {"some-client"}).status(),
      absl::UnauthenticatedError(absl::StrCat(kMissing,
                                              " (the client certificate presented is mapped to no "
                                              "tenant)")));

  const CredentialTable with_certs = ParseOrDie("tok t reader\ncert:c t reader\n");
  EXPECT_EQ(
      with_certs.Authenticate(std::nullopt, {}).status(),
      absl::UnauthenticatedError(absl::StrCat(kMissing,
                                              " or connect with a client certificate mapped to a "
                                              "tenant")));
  EXPECT_EQ(with_certs.Authenticate(std::nullopt, {"other"}).status(),
            absl::UnauthenticatedError(
                absl::StrCat(kMissing,
                             " or connect with a client certificate mapped to a tenant (the client "
                             "certificate presented is mapped to no tenant)")));
}

struct BadFile {
  std::string contents;
  std::string message;
};

TEST(CredentialTableTest, EveryParseErrorNamesItsLine) {
  const std::string digest = Hex(Sha256("x"));
  const std::vector<BadFile> cases = {
      {"tok team\n", "line 1: expected 3 fields (TOKEN TENANT ROLE), found 2"},
      {"tok\n", "line 1: expected 3 fields (TOKEN TENANT ROLE), found 1"},
      {"# c\n\ntok team reader extra\n", "line 3: expected 3 fields (TOKEN TENANT ROLE), found 4"},
      {"ok t reader\ntok team reader # comment # more\nx y\n",
       "line 3: expected 3 fields (TOKEN TENANT ROLE), found 2"},
      {"sha256:abc t reader\n", "line 1: the sha256 digest must be 64 hexadecimal digits"},
      {"sha256: t reader\n", "line 1: the sha256 digest must be 64 hexadecimal digits"},
      {"sha256:" + digest.substr(1) + "g t reader\n",
       "line 1: the sha256 digest must be 64 hexadecimal digits"},
      {"sha256:" + digest + "0 t reader\n",
       "line 1: the sha256 digest must be 64 hexadecimal digits"},
      {"cert: t reader\n", "line 1: the certificate identity is empty"},
      {"cert:a\x01z t reader\n",
       "line 1: the certificate identity may contain no control characters"},
      {"t\xc3\xa9k t reader\n",
       "line 1: the token may contain only printable ASCII characters other than space "
       "(0x21-0x7e)"},
      {"tok\x7f t reader\n",
       "line 1: the token may contain only printable ASCII characters other than space "
       "(0x21-0x7e)"},
      {"tok -team reader\n",
       "line 1: the tenant (second field) must be 1 to 64 characters of [A-Za-z0-9._-], the first "
       "a letter or a digit"},
      {"tok * reader\n",
       "line 1: the tenant (second field) must be 1 to 64 characters of [A-Za-z0-9._-], the first "
       "a letter or a digit"},
      {"tok team/a reader\n",
       "line 1: the tenant (second field) must be 1 to 64 characters of [A-Za-z0-9._-], the first "
       "a letter or a digit"},
      {"tok " + std::string(65, 'a') + " reader\n",
       "line 1: the tenant (second field) must be 1 to 64 characters of [A-Za-z0-9._-], the first "
       "a letter or a digit"},
      {"tok t Admin\n", "line 1: the role (third field) must be reader, writer or admin"},
      {"tok t root\n", "line 1: the role (third field) must be reader, writer or admin"},
      {"a t reader\nb t reader\na u admin\n",
       "line 3: duplicate token: the same token is on line 1"},
      {"x t reader\nsha256:" + digest + " u admin\n",
       "line 2: duplicate sha256 digest: the same token is on line 1"},
      {"sha256:" + digest + " u admin\n# c\nx t reader\n",
       "line 3: duplicate token: the same token is on line 1"},
      {"cert:c t reader\ncert:d t reader\ncert:c u admin\n",
       "line 3: duplicate certificate identity: also on line 1"},
  };
  for (const BadFile& c : cases) {
    EXPECT_EQ(CredentialTable::Parse(c.contents).status(), absl::InvalidArgumentError(c.message))
        << c.contents;
  }
  // A tenant of exactly 64 characters is valid.
  EXPECT_TRUE(CredentialTable::Parse("tok " + std::string(64, 'a') + " reader\n").ok());
}

TEST(CredentialTableTest, NoParseErrorQuotesAToken) {
  const std::string secret = "Sup3r-Secret-Token-4242";
  const std::vector<std::string> files = {
      secret + " team\n",
      secret + " team reader extra\n",
      secret + " -team reader\n",
      secret + " team root\n",
      "team-a reader " + secret + "\n",     // columns in the wrong order
      "team-a " + secret + " superuser\n",  // a valid tenant name, in the wrong column
      secret + " a reader\n" + secret + " b writer\n",
      secret + "\x01 team reader\n",
  };
  for (const std::string& contents : files) {
    const absl::Status status = CredentialTable::Parse(contents).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << contents;
    EXPECT_FALSE(absl::StrContains(status.message(), secret)) << status;
    EXPECT_FALSE(absl::StrContains(status.message(), "Secret")) << status;
  }
}

TEST(CredentialTableTest, NoAuthenticationErrorQuotesTheHeader) {
  const CredentialTable table = ParseOrDie("right-token t reader\n");
  for (const std::string header :
       {"Bearer wrong-token", "Basic wrong-token", "Bearer  wrong-token", "wrong-token"}) {
    const absl::Status status = table.Authenticate(header, {}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated);
    EXPECT_FALSE(absl::StrContains(status.message(), "wrong-token")) << status;
  }
}

}  // namespace
}  // namespace logp
