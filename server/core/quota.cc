#include "server/core/quota.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace logp {

absl::Status QuotaExceededError(const std::string& tenant, const std::string& quota,
                                const std::string& limit, const std::string& in_use,
                                const std::string& asked) {
  return absl::ResourceExhaustedError(absl::StrCat("tenant '", tenant, "' is at its quota ", quota,
                                                   ": limit ", limit, ", in use ", in_use,
                                                   asked.empty() ? "" : ", ", asked));
}

std::string QuotaBytes(int64_t bytes) {
  const char* const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " bytes");
  return absl::StrFormat("%d bytes (%.1f %s)", bytes, value, units[unit]);
}

}  // namespace logp
