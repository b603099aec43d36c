// Authorization: what a principal's role allows, and whose resources it sees.
//
//   role     read   write   every tenant's resources
//   reader   yes    no      no
//   writer   yes    yes     no
//   admin    yes    yes     yes
#ifndef LOGP_SERVER_AUTH_POLICY_H_
#define LOGP_SERVER_AUTH_POLICY_H_

#include <string_view>

#include "absl/status/status.h"
#include "server/auth/principal.h"
#include "server/core/scope.h"

namespace logp {

// What a method does: kRead only looks (Get, List, Watch, Score, Evaluate, Sample); kWrite
// creates, changes or deletes (uploads, CreateJob, CancelJob, deletions).
enum class Access { kRead, kWrite };

// "read" or "write".
std::string_view AccessName(Access access);
// The least role allowed `access`: reader for kRead, writer for kWrite.
Role RequiredRole(Access access);

// OK when `principal`'s role allows `access`; otherwise PERMISSION_DENIED
// "role reader may not call CreateJob (it needs the writer role)". `method` is the short name of
// the method called, for the message.
absl::Status Authorize(const Principal& principal, Access access, std::string_view method);

// Whose objects `principal` sees: every tenant's for an admin (creating for its own tenant),
// its own tenant's otherwise.
Scope ScopeOf(const Principal& principal);

}  // namespace logp

#endif  // LOGP_SERVER_AUTH_POLICY_H_
