// Principals, roles, tenant names, and the whole reader/writer/admin x read/write table.
#include "server/auth/policy.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/auth/principal.h"
#include "server/core/scope.h"

namespace logp {
namespace {

Principal Of(Role role, std::string tenant = "team-a") {
  return Principal{std::move(tenant), role, kViaToken};
}

TEST(PrincipalTest, RoleNamesRoundTrip) {
  EXPECT_EQ(RoleName(Role::kReader), "reader");
  EXPECT_EQ(RoleName(Role::kWriter), "writer");
  EXPECT_EQ(RoleName(Role::kAdmin), "admin");
  for (Role role : {Role::kReader, Role::kWriter, Role::kAdmin}) {
    EXPECT_EQ(ParseRole(RoleName(role)), role);
  }
  for (const char* name : {"", "Reader", "ADMIN", "admin ", "root", "read", "write"}) {
    EXPECT_EQ(ParseRole(name), std::nullopt) << name;
  }
}

TEST(PrincipalTest, DefaultPrincipalIsTheDefaultTenantsAdmin) {
  const Principal p = DefaultPrincipal();
  EXPECT_EQ(p.tenant, "default");
  EXPECT_EQ(p.tenant, kDefaultTenant);
  EXPECT_EQ(p.role, Role::kAdmin);
  EXPECT_EQ(p.via, "none");
}

TEST(PrincipalTest, TenantNames) {
  for (const std::string& name :
       std::vector<std::string>{"a", "0", "team-a", "Team_B.prod", "x-", std::string(64, 'z')}) {
    EXPECT_TRUE(IsValidTenantName(name)) << name;
  }
  for (const std::string& name :
       std::vector<std::string>{"", "*", "-a", ".a", "_a", "a b", "a/b", "a:b", "t\xc3\xa9",
                                std::string(65, 'z'), std::string("a\0b", 3)}) {
    EXPECT_FALSE(IsValidTenantName(name)) << name;
  }
}

TEST(PolicyTest, RequiredRoles) {
  EXPECT_EQ(RequiredRole(Access::kRead), Role::kReader);
  EXPECT_EQ(RequiredRole(Access::kWrite), Role::kWriter);
  EXPECT_EQ(AccessName(Access::kRead), "read");
  EXPECT_EQ(AccessName(Access::kWrite), "write");
}

TEST(PolicyTest, EveryRoleAndAccess) {
  struct Case {
    Role role;
    Access access;
    absl::Status expected;
  };
  const Case cases[] = {
      {Role::kReader, Access::kRead, absl::OkStatus()},
      {Role::kReader, Access::kWrite,
       absl::PermissionDeniedError(
           "role reader may not call CreateJob (it needs the writer role)")},
      {Role::kWriter, Access::kRead, absl::OkStatus()},
      {Role::kWriter, Access::kWrite, absl::OkStatus()},
      {Role::kAdmin, Access::kRead, absl::OkStatus()},
      {Role::kAdmin, Access::kWrite, absl::OkStatus()},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Authorize(Of(c.role), c.access, "CreateJob"), c.expected)
        << RoleName(c.role) << " " << AccessName(c.access);
  }
  EXPECT_EQ(Authorize(Of(Role::kReader), Access::kWrite, "UploadDataset"),
            absl::PermissionDeniedError(
                "role reader may not call UploadDataset (it needs the writer role)"));
}

TEST(PolicyTest, AnUnknownRoleIsDeniedEverything) {
  const Principal broken = Of(static_cast<Role>(7));
  EXPECT_EQ(Authorize(broken, Access::kRead, "GetJob"),
            absl::PermissionDeniedError("role unknown may not call GetJob (it needs the reader "
                                        "role)"));
  EXPECT_EQ(Authorize(broken, Access::kWrite, "CreateJob").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(ScopeOf(broken).all_tenants());
}

TEST(PolicyTest, ScopeOfReaderAndWriterIsTheirTenant) {
  for (Role role : {Role::kReader, Role::kWriter}) {
    const Scope scope = ScopeOf(Of(role, "team-a"));
    EXPECT_EQ(scope.tenant(), "team-a");
    EXPECT_FALSE(scope.all_tenants());
    EXPECT_TRUE(scope.Sees("team-a"));
    EXPECT_FALSE(scope.Sees("team-b"));
    EXPECT_FALSE(scope.Sees(""));  // an object of the default tenant
    EXPECT_EQ(scope.ListFilter(), "team-a");
  }
}

TEST(PolicyTest, ScopeOfAdminIsEveryTenantCreatingForItsOwn) {
  const Scope scope = ScopeOf(Of(Role::kAdmin, "ops"));
  EXPECT_EQ(scope.tenant(), "ops");
  EXPECT_TRUE(scope.all_tenants());
  EXPECT_TRUE(scope.Sees("team-a"));
  EXPECT_TRUE(scope.Sees(""));
  EXPECT_EQ(scope.ListFilter(), "");
}

TEST(PolicyTest, WithoutAuthenticationEverythingIsAllowed) {
  const Principal p = DefaultPrincipal();
  EXPECT_TRUE(Authorize(p, Access::kRead, "ListJobs").ok());
  EXPECT_TRUE(Authorize(p, Access::kWrite, "CreateJob").ok());
  const Scope scope = ScopeOf(p);
  EXPECT_TRUE(scope.all_tenants());
  EXPECT_EQ(scope.tenant(), kDefaultTenant);
  EXPECT_TRUE(scope.Sees(""));
}

}  // namespace
}  // namespace logp
