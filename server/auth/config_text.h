// The line syntax the tokens file and the quotas file share (fields separated by spaces or
// tabs, `#` comments, blank lines), and a string_view bridge. Internal to server/auth.
#ifndef LOGP_SERVER_AUTH_CONFIG_TEXT_H_
#define LOGP_SERVER_AUTH_CONFIG_TEXT_H_

#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"

namespace logp {

struct ConfigLine {
  int number;  // 1-based
  std::vector<std::string_view> fields;
};

// The lines of `contents` that have at least one field, split into fields. Lines end at "\n"
// (a "\r" before it is dropped, so CRLF files read alike); fields are separated by runs of
// spaces and tabs; a `#` that begins a field (at the start of a line or after a space or a tab)
// starts a comment that runs to the end of the line. A `#` inside a field is part of it.
// The views point into `contents`.
std::vector<ConfigLine> SplitConfigLines(std::string_view contents);

// Debian's Abseil 20220623 has its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0),
// which std::string_view does not convert to.
inline absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

}  // namespace logp

#endif  // LOGP_SERVER_AUTH_CONFIG_TEXT_H_
