// logpctl's flags for how to reach logpd: TLS and the bearer token.
#ifndef LOGP_CLIENT_CONNECTION_FLAGS_H_
#define LOGP_CLIENT_CONNECTION_FLAGS_H_

#include "client/client.h"

namespace logp {

// ClientOptions with the transport fields set from --tls, --tls_ca_file, --tls_cert_file,
// --tls_key_file, --tls_server_name and --token (when not given: the environment variable
// LOGP_TOKEN; a given --token wins, even an empty one). The other fields keep their defaults.
ClientOptions ConnectionOptionsFromFlags();

}  // namespace logp

#endif  // LOGP_CLIENT_CONNECTION_FLAGS_H_
