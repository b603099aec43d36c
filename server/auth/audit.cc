#include "server/auth/audit.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"

namespace logp {
namespace {

// The length of the valid UTF-8 sequence at the start of `s` (not empty), or 0 if there is none
// (a stray continuation byte, an overlong form, a surrogate, a code point above U+10FFFF or a
// truncated sequence).
size_t Utf8SequenceLength(std::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const auto continuation = [&](size_t i, uint8_t low = 0x80, uint8_t high = 0xbf) {
    return i < s.size() && byte(i) >= low && byte(i) <= high;
  };
  const uint8_t b0 = byte(0);
  if (b0 < 0x80) return 1;
  if (b0 >= 0xc2 && b0 <= 0xdf) return continuation(1) ? 2 : 0;
  if (b0 >= 0xe0 && b0 <= 0xef) {
    const uint8_t low = b0 == 0xe0 ? 0xa0 : 0x80;   // no overlong forms
    const uint8_t high = b0 == 0xed ? 0x9f : 0xbf;  // no surrogates
    return continuation(1, low, high) && continuation(2) ? 3 : 0;
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    const uint8_t low = b0 == 0xf0 ? 0x90 : 0x80;   // no overlong forms
    const uint8_t high = b0 == 0xf4 ? 0x8f : 0xbf;  // nothing above U+10FFFF
    return continuation(1, low, high) && continuation(2) && continuation(3) ? 4 : 0;
  }
  return 0;
}

}  // namespace

std::string JsonString(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  while (!s.empty()) {
    const char c = s[0];
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<uint8_t>(c) < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", static_cast<unsigned>(c));
        } else {
          const size_t n = Utf8SequenceLength(s);
          if (n == 0) {
            out += "\\ufffd";
            s.remove_prefix(1);
          } else {
            out.append(s.data(), n);
            s.remove_prefix(n);
          }
          continue;
        }
    }
    s.remove_prefix(1);
  }
  out.push_back('"');
  return out;
}

std::string FormatAuditLine(const AuditRecord& record) {
  const std::string time =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", record.time, absl::UTCTimeZone());
  return absl::StrCat(
      "{\"time\":", JsonString(time), ",\"tenant\":", JsonString(record.tenant),
      ",\"role\":", JsonString(record.role), ",\"method\":", JsonString(record.method),
      ",\"resource_id\":", JsonString(record.resource_id), ",\"code\":", JsonString(record.code),
      ",\"via\":", JsonString(record.via), "}");
}

void GlogAuditSink::Write(const AuditRecord& record) {
  LOG(INFO) << "audit " << FormatAuditLine(record);
}

void RecordingAuditSink::Write(const AuditRecord& record) {
  absl::MutexLock lock(&mu_);
  records_.push_back(record);
}

std::vector<AuditRecord> RecordingAuditSink::records() const {
  absl::MutexLock lock(&mu_);
  return records_;
}

std::vector<std::string> RecordingAuditSink::lines() const {
  std::vector<std::string> lines;
  for (const AuditRecord& record : records()) lines.push_back(FormatAuditLine(record));
  return lines;
}

}  // namespace logp
