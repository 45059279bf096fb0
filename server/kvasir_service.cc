#include "server/kvasir_service.h"

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/impl/codegen/proto_utils.h"  // grpc::SerializationTraits for messages
#include "server/api_convert.h"
#include "server/generate_reactor.h"
#include "server/status_map.h"

namespace kvasir::server {

namespace {

// Parses the raw request `buffer` into `request` (see ParseRequest).
absl::Status ParseRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message* request) {
  std::vector<grpc::Slice> slices;
  if (buffer.Valid() && !buffer.Dump(&slices).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("malformed ", request->GetDescriptor()->name()));
  }
  if (slices.size() == 1) {
    return server::ParseRequest(
        std::string_view(reinterpret_cast<const char*>(slices[0].begin()), slices[0].size()),
        request);
  }
  std::string wire;
  for (const grpc::Slice& slice : slices) {
    wire.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return server::ParseRequest(wire, request);
}

// A Generate call refused before it reached the engine: finishes with `status`, writes nothing.
class RefusedWriteReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit RefusedWriteReactor(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* KvasirService::Generate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  v1::GenerateRequest parsed;
  const absl::Status status = ParseRequest(*request, &parsed);
  if (!status.ok()) return new RefusedWriteReactor(ToGrpcStatus(status));  // deletes itself
  return new GenerateReactor(engine_, context, parsed);  // deletes itself in OnDone
}

grpc::ServerUnaryReactor* KvasirService::Tokenize(grpc::CallbackServerContext* context,
                                                  const grpc::ByteBuffer* request,
                                                  grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  v1::TokenizeRequest parsed;
  if (absl::Status status = ParseRequest(*request, &parsed); !status.ok()) {
    reactor->Finish(ToGrpcStatus(status));
    return reactor;
  }
  absl::StatusOr<std::vector<int32_t>> ids =
      TokenizeText(engine_->tokenizer(), "text", parsed.text(),
                   parsed.has_add_special_tokens() ? parsed.add_special_tokens() : true);
  if (!ids.ok()) {
    reactor->Finish(ToGrpcStatus(ids.status()));
    return reactor;
  }
  v1::TokenizeResponse reply;
  reply.mutable_token_ids()->Add(ids->begin(), ids->end());
  bool own_buffer = false;
  reactor->Finish(
      grpc::SerializationTraits<v1::TokenizeResponse>::Serialize(reply, response, &own_buffer));
  return reactor;
}

grpc::ServerUnaryReactor* KvasirService::GetModelInfo(grpc::CallbackServerContext* context,
                                                      const v1::GetModelInfoRequest* request,
                                                      v1::ModelInfo* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  ToProto(engine_->model_info(), response);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace kvasir::server
