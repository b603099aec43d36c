#include "server/grpc/authentication.h"

#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "server/grpc/server.h"
#include "server/grpc/transport.h"

namespace logp {

Authentication::Authentication(AuthTokensFile* tokens, AuditSink* audit)
    : tokens_(tokens), audit_(audit != nullptr ? audit : &glog_audit_) {}

grpc::Status Authentication::Admit(const grpc::ServerContextBase& ctx, Access access,
                                   std::string_view method, Principal* principal) const {
  if (tokens_ == nullptr) {
    *principal = DefaultPrincipal();
    return grpc::Status::OK;
  }
  std::optional<std::string_view> authorization;
  const auto& metadata = ctx.client_metadata();
  const auto [first, last] = metadata.equal_range("authorization");
  for (auto it = first; it != last; ++it) {
    if (authorization) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "more than one authorization header: send exactly one");
    }
    authorization = std::string_view(it->second.data(), it->second.size());
  }
  std::vector<std::string> identities;
  if (const std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context(); auth) {
    identities = PeerCertificateIdentities(*auth);
  }
  absl::StatusOr<Principal> who = tokens_->Authenticate(authorization, identities);
  if (!who.ok()) return ToGrpcStatus(who.status());
  if (absl::Status allowed = Authorize(*who, access, method); !allowed.ok()) {
    *principal = *who;
    return ToGrpcStatus(allowed);
  }
  *principal = *std::move(who);
  return grpc::Status::OK;
}

void Authentication::Audit(Access access, std::string_view method, const Principal& principal,
                           const std::string& resource_id, const grpc::Status& outcome) const {
  if (access != Access::kWrite) return;
  AuditRecord record;
  record.time = absl::Now();
  record.tenant = principal.tenant;
  record.role = principal.tenant.empty() ? "" : std::string(RoleName(principal.role));
  record.method = std::string(method);
  record.resource_id = resource_id;
  record.code = StatusCodeName(outcome.error_code());
  record.via = principal.via;
  audit_->Write(record);
}

std::string StatusCodeName(grpc::StatusCode code) {
  // gRPC's and Abseil's codes are the same numbers with the same names.
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

}  // namespace logp
