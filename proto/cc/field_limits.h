// Length limits of the string fields of every request, checked at the API boundary so that no
// unbounded client input is stored, looked up or echoed in an error message.
#ifndef LOGP_PROTO_CC_FIELD_LIMITS_H_
#define LOGP_PROTO_CC_FIELD_LIMITS_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace logp {

// Identifiers: string fields named "id", "*_id" or "*_token" (server-issued ids, client-chosen
// request ids, page tokens).
inline constexpr size_t kMaxIdBytes = 128;
// Every other string field (names); DatasetHeader.name has its own, lower limit (256 bytes).
inline constexpr size_t kMaxStringBytes = 1024;

// INVALID_ARGUMENT "<field path> is longer than N bytes (M bytes)" for the first string field
// of `message` (recursively, in set fields) over its limit; bytes fields are not limited here.
absl::Status CheckStringLengths(const google::protobuf::Message& message);

// `value` cut to at most `max_bytes` bytes (at a UTF-8 character boundary, marked with "..."), for
// quoting client input in a message.
std::string Truncated(absl::string_view value, size_t max_bytes = 64);

}  // namespace logp

#endif  // LOGP_PROTO_CC_FIELD_LIMITS_H_
