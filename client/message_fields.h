// Setting a protobuf message's field from the text of a command-line flag (logpctl's model
// hyper-parameters). No gRPC.
#ifndef LOGP_CLIENT_MESSAGE_FIELDS_H_
#define LOGP_CLIENT_MESSAGE_FIELDS_H_

#include <string>

#include "absl/status/status.h"
#include "google/protobuf/message.h"

namespace logp {

// Sets field `name` of `msg` from its text `value`: an int32, uint64, double or bool (numbers,
// true/false), or an enum word such as "random" for VARIABLE_ORDER_RANDOM. INVALID_ARGUMENT
// naming --name for a field `msg` does not have (pointing at --model_json), an unknown enum word
// (listing the words) or a value that does not parse.
absl::Status SetField(google::protobuf::Message* msg, const std::string& name,
                      const std::string& value);

}  // namespace logp

#endif  // LOGP_CLIENT_MESSAGE_FIELDS_H_
