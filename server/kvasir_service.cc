#include "server/kvasir_service.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer.h"
#include "grpcpp/impl/codegen/proto_utils.h"  // grpc::SerializationTraits for messages
#include "server/api_convert.h"
#include "server/complete_reactor.h"
#include "server/generate_reactor.h"
#include "server/metrics/engine_metrics.h"
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

absl::Status Loading() { return absl::UnavailableError("the model is still loading"); }

}  // namespace

absl::Status KvasirService::Admissible(const Engine* engine) const {
  if (engine == nullptr) return Loading();
  if (draining_.load()) return absl::UnavailableError("the server is shutting down");
  return absl::OkStatus();
}

Engine* KvasirService::LoadedEngine(grpc::ServerUnaryReactor* reactor) {
  Engine* const engine = engine_.load();
  if (engine == nullptr) reactor->Finish(ToGrpcStatus(Loading()));
  return engine;
}

grpc::Status KvasirService::Refuse(const absl::Status& status) {
  if (metrics_ != nullptr) {
    if (engine_.load() == nullptr) {
      metrics_->RecordRejected("loading");
    } else {
      metrics_->RecordRejected(status);
    }
  }
  return ToGrpcStatus(status);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* KvasirService::Generate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  v1::GenerateRequest parsed;
  Engine* const engine = engine_.load();
  absl::Status status = Admissible(engine);
  if (!status.ok() || !(status = ParseRequest(*request, &parsed)).ok()) {
    return new RefusedWriteReactor(Refuse(status));  // deletes itself
  }
  return new GenerateReactor(engine, metrics_, context, parsed,
                             live_calls_);  // deletes itself in OnDone
}

grpc::ServerUnaryReactor* KvasirService::Tokenize(grpc::CallbackServerContext* context,
                                                  const grpc::ByteBuffer* request,
                                                  grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Engine* const engine = LoadedEngine(reactor);
  if (engine == nullptr) return reactor;
  v1::TokenizeRequest parsed;
  if (absl::Status status = ParseRequest(*request, &parsed); !status.ok()) {
    reactor->Finish(ToGrpcStatus(status));
    return reactor;
  }
  absl::StatusOr<std::vector<int32_t>> ids =
      TokenizeText(engine->tokenizer(), "text", parsed.text(),
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

grpc::ServerUnaryReactor* KvasirService::Complete(grpc::CallbackServerContext* context,
                                                  const grpc::ByteBuffer* request,
                                                  grpc::ByteBuffer* response) {
  v1::GenerateRequest parsed;
  Engine* const engine = engine_.load();
  if (absl::Status status = Admissible(engine);
      !status.ok() || !(status = ParseRequest(*request, &parsed)).ok()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(Refuse(status));
    return reactor;
  }
  return new CompleteReactor(engine, metrics_, context, parsed, response,
                             live_calls_);  // deletes itself in OnDone
}

grpc::ServerUnaryReactor* KvasirService::Abort(grpc::CallbackServerContext* context,
                                               const grpc::ByteBuffer* request,
                                               grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Engine* const engine = LoadedEngine(reactor);
  if (engine == nullptr) return reactor;
  v1::AbortRequest parsed;
  if (absl::Status status = ParseRequest(*request, &parsed); !status.ok()) {
    reactor->Finish(ToGrpcStatus(status));
    return reactor;
  }
  for (const std::string& id : parsed.request_ids()) engine->Abort(id);  // only enqueues
  bool own_buffer = false;
  reactor->Finish(grpc::SerializationTraits<v1::AbortResponse>::Serialize(v1::AbortResponse(),
                                                                          response, &own_buffer));
  return reactor;
}

grpc::ServerUnaryReactor* KvasirService::Detokenize(grpc::CallbackServerContext* context,
                                                    const v1::DetokenizeRequest* request,
                                                    v1::DetokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Engine* const engine = LoadedEngine(reactor);
  if (engine == nullptr) return reactor;
  const Tokenizer* tokenizer = engine->tokenizer();
  if (tokenizer == nullptr) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "the model has no tokenizer"));
    return reactor;
  }
  const int64_t vocab = engine->model_info().vocab_size;
  for (int32_t id : request->token_ids()) {
    if (id < 0 || id >= vocab || id >= tokenizer->vocab_size()) {
      reactor->Finish(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       absl::StrCat("token_ids: id ", id, " is outside the vocabulary [0, ",
                                    std::min<int64_t>(vocab, tokenizer->vocab_size()), ")")));
      return reactor;
    }
  }
  const bool skip = request->has_skip_special_tokens() ? request->skip_special_tokens() : true;
  response->set_text(tokenizer->Decode(request->token_ids(), skip));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* KvasirService::GetLoads(grpc::CallbackServerContext* context,
                                                  const v1::GetLoadsRequest* request,
                                                  v1::Loads* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Engine* const engine = LoadedEngine(reactor);
  if (engine == nullptr) return reactor;
  ToProto(engine->GetLoads(), response);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* KvasirService::GetModelInfo(grpc::CallbackServerContext* context,
                                                      const v1::GetModelInfoRequest* request,
                                                      v1::ModelInfo* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Engine* const engine = LoadedEngine(reactor);
  if (engine == nullptr) return reactor;
  ToProto(engine->model_info(), response);
  if (const Tokenizer* tok = engine->tokenizer()) {
    if (tok->bos_id().has_value()) {
      response->set_bos_token_id(*tok->bos_id());
      response->set_bos_token(std::string(tok->TokenText(*tok->bos_id())));
    }
    if (tok->eos_id().has_value())
      response->set_eos_token(std::string(tok->TokenText(*tok->eos_id())));
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace kvasir::server
