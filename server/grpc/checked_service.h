// CheckedService: serves the typed methods of a service implementation so that a request whose
// bytes do not parse as its message gets INVALID_ARGUMENT, on every kind of method.
//
// On its own, gRPC 1.51 answers such a request with INTERNAL on the sync API (the status of its
// GenericDeserialize), with UNIMPLEMENTED on the callback API, and a sync client-streaming
// ServerReader takes such a message for the end of the stream (an upload cut by a bad message
// looks complete). A CheckedService registers the method names of the generated service (clients
// and server reflection see no difference) with gRPC's own handlers around the implementation's
// typed methods, and changes only what happens to bytes that do not parse:
// - sync unary and server-streaming: the status of the failed parse becomes INVALID_ARGUMENT;
// - async server-streaming: the server parses the request bytes itself (AsyncServerStreaming);
// - sync client-streaming: the method reads raw messages through a ParsingReader.
// The typed methods keep their generated signatures (apart from client streaming) and never see
// a request that did not parse, nor one with a string field over its length limit
// (proto/cc/field_limits.h: ids 128 bytes, other strings 1 KiB), which is INVALID_ARGUMENT too.
//
// Every method is added with the Access it needs; before the typed method runs, the call is
// admitted by the server's Authentication (authentication.h): UNAUTHENTICATED or
// PERMISSION_DENIED stop it there, and the typed method receives the caller's Principal. Each
// call that needs kWrite is audited with its outcome, admitted or not. (A request that does not
// parse is refused with INVALID_ARGUMENT before that: nothing of it runs.)
//
// It also keeps the server's InFlightCalls: a sync call counts there until gRPC has sent its
// status (an async method's server counts its calls itself), and once the server is shutting down a
// call that starts is refused with UNAVAILABLE before its method runs.
//
// Not thread-safe while methods are added; immutable (and shareable by gRPC's threads) after.
#ifndef LOGP_SERVER_GRPC_CHECKED_SERVICE_H_
#define LOGP_SERVER_GRPC_CHECKED_SERVICE_H_

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/method_handler.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/auth/policy.h"
#include "server/auth/principal.h"
#include "server/grpc/authentication.h"
#include "server/grpc/in_flight_calls.h"

namespace logp {

// INVALID_ARGUMENT "the request does not parse as <type> ..."; `index` >= 0 names the message of
// a stream (0 = first).
grpc::Status UnparsableRequest(const google::protobuf::Descriptor* type, int64_t index = -1);

// Parses `bytes` (consumed) into `message`; false unless they are a valid serialization of it.
// A proto3 string field that is not UTF-8 does not parse.
bool ParseMessage(grpc::ByteBuffer* bytes, google::protobuf::Message* message);

// OK, or INVALID_ARGUMENT for a string field over its length limit (proto/cc/field_limits.h).
grpc::Status CheckFieldLimits(const google::protobuf::Message& request);

// The resource a call names or made, for the audit log: the request's string field `id` if it
// has one, else the response's (null: none).
std::string AuditedResourceId(const google::protobuf::Message* request,
                              const google::protobuf::Message* response);

// Typed reading of a client stream served with raw messages.
template <class Request>
class ParsingReader {
 public:
  explicit ParsingReader(grpc::ServerReader<grpc::ByteBuffer>* raw) : raw_(raw) {}

  // Reads the next message into `message`; false at the end of the stream. A message that does
  // not parse (or breaks a field limit) is returned cleared (true, so that a reader which stops at
  // the end of the stream cannot take a cut stream for a complete one), status() becomes
  // INVALID_ARGUMENT naming it, and every later Read returns false: the caller must check status()
  // and refuse the stream.
  bool Read(Request* message) {
    if (!status_.ok()) return false;
    grpc::ByteBuffer bytes;
    if (!raw_->Read(&bytes)) return false;
    const int64_t index = next_index_++;
    if (!ParseMessage(&bytes, message)) {
      status_ = UnparsableRequest(Request::descriptor(), index);
    } else if (grpc::Status limits = CheckFieldLimits(*message); !limits.ok()) {
      status_ = grpc::Status(limits.error_code(), "message " + std::to_string(index) +
                                                      " of the stream: " + limits.error_message());
    } else {
      return true;
    }
    message->Clear();
    return true;
  }
  // OK, or INVALID_ARGUMENT once a message did not parse or broke a field limit.
  const grpc::Status& status() const { return status_; }

 private:
  grpc::ServerReader<grpc::ByteBuffer>* const raw_;
  int64_t next_index_ = 0;
  grpc::Status status_;
};

namespace checked_internal {

// A sync unary or server-streaming handler (`typed`, owned) whose failed parses are
// INVALID_ARGUMENT instead of INTERNAL.
class ParseStatusHandler final : public grpc::internal::MethodHandler {
 public:
  ParseStatusHandler(grpc::internal::MethodHandler* typed,
                     const google::protobuf::Descriptor* request_type)
      : typed_(typed), request_type_(request_type) {}
  void RunHandler(const HandlerParameter& param) override { typed_->RunHandler(param); }
  void* Deserialize(grpc_call* call, grpc_byte_buffer* req, grpc::Status* status,
                    void** handler_data) override {
    void* request = typed_->Deserialize(call, req, status, handler_data);
    if (!status->ok()) *status = UnparsableRequest(request_type_);
    return request;
  }

 private:
  const std::unique_ptr<grpc::internal::MethodHandler> typed_;
  const google::protobuf::Descriptor* const request_type_;
};

// A sync handler (`inner`, owned) whose calls count in `calls` while they run and until their
// status is sent: gRPC's sync RunHandler sends it and waits.
class CountedHandler final : public grpc::internal::MethodHandler {
 public:
  CountedHandler(grpc::internal::MethodHandler* inner, InFlightCalls* calls,
                 InFlightCalls::AtShutdown at_shutdown)
      : inner_(inner), calls_(calls), at_shutdown_(at_shutdown) {}
  void RunHandler(const HandlerParameter& param) override {
    calls_->Add(at_shutdown_);
    inner_->RunHandler(param);
    calls_->Remove(at_shutdown_);
  }
  void* Deserialize(grpc_call* call, grpc_byte_buffer* req, grpc::Status* status,
                    void** handler_data) override {
    return inner_->Deserialize(call, req, status, handler_data);
  }

 private:
  const std::unique_ptr<grpc::internal::MethodHandler> inner_;
  InFlightCalls* const calls_;
  const InFlightCalls::AtShutdown at_shutdown_;
};

}  // namespace checked_internal

class CheckedService final : public grpc::Service {
 public:
  using AtShutdown = InFlightCalls::AtShutdown;

  // Serves methods of `service` (e.g. v1::DatasetService's descriptor); add each with the call
  // that fits its kind and the access it needs. `calls` and `auth` must outlive the service.
  CheckedService(const google::protobuf::ServiceDescriptor* service, InFlightCalls* calls,
                 const Authentication* auth)
      : service_(service), calls_(calls), auth_(auth) {}

  template <class Impl, class Request, class Response>
  void Unary(const std::string& method, Access access, Impl* impl,
             grpc::Status (Impl::*fn)(grpc::ServerContext*, const Principal&, const Request*,
                                      Response*),
             AtShutdown at_shutdown = AtShutdown::kFinish) {
    Add(method, grpc::internal::RpcMethod::NORMAL_RPC, Request::descriptor(),
        Counted(new checked_internal::ParseStatusHandler(
                    new grpc::internal::RpcMethodHandler<Impl, Request, Response>(
                        [this, fn, access, method](Impl* impl, grpc::ServerContext* ctx,
                                                   const Request* request, Response* response) {
                          Principal who;
                          grpc::Status status = Admit(*ctx, access, method, request, &who);
                          if (status.ok()) status = (impl->*fn)(ctx, who, request, response);
                          if (access == Access::kWrite)
                            auth_->Audit(
                                access, method, who,
                                AuditedResourceId(request, status.ok() ? response : nullptr),
                                status);
                          return status;
                        },
                        impl),
                    Request::descriptor()),
                at_shutdown));
  }

  template <class Impl, class Request, class Response>
  void ServerStreaming(const std::string& method, Access access, Impl* impl,
                       grpc::Status (Impl::*fn)(grpc::ServerContext*, const Principal&,
                                                const Request*, grpc::ServerWriter<Response>*),
                       AtShutdown at_shutdown = AtShutdown::kFinish) {
    Add(method, grpc::internal::RpcMethod::SERVER_STREAMING, Request::descriptor(),
        Counted(new checked_internal::ParseStatusHandler(
                    new grpc::internal::ServerStreamingHandler<Impl, Request, Response>(
                        [this, fn, access, method](Impl* impl, grpc::ServerContext* ctx,
                                                   const Request* request,
                                                   grpc::ServerWriter<Response>* writer) {
                          Principal who;
                          grpc::Status status = Admit(*ctx, access, method, request, &who);
                          if (status.ok()) status = (impl->*fn)(ctx, who, request, writer);
                          if (access == Access::kWrite)
                            auth_->Audit(access, method, who, AuditedResourceId(request, nullptr),
                                         status);
                          return status;
                        },
                        impl),
                    Request::descriptor()),
                at_shutdown));
  }

  // `fn` reads the stream's raw messages, typically through a ParsingReader<Request>; the call is
  // admitted before any is read.
  template <class Request, class Impl, class Response>
  void ClientStreaming(const std::string& method, Access access, Impl* impl,
                       grpc::Status (Impl::*fn)(grpc::ServerContext*, const Principal&,
                                                grpc::ServerReader<grpc::ByteBuffer>*, Response*),
                       AtShutdown at_shutdown = AtShutdown::kFinish) {
    Add(method, grpc::internal::RpcMethod::CLIENT_STREAMING, Request::descriptor(),
        Counted(new grpc::internal::ClientStreamingHandler<Impl, grpc::ByteBuffer, Response>(
                    [this, fn, access, method](Impl* impl, grpc::ServerContext* ctx,
                                               grpc::ServerReader<grpc::ByteBuffer>* reader,
                                               Response* response) {
                      Principal who;
                      grpc::Status status = Admit(*ctx, access, method, nullptr, &who);
                      if (status.ok()) status = (impl->*fn)(ctx, who, reader, response);
                      if (access == Access::kWrite)
                        auth_->Audit(access, method, who,
                                     AuditedResourceId(nullptr, status.ok() ? response : nullptr),
                                     status);
                      return status;
                    },
                    impl),
                at_shutdown));
  }

  // Adds `method` (server streaming, request type `request_type`) for gRPC's async API; returns
  // its index for RequestServerStreaming. Its server must poll a completion queue for it, parse
  // the request bytes (ParseMessage), call Admit, and count the call in the InFlightCalls (see
  // WatchJobService).
  int AsyncServerStreaming(const std::string& method,
                           const google::protobuf::Descriptor* request_type) {
    const int index =
        Add(method, grpc::internal::RpcMethod::SERVER_STREAMING, request_type, nullptr);
    MarkMethodAsync(index);
    return index;
  }
  // Asks gRPC for the next call of the async method `index`: `tag` comes out of `cq` when one has
  // come (its request's raw bytes in `request`), or with ok false once the server shuts down.
  void RequestServerStreaming(int index, grpc::ServerContext* ctx, grpc::ByteBuffer* request,
                              grpc::internal::ServerAsyncStreamingInterface* stream,
                              grpc::ServerCompletionQueue* cq, void* tag) {
    RequestAsyncServerStreaming(index, ctx, request, stream, cq, cq, tag);
  }

  // UNAVAILABLE once the server is shutting down; else the caller's credentials and rights
  // (`principal` is set when they were read); else the request's field limits (none for null).
  grpc::Status Admit(const grpc::ServerContextBase& ctx, Access access, const std::string& method,
                     const google::protobuf::Message* request, Principal* principal) const {
    if (calls_->stopping()) return ShuttingDown();
    grpc::Status admitted = auth_->Admit(ctx, access, method, principal);
    if (!admitted.ok() || request == nullptr) return admitted;
    return CheckFieldLimits(*request);
  }

  // Methods of the service that have not been added (empty when the service is complete).
  std::vector<std::string> Missing() const;

 private:
  static grpc::Status ShuttingDown() {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string(ShuttingDownError().message()));
  }
  grpc::internal::MethodHandler* Counted(grpc::internal::MethodHandler* handler,
                                         AtShutdown at_shutdown) {
    return new checked_internal::CountedHandler(handler, calls_, at_shutdown);
  }

  // Adds the method (CHECK-fails unless `method` is one of the service's, of this kind and
  // request type, added once); returns its index.
  int Add(const std::string& method, grpc::internal::RpcMethod::RpcType type,
          const google::protobuf::Descriptor* request_type, grpc::internal::MethodHandler* handler);

  const google::protobuf::ServiceDescriptor* const service_;
  InFlightCalls* const calls_;
  const Authentication* const auth_;
  std::deque<std::string> paths_;  // "/package.Service/Method"; gRPC keeps pointers to them
  std::vector<std::string> added_;
};

}  // namespace logp

#endif  // LOGP_SERVER_GRPC_CHECKED_SERVICE_H_
