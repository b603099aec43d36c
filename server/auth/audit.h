// The audit log: one JSON line per authenticated call (who, what, on which resource, with which
// outcome). A record has no field for a credential, so no token can reach the log.
#ifndef LOGP_SERVER_AUTH_AUDIT_H_
#define LOGP_SERVER_AUTH_AUDIT_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace logp {

struct AuditRecord {
  absl::Time time;
  std::string tenant;
  std::string role;         // RoleName()
  std::string method;       // e.g. "CreateJob"
  std::string resource_id;  // the dataset, job or model named or created; empty if none
  std::string code;         // the gRPC code name of the outcome: "OK", "NOT_FOUND", ...
  std::string via;          // how the caller was authenticated: "token", "certificate", "none"
};

// `s` as a JSON string, quotes included: `"` and `\` are escaped, control characters are written
// \b \f \n \r \t or \u00XX, other valid UTF-8 is kept as it is and each byte of invalid UTF-8
// becomes \ufffd, so the result is always valid JSON (and valid UTF-8).
std::string JsonString(std::string_view s);

// One line of JSON (no newline), the fields in this order:
//   {"time":"2024-05-06T07:08:09.123Z","tenant":"team-a","role":"writer","method":"CreateJob",
//    "resource_id":"job-42","code":"OK","via":"token"}
// time is RFC 3339 in UTC with milliseconds (truncated).
std::string FormatAuditLine(const AuditRecord& record);

// Where audit records go. Implementations are thread-safe.
class AuditSink {
 public:
  virtual ~AuditSink() = default;
  virtual void Write(const AuditRecord& record) = 0;
};

// LOG(INFO) << "audit " << FormatAuditLine(record).
class GlogAuditSink final : public AuditSink {
 public:
  void Write(const AuditRecord& record) override;
};

// Keeps every record, for tests.
class RecordingAuditSink final : public AuditSink {
 public:
  void Write(const AuditRecord& record) override;
  std::vector<AuditRecord> records() const;
  // FormatAuditLine of each record.
  std::vector<std::string> lines() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<AuditRecord> records_ ABSL_GUARDED_BY(mu_);
};

}  // namespace logp

#endif  // LOGP_SERVER_AUTH_AUDIT_H_
