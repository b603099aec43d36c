// Authentication: the one place where a call's credentials become a Principal, and where every
// mutating call is audited. Every method of the logp services goes through it before its handler
// runs (CheckedService::Admit), the streaming ones included: gRPC 1.51's AuthMetadataProcessor is
// not used, because it aborts the process on insecure credentials (grpc #17942) and cannot see
// the method called (grpc #28807).
//
// Credentials: the request header `authorization: Bearer TOKEN` (server/auth/credentials.h), or,
// with mutual TLS, the verified client certificate's identities (PeerCertificateIdentities,
// server/grpc/transport.h) mapped by `cert:IDENTITY` lines. Without a tokens file every call is
// DefaultPrincipal() (tenant "default", role admin): the embedded default.
//
// Thread-safety: all methods may be called concurrently.
#ifndef LOGP_SERVER_GRPC_AUTHENTICATION_H_
#define LOGP_SERVER_GRPC_AUTHENTICATION_H_

#include <grpcpp/grpcpp.h>

#include <string>
#include <string_view>

#include "server/auth/audit.h"
#include "server/auth/credentials.h"
#include "server/auth/policy.h"
#include "server/auth/principal.h"

namespace logp {

class Authentication {
 public:
  // `tokens` null: no authentication. `audit` null: GlogAuditSink. Both must outlive this.
  Authentication(AuthTokensFile* tokens, AuditSink* audit);

  bool enabled() const { return tokens_ != nullptr; }

  // The principal of the call `ctx`, allowed `access` to `method` (its short name, e.g.
  // "CreateJob"); UNAUTHENTICATED for missing or bad credentials (more than one authorization
  // header included), PERMISSION_DENIED for a role without the right.
  grpc::Status Admit(const grpc::ServerContextBase& ctx, Access access, std::string_view method,
                     Principal* principal) const;

  // Writes the audit record of a call that wanted `access` (only kWrite calls are audited):
  // `principal` as Admit left it (empty tenant when it was refused), the resource named or
  // created, and the status the client gets.
  void Audit(Access access, std::string_view method, const Principal& principal,
             const std::string& resource_id, const grpc::Status& outcome) const;

 private:
  AuthTokensFile* const tokens_;
  GlogAuditSink glog_audit_;
  AuditSink* const audit_;
};

// The gRPC name of a status code: "OK", "NOT_FOUND", ...
std::string StatusCodeName(grpc::StatusCode code);

}  // namespace logp

#endif  // LOGP_SERVER_GRPC_AUTHENTICATION_H_
