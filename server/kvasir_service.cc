#include "server/kvasir_service.h"

#include "server/api_convert.h"
#include "server/generate_reactor.h"
#include "server/status_map.h"

namespace kvasir::server {

grpc::ServerWriteReactor<v1::GenerateResponse>* KvasirService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  return new GenerateReactor(engine_, context, *request);  // deletes itself in OnDone
}

grpc::ServerUnaryReactor* KvasirService::Tokenize(grpc::CallbackServerContext* context,
                                                  const v1::TokenizeRequest* request,
                                                  v1::TokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<std::vector<int32_t>> ids =
      TokenizeText(engine_->tokenizer(), "text", request->text(),
                   request->has_add_special_tokens() ? request->add_special_tokens() : true);
  if (ids.ok()) response->mutable_token_ids()->Add(ids->begin(), ids->end());
  reactor->Finish(ToGrpcStatus(ids.status()));
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
