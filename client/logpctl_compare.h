// logpctl models compare A B --dataset=ID: the paired comparison of two published models.
#ifndef LOGP_CLIENT_LOGPCTL_COMPARE_H_
#define LOGP_CLIENT_LOGPCTL_COMPARE_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"

namespace logp::logpctl {

// Runs the command on `args` (the two model ids) with the flags --dataset, --importance_samples,
// --seed and --json; `client` connects on first use. Returns the exit code: 0, or 2 for a usage
// mistake (printed to stderr); an RPC's error as a status.
absl::StatusOr<int> ModelsCompare(const std::vector<std::string>& args,
                                  const std::function<absl::StatusOr<Client*>()>& client);

}  // namespace logp::logpctl

#endif  // LOGP_CLIENT_LOGPCTL_COMPARE_H_
