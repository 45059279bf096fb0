// The server-streaming Generate RPC: one reactor per call, bridging gRPC's callback API and the
// engine's RequestSink without either side ever blocking on the other.
//
// Threads:
//   - gRPC callback threads run the constructor (validate, tokenize, Engine::Submit),
//     OnWriteDone, OnCancel and OnDone.
//   - The engine loop thread runs the sink's OnOutput: it queues the output under a small mutex
//     and, only if no write is in flight, starts one. It never waits.
//
// Lifetime (the reason for the shared State):
//   - The engine holds the sink (shared_ptr) until after it has delivered the final output; the
//     reactor is deleted by gRPC's OnDone, which runs only after Finish() has completed.
//   - Finish() is called only once the final output has been taken from the queue and no write is
//     in flight, i.e. after the engine's last OnOutput has *entered* the critical section. The
//     mutex, the queue and the write buffer live in a State shared (shared_ptr) by the reactor and
//     the sink, so the sink may still be unlocking the mutex while OnDone deletes the reactor.
//   - Every decision (write next / finish) is made under the mutex, and the thread that decides
//     is the only one that acts; it touches the reactor only for that action (StartWrite while
//     write_in_flight keeps Finish away; Finish as its very last touch). So no thread uses the
//     reactor after Finish, and the sink never dereferences it when it decided nothing.
#ifndef KVASIR_SERVER_GENERATE_REACTOR_H_
#define KVASIR_SERVER_GENERATE_REACTOR_H_

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

// The request id: the request's field, else the `x-request-id` metadata, else a new one.
std::string RequestIdFor(const grpc::CallbackServerContext& context,
                         const v1::GenerateRequest& request);

// Writes each v1::GenerateResponse serialized (the service registers Generate raw, see
// kvasir_service.h).
class GenerateReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  // Validates and submits `request`; on error finishes the call at once with the mapped status.
  // `engine` must outlive the gRPC server (the server is shut down before the engine).
  GenerateReactor(Engine* engine, EngineMetrics* metrics, grpc::CallbackServerContext* context,
                  const v1::GenerateRequest& request, LiveCallCount live_calls = nullptr);
  GenerateReactor(const GenerateReactor&) = delete;
  GenerateReactor& operator=(const GenerateReactor&) = delete;

  void OnWriteDone(bool ok) override;
  // Client cancel, deadline or broken connection: aborts the engine request. The call is
  // finished (CANCELLED) when the engine delivers its final output, which it does within a step.
  void OnCancel() override;
  void OnDone() override;

  struct State;   // shared with the sink; defined in the .cc
  struct Action;  // what the thread that decided must do next

 private:
  class Sink;
  ~GenerateReactor() override = default;

  // Carries out `action` (a write or the finish). Called without the State mutex held.
  void Act(const Action& action);

  LiveCall live_call_;
  Engine* const engine_;
  std::string request_id_;
  std::shared_ptr<State> state_;
};

}  // namespace kvasir::server

#endif  // KVASIR_SERVER_GENERATE_REACTOR_H_
