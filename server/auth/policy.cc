#include "server/auth/policy.h"

#include "absl/strings/str_cat.h"
#include "server/auth/config_text.h"

namespace logp {
namespace {

// Roles are ordered: each has the rights of those before it.
int Rank(Role role) {
  switch (role) {
    case Role::kReader:
      return 0;
    case Role::kWriter:
      return 1;
    case Role::kAdmin:
      return 2;
  }
  return -1;
}

}  // namespace

std::string_view AccessName(Access access) {
  switch (access) {
    case Access::kRead:
      return "read";
    case Access::kWrite:
      return "write";
  }
  return "unknown";
}

Role RequiredRole(Access access) {
  switch (access) {
    case Access::kRead:
      return Role::kReader;
    case Access::kWrite:
      return Role::kWriter;
  }
  return Role::kAdmin;  // an unknown access needs the most
}

absl::Status Authorize(const Principal& principal, Access access, std::string_view method) {
  const Role required = RequiredRole(access);
  if (Rank(principal.role) >= Rank(required)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("role ", ToAbsl(RoleName(principal.role)), " may not call ", ToAbsl(method),
                   " (it needs the ", ToAbsl(RoleName(required)), " role)"));
}

Scope ScopeOf(const Principal& principal) {
  if (principal.role == Role::kAdmin) return Scope::AllTenants(principal.tenant);
  return Scope::Tenant(principal.tenant);
}

}  // namespace logp
