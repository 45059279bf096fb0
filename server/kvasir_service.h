// kvasir.v1.Kvasir over the gRPC callback API. Handlers never block on the engine: Generate
// submits and returns a reactor (see generate_reactor.h); Tokenize and GetModelInfo only read
// immutable state (the tokenizer and the model info).
//
// Generate and Tokenize are registered raw (grpc::ByteBuffer in and out) and parse their request
// themselves (ParseRequest in api_convert.h): when gRPC's callback API fails to parse a request
// (e.g. a proto3 string field holding invalid UTF-8) it ends the call with UNIMPLEMENTED and no
// message, where the API promises INVALID_ARGUMENT naming the field. GetModelInfo takes an empty
// request and stays a typed method.
#ifndef KVASIR_SERVER_KVASIR_SERVICE_H_
#define KVASIR_SERVER_KVASIR_SERVICE_H_

#include <atomic>
#include <memory>

#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "kvasir/v1/kvasir.grpc.pb.h"
#include "server/live_call.h"

namespace kvasir {
class EngineMetrics;
}  // namespace kvasir

namespace kvasir::server {

using KvasirServiceBase =
    v1::Kvasir::WithRawCallbackMethod_Generate<v1::Kvasir::WithRawCallbackMethod_Complete<
        v1::Kvasir::WithRawCallbackMethod_Abort<v1::Kvasir::WithRawCallbackMethod_Tokenize<
            v1::Kvasir::WithCallbackMethod_Detokenize<v1::Kvasir::WithCallbackMethod_GetLoads<
                v1::Kvasir::WithCallbackMethod_GetModelInfo<v1::Kvasir::Service>>>>>>>;

class KvasirService final : public KvasirServiceBase {
 public:
  // `engine` is not owned and must outlive every call (shut the server down first).
  // `metrics` (may be null) counts refused requests; not owned, must outlive every call.
  // `engine` may be null while the model loads: every call is then UNAVAILABLE until SetEngine.
  KvasirService(Engine* engine, EngineMetrics* metrics) : engine_(engine), metrics_(metrics) {}
  // The loaded engine (not owned; must outlive every call). Once.
  void SetEngine(Engine* engine) { engine_.store(engine); }
  // From now on Generate and Complete answer UNAVAILABLE (the server is shutting down).
  void SetDraining() { draining_.store(true); }
  // Generate/Complete calls not yet done (their last message may still be unsent).
  int live_calls() const { return live_calls_->load(); }
  KvasirService(const KvasirService&) = delete;
  KvasirService& operator=(const KvasirService&) = delete;

  // Request: a serialized v1::GenerateRequest; each response a serialized v1::GenerateResponse.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  // Request: a serialized v1::TokenizeRequest; response a serialized v1::TokenizeResponse.
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  // Request: a serialized v1::GenerateRequest; response a serialized v1::GenerateResponse.
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  // Request: a serialized v1::AbortRequest; response a serialized v1::AbortResponse.
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetLoads(grpc::CallbackServerContext* context,
                                     const v1::GetLoadsRequest* request,
                                     v1::Loads* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

 private:
  std::atomic<Engine*> engine_;
  std::atomic<bool> draining_{false};
  // The loaded engine; null while the model loads, after finishing `reactor` with UNAVAILABLE.
  Engine* LoadedEngine(grpc::ServerUnaryReactor* reactor);
  // OK when a generation request may go to `engine`: loaded, not draining.
  absl::Status Admissible(const Engine* engine) const;
  // Counts a request refused before the engine saw it, and converts the status.
  grpc::Status Refuse(const absl::Status& status);

  EngineMetrics* const metrics_;
  const LiveCallCount live_calls_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace kvasir::server

#endif  // KVASIR_SERVER_KVASIR_SERVICE_H_
