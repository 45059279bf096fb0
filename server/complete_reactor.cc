#include "server/complete_reactor.h"

#include <mutex>
#include <utility>

#include "grpcpp/impl/codegen/proto_utils.h"  // grpc::SerializationTraits for messages
#include "server/api_convert.h"
#include "server/generate_reactor.h"
#include "server/metrics/engine_metrics.h"
#include "server/status_map.h"

namespace kvasir::server {

namespace {

// How long a client refused with RESOURCE_EXHAUSTED should wait before retrying: about the time
// a queue of short requests takes to drain a little on a small machine.
constexpr char kRetryAfterMs[] = "500";

}  // namespace

absl::Status SubmitGenerate(Engine* engine, EngineMetrics* metrics,
                            const v1::GenerateRequest& request, const std::string& request_id,
                            std::shared_ptr<RequestSink> sink,
                            grpc::CallbackServerContext* context) {
  absl::StatusOr<EngineRequest> engine_request = ToEngineRequest(request, request_id, *engine);
  absl::Status status = engine_request.status();
  if (status.ok()) status = engine->Submit(*std::move(engine_request), std::move(sink));
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    context->AddTrailingMetadata("retry-after-ms", kRetryAfterMs);
  }
  if (!status.ok() && metrics != nullptr) metrics->RecordRejected(status);
  return status;
}

struct CompleteReactor::State {
  std::mutex mu;
  bool final_received = false;         // guarded by mu
  bool cancelled = false;              // guarded by mu
  std::vector<RequestOutput> choices;  // guarded by mu: accumulated, by index
  grpc::ByteBuffer* response = nullptr;
  std::string request_id;
};

class CompleteReactor::Sink final : public RequestSink {
 public:
  Sink(CompleteReactor* reactor, std::shared_ptr<State> state)
      : reactor_(reactor), state_(std::move(state)) {}

  void OnOutput(RequestOutput out) override {
    grpc::Status status;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      std::vector<RequestOutput>& choices = state_->choices;
      const bool final_output = out.final_output;
      const size_t index = static_cast<size_t>(out.index);
      if (choices.size() <= index) choices.resize(index + 1);
      AppendOutput(choices[index], std::move(out));
      if (!final_output) return;
      state_->final_received = true;
      if (state_->cancelled) {
        status = grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled");
      } else {
        status = Reply(choices);
      }
    }
    reactor_->Finish(status);  // the last touch of the reactor
  }

  // Serializes the reply; called under the lock once every choice has finished.
  grpc::Status Reply(std::vector<RequestOutput>& choices) {
    for (const RequestOutput& c : choices) {
      if (c.finish_reason == FinishReason::kError) {
        return ToGrpcStatus(c.error.ok() ? absl::InternalError("engine error") : c.error);
      }
    }
    v1::GenerateResponse reply;
    reply.set_request_id(state_->request_id);
    for (size_t i = 0; i < choices.size(); ++i) {
      ToProtoComplete(std::move(choices[i]),
                      i == 0 ? reply.mutable_complete() : reply.add_other_choices());
    }
    bool own = false;
    return grpc::SerializationTraits<v1::GenerateResponse>::Serialize(reply, state_->response,
                                                                      &own);
  }

 private:
  CompleteReactor* const reactor_;
  const std::shared_ptr<State> state_;
};

CompleteReactor::CompleteReactor(Engine* engine, EngineMetrics* metrics,
                                 grpc::CallbackServerContext* context,
                                 const v1::GenerateRequest& request, grpc::ByteBuffer* response,
                                 LiveCallCount live_calls)
    : live_call_(std::move(live_calls)),
      engine_(engine),
      request_id_(RequestIdFor(*context, request)),
      state_(std::make_shared<State>()) {
  state_->response = response;
  state_->request_id = request_id_;
  const absl::Status status = SubmitGenerate(engine_, metrics, request, request_id_,
                                             std::make_shared<Sink>(this, state_), context);
  if (!status.ok()) {
    {
      // Nothing reached the engine: a later cancel must not abort a request of the same id.
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->final_received = true;
    }
    Finish(ToGrpcStatus(status));
  }
}

void CompleteReactor::OnCancel() {
  bool abort;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->cancelled = true;
    abort = !state_->final_received;
  }
  if (abort) engine_->Abort(request_id_);
}

}  // namespace kvasir::server
