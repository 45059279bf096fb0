// The unary Complete RPC: the same request as Generate, answered once with everything. One
// reactor per call; the engine's sink accumulates outputs and finishes the call on the final one.
//
// Threads and lifetime: the constructor (gRPC thread) validates and submits; the sink runs on the
// engine thread and calls Finish once, as its last touch of the reactor, after the final output;
// OnCancel (gRPC thread) only aborts the engine request, whose final output then finishes the
// call. The accumulated state is shared (shared_ptr) by reactor and sink, so the sink may still
// be unlocking it when OnDone deletes the reactor.
#ifndef KVASIR_SERVER_COMPLETE_REACTOR_H_
#define KVASIR_SERVER_COMPLETE_REACTOR_H_

#include <memory>
#include <string>

#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "kvasir/v1/kvasir.pb.h"
#include "server/live_call.h"

namespace kvasir {
class EngineMetrics;
}  // namespace kvasir

namespace kvasir::server {

class CompleteReactor final : public grpc::ServerUnaryReactor {
 public:
  // `response` is gRPC's buffer for the serialized v1::GenerateResponse (raw method).
  // `metrics` (may be null) counts a refused request.
  CompleteReactor(Engine* engine, EngineMetrics* metrics, grpc::CallbackServerContext* context,
                  const v1::GenerateRequest& request, grpc::ByteBuffer* response,
                  LiveCallCount live_calls = nullptr);
  CompleteReactor(const CompleteReactor&) = delete;
  CompleteReactor& operator=(const CompleteReactor&) = delete;

  void OnCancel() override;
  void OnDone() override { delete this; }

  struct State;

 private:
  class Sink;
  ~CompleteReactor() override = default;

  LiveCall live_call_;
  Engine* const engine_;
  const std::string request_id_;
  const std::shared_ptr<State> state_;
};

// Converts and submits a Generate/Complete request with `sink`. When the engine refuses it
// because its waiting queue is full, adds the `retry-after-ms` trailing metadata to the call.
// A refusal is counted in `metrics` (may be null) by reason.
absl::Status SubmitGenerate(Engine* engine, EngineMetrics* metrics,
                            const v1::GenerateRequest& request, const std::string& request_id,
                            std::shared_ptr<RequestSink> sink,
                            grpc::CallbackServerContext* context);

}  // namespace kvasir::server

#endif  // KVASIR_SERVER_COMPLETE_REACTOR_H_
