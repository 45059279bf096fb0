// kvasir.v1.Kvasir over the gRPC callback API. Handlers never block on the engine: Generate
// submits and returns a reactor (see generate_reactor.h); Tokenize and GetModelInfo only read
// immutable state (the tokenizer and the model info).
#ifndef KVASIR_SERVER_KVASIR_SERVICE_H_
#define KVASIR_SERVER_KVASIR_SERVICE_H_

#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "kvasir/v1/kvasir.grpc.pb.h"

namespace kvasir::server {

class KvasirService final : public v1::Kvasir::CallbackService {
 public:
  // `engine` is not owned and must outlive every call (shut the server down first).
  explicit KvasirService(Engine* engine) : engine_(engine) {}
  KvasirService(const KvasirService&) = delete;
  KvasirService& operator=(const KvasirService&) = delete;

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

 private:
  Engine* const engine_;
};

}  // namespace kvasir::server

#endif  // KVASIR_SERVER_KVASIR_SERVICE_H_
