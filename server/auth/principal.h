// Who a call is: the tenant it acts for, the role it holds and how it was authenticated.
#ifndef LOGP_SERVER_AUTH_PRINCIPAL_H_
#define LOGP_SERVER_AUTH_PRINCIPAL_H_

#include <optional>
#include <string>
#include <string_view>

namespace logp {

// What a principal may do (server/auth/policy.h decides): a reader reads its tenant's
// resources; a writer reads and writes them; an admin reads and writes every tenant's.
enum class Role { kReader, kWriter, kAdmin };

// "reader", "writer" or "admin".
std::string_view RoleName(Role role);
// The role named exactly (lower case) "reader", "writer" or "admin"; nullopt otherwise.
std::optional<Role> ParseRole(std::string_view name);

// How a principal was authenticated, for the audit log.
inline constexpr char kViaToken[] = "token";
inline constexpr char kViaCertificate[] = "certificate";
inline constexpr char kViaNone[] = "none";  // the server runs without authentication

struct Principal {
  std::string tenant;
  Role role = Role::kReader;
  // kViaToken, kViaCertificate or kViaNone.
  std::string via;
};

// The principal of every call when the server runs without --auth_tokens_file: tenant
// kDefaultTenant ("default"), role admin, via "none".
Principal DefaultPrincipal();

// A tenant name is 1 to 64 characters of [A-Za-z0-9._-], the first a letter or a digit. So "*"
// (the quotas file's "every tenant") is no tenant name.
bool IsValidTenantName(std::string_view name);
// The rule above, for messages.
inline constexpr char kTenantNameRule[] =
    "1 to 64 characters of [A-Za-z0-9._-], the first a letter or a digit";

}  // namespace logp

#endif  // LOGP_SERVER_AUTH_PRINCIPAL_H_
