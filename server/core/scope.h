// Tenants in the core: every dataset, job and model belongs to the tenant that created it
// (its `tenant` field; empty, as in catalogues written before tenants, means kDefaultTenant).
// A Scope says whose objects one call may see and which tenant it creates for.
#ifndef LOGP_SERVER_CORE_SCOPE_H_
#define LOGP_SERVER_CORE_SCOPE_H_

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace logp {

// The tenant of every call when the server runs without authentication, and the owner of every
// object stored before tenants existed.
inline constexpr char kDefaultTenant[] = "default";

// The owner named by an object's `tenant` field.
inline std::string OwnerOf(const std::string& tenant_field) {
  return tenant_field.empty() ? std::string(kDefaultTenant) : tenant_field;
}

// NOT_FOUND "<what> '<id>' not found": the one answer for an unknown id and for another tenant's
// object alike, so that the message does not tell them apart.
inline absl::Status UnknownIdError(const char* what, const std::string& id) {
  return absl::NotFoundError(absl::StrCat(what, " '", id, "' not found"));
}

class Scope {
 public:
  // Sees only `tenant`'s objects and creates for it.
  static Scope Tenant(std::string tenant) { return Scope(std::move(tenant), false); }
  // Sees every tenant's objects (role admin) and creates for `tenant`.
  static Scope AllTenants(std::string tenant = kDefaultTenant) {
    return Scope(std::move(tenant), true);
  }

  // The tenant new objects belong to.
  const std::string& tenant() const { return tenant_; }
  bool all_tenants() const { return all_tenants_; }
  // Whether an object whose `tenant` field is `tenant_field` is visible.
  bool Sees(const std::string& tenant_field) const {
    return all_tenants_ || OwnerOf(tenant_field) == tenant_;
  }
  // The tenant a listing is filtered by; empty for every tenant.
  std::string ListFilter() const { return all_tenants_ ? std::string() : tenant_; }

 private:
  Scope(std::string tenant, bool all) : tenant_(std::move(tenant)), all_tenants_(all) {}
  std::string tenant_;
  bool all_tenants_;
};

}  // namespace logp

#endif  // LOGP_SERVER_CORE_SCOPE_H_
