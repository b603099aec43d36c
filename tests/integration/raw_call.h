// RawCall: one gRPC call with raw request bytes, for tests that send what no typed stub can (bytes
// that are not a valid message) or the same way to every method (the access matrix).
#ifndef LOGP_TESTS_INTEGRATION_RAW_CALL_H_
#define LOGP_TESTS_INTEGRATION_RAW_CALL_H_

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace logp {

// What a call with raw request bytes got back.
struct RawReply {
  grpc::Status status;
  std::vector<std::string> responses;
};

// One call of `method` ("/package.Service/Method") that sends exactly `messages` as they are
// (whatever the method's kind: on the wire every call is a stream), half-closes and reads every
// response. For requests no typed stub can send: bytes that are not a valid message.
// `metadata` is sent with the call (e.g. {"authorization", "Bearer ..."}).
inline RawReply RawCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                        const std::vector<std::string>& messages,
                        const std::vector<std::pair<std::string, std::string>>& metadata = {}) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  for (const auto& [key, value] : metadata) ctx.AddMetadata(key, value);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::CompletionQueue cq;
  void* const kTag = reinterpret_cast<void*>(1);
  auto done = [&cq] {
    void* tag = nullptr;
    bool ok = false;
    return cq.Next(&tag, &ok) && ok;
  };
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call = stub.PrepareCall(&ctx, method, &cq);
  call->StartCall(kTag);
  bool ok = done();
  for (const std::string& m : messages) {
    if (!ok) break;
    grpc::Slice slice(m);
    grpc::ByteBuffer bytes(&slice, 1);
    call->Write(bytes, kTag);
    ok = done();
  }
  if (ok) {
    call->WritesDone(kTag);
    done();
  }
  RawReply reply;
  while (true) {
    grpc::ByteBuffer bytes;
    call->Read(&bytes, kTag);
    if (!done()) break;
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(bytes.Dump(&slices).ok());
    std::string s;
    for (const auto& sl : slices) s.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
    reply.responses.push_back(std::move(s));
  }
  call->Finish(&reply.status, kTag);
  done();
  cq.Shutdown();
  void* tag;
  bool ignored;
  while (cq.Next(&tag, &ignored)) {
  }
  return reply;
}

}  // namespace logp

#endif  // LOGP_TESTS_INTEGRATION_RAW_CALL_H_
