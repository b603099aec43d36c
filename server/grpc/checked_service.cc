#include "server/grpc/checked_service.h"

#include <glog/logging.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "proto/cc/field_limits.h"

namespace logp {

grpc::Status UnparsableRequest(const google::protobuf::Descriptor* type, int64_t index) {
  std::string which = index < 0 ? "the request" : absl::StrCat("message ", index, " of the stream");
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat(which, " does not parse as ", type->full_name(),
                                   " (not valid protobuf, or a string field that is not UTF-8)"));
}

bool ParseMessage(grpc::ByteBuffer* bytes, google::protobuf::Message* message) {
  grpc::ProtoBufferReader reader(bytes);
  if (!reader.status().ok()) return false;
  return message->ParseFromZeroCopyStream(&reader);
}

grpc::Status CheckFieldLimits(const google::protobuf::Message& request) {
  absl::Status st = CheckStringLengths(request);
  if (st.ok()) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(st.message()));
}

std::string AuditedResourceId(const google::protobuf::Message* request,
                              const google::protobuf::Message* response) {
  for (const google::protobuf::Message* m : {request, response}) {
    if (m == nullptr) continue;
    const google::protobuf::FieldDescriptor* id = m->GetDescriptor()->FindFieldByName("id");
    if (id == nullptr || id->type() != google::protobuf::FieldDescriptor::TYPE_STRING ||
        id->is_repeated()) {
      continue;
    }
    return m->GetReflection()->GetString(*m, id);
  }
  return "";
}

std::vector<std::string> CheckedService::Missing() const {
  std::vector<std::string> missing;
  for (int i = 0; i < service_->method_count(); ++i) {
    const std::string& name = service_->method(i)->name();
    if (std::find(added_.begin(), added_.end(), name) == added_.end()) missing.push_back(name);
  }
  return missing;
}

int CheckedService::Add(const std::string& method, grpc::internal::RpcMethod::RpcType type,
                        const google::protobuf::Descriptor* request_type,
                        grpc::internal::MethodHandler* handler) {
  const google::protobuf::MethodDescriptor* m = service_->FindMethodByName(method);
  CHECK(m != nullptr) << service_->full_name() << " has no method " << method;
  CHECK(std::find(added_.begin(), added_.end(), method) == added_.end()) << method << " twice";
  const grpc::internal::RpcMethod::RpcType declared =
      m->client_streaming() ? (m->server_streaming() ? grpc::internal::RpcMethod::BIDI_STREAMING
                                                     : grpc::internal::RpcMethod::CLIENT_STREAMING)
                            : (m->server_streaming() ? grpc::internal::RpcMethod::SERVER_STREAMING
                                                     : grpc::internal::RpcMethod::NORMAL_RPC);
  CHECK_EQ(declared, type) << method << " is added as the wrong kind of method";
  CHECK_EQ(m->input_type(), request_type) << method << " is added with the wrong request type";
  paths_.push_back(absl::StrCat("/", service_->full_name(), "/", method));
  added_.push_back(method);
  AddMethod(new grpc::internal::RpcServiceMethod(paths_.back().c_str(), type, handler));
  return static_cast<int>(added_.size()) - 1;
}

}  // namespace logp
