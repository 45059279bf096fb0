#include "server/generate_reactor.h"

#include <deque>
#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "engine/request.h"
#include "grpcpp/impl/codegen/proto_utils.h"  // grpc::SerializationTraits for messages
#include "server/api_convert.h"
#include "server/complete_reactor.h"
#include "server/status_map.h"

namespace kvasir::server {

struct GenerateReactor::Action {
  enum Kind { kNone, kWrite, kFinish };
  Kind kind = kNone;
  grpc::Status status;  // kFinish
};

struct GenerateReactor::State {
  std::mutex mu;
  std::deque<RequestOutput> outputs ABSL_GUARDED_BY(mu);
  bool final_received ABSL_GUARDED_BY(mu) = false;  // the engine has queued its last output
  bool final_written ABSL_GUARDED_BY(mu) = false;   // the request's last output was sent
  bool write_in_flight ABSL_GUARDED_BY(mu) = false;
  bool write_failed ABSL_GUARDED_BY(mu) = false;  // the stream is broken: drop further output
  bool cancelled ABSL_GUARDED_BY(mu) = false;
  bool finish_called ABSL_GUARDED_BY(mu) = false;
  // A response could not be serialized (only a message over 2 GiB can fail): like a broken
  // stream, but the call ends with INTERNAL instead of CANCELLED.
  bool serialize_failed ABSL_GUARDED_BY(mu) = false;
  // The message being written and its serialized form (what StartWrite sends); owned by the
  // thread that set write_in_flight until OnWriteDone.
  v1::GenerateResponse response;
  grpc::ByteBuffer write_buffer;
  std::string request_id;

  // Decides what happens next and, for a write, fills `response` and `write_buffer`. The caller
  // performs the action after unlocking; nobody else can decide anything until that write
  // completes.
  Action NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void CoalesceLocked(RequestOutput& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  Action FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Serializes `response` into `write_buffer`; false (and serialize_failed set) on failure.
  bool SerializeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

bool GenerateReactor::State::SerializeLocked() {
  write_buffer.Clear();  // the previous write is done; the serializer wants an empty buffer
  bool own_buffer = false;
  if (grpc::SerializationTraits<v1::GenerateResponse>::Serialize(response, &write_buffer,
                                                                 &own_buffer)
          .ok()) {
    return true;
  }
  serialize_failed = true;
  return false;
}

// Later queued outputs of out's choice join it, up to that choice's last: when the network is
// slower than the engine, one message carries several tokens instead of the queue growing.
void GenerateReactor::State::CoalesceLocked(RequestOutput& out) {
  for (auto it = outputs.begin();
       it != outputs.end() && out.finish_reason == FinishReason::kNone;) {
    if (it->index != out.index) {
      ++it;
      continue;
    }
    AppendOutput(out, std::move(*it));
    it = outputs.erase(it);
  }
}

GenerateReactor::Action GenerateReactor::State::FinishLocked(grpc::Status status) {
  finish_called = true;
  Action action;
  action.kind = Action::kFinish;
  action.status = std::move(status);
  return action;
}

GenerateReactor::Action GenerateReactor::State::NextLocked() {
  Action action;
  if (write_in_flight || finish_called) return action;
  while (!outputs.empty()) {
    RequestOutput out = std::move(outputs.front());
    outputs.pop_front();
    if (out.finish_reason == FinishReason::kError) {
      return FinishLocked(
          ToGrpcStatus(out.error.ok() ? absl::InternalError("engine error") : out.error));
    }
    if (cancelled || write_failed) {
      // Nothing more is sent; the call ends with the request's last output.
      if (!out.final_output) continue;
      return FinishLocked(
          serialize_failed
              ? grpc::Status(grpc::StatusCode::INTERNAL, "cannot serialize a GenerateResponse")
              : grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled"));
    }
    CoalesceLocked(out);
    response.Clear();
    response.set_request_id(request_id);
    const bool choice_done = out.finish_reason != FinishReason::kNone;
    const bool final_output = out.final_output;
    if (!choice_done) {
      if (out.text.empty() && out.token_ids.empty()) continue;
      ToProtoChunk(std::move(out), response.mutable_chunk());
    } else {
      ToProtoComplete(std::move(out), response.mutable_complete());
    }
    if (!SerializeLocked()) {
      // Only a message over 2 GiB fails. The request is over at its last output: end the call
      // now if that was it, else drop the rest of the output until then.
      write_failed = true;
      if (final_output) {
        return FinishLocked(
            grpc::Status(grpc::StatusCode::INTERNAL, "cannot serialize a GenerateResponse"));
      }
      continue;
    }
    if (final_output) final_written = true;
    write_in_flight = true;
    action.kind = Action::kWrite;
    return action;
  }
  // Every choice's Complete has been written (the last one may have been coalesced ahead of
  // another choice's, which is why the queue must be empty too): end the call.
  if (final_written) {
    return FinishLocked(write_failed
                            ? grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled")
                            : grpc::Status::OK);
  }
  return action;
}

// Runs on the engine thread. Holds the State (not the reactor) so the mutex outlives OnDone.
class GenerateReactor::Sink final : public RequestSink {
 public:
  Sink(GenerateReactor* reactor, std::shared_ptr<State> state)
      : reactor_(reactor), state_(std::move(state)) {}

  void OnOutput(RequestOutput output) override {
    Action action;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (output.final_output) state_->final_received = true;
      state_->outputs.push_back(std::move(output));
      action = state_->NextLocked();
    }
    // The reactor is alive here: Finish has not been called (the final output was queued just now
    // or later), and if we decided, we are the only thread acting on it.
    if (action.kind != Action::kNone) reactor_->Act(action);
  }

 private:
  GenerateReactor* const reactor_;  // not owned; see the lifetime notes in the header
  const std::shared_ptr<State> state_;
};

std::string RequestIdFor(const grpc::CallbackServerContext& context,
                         const v1::GenerateRequest& request) {
  if (request.has_request_id() && !request.request_id().empty()) return request.request_id();
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("x-request-id");
  if (it != metadata.end() && it->second.size() > 0) {
    return std::string(it->second.data(), it->second.size());
  }
  return NewRequestId();
}

GenerateReactor::GenerateReactor(Engine* engine, EngineMetrics* metrics,
                                 grpc::CallbackServerContext* context,
                                 const v1::GenerateRequest& request, LiveCallCount live_calls)
    : live_call_(std::move(live_calls)),
      engine_(engine),
      request_id_(RequestIdFor(*context, request)),
      state_(std::make_shared<State>()) {
  state_->request_id = request_id_;
  const absl::Status status = SubmitGenerate(engine_, metrics, request, request_id_,
                                             std::make_shared<Sink>(this, state_), context);
  if (!status.ok()) {
    // The engine took nothing: no sink call will come. Finish now (gRPC queues it until bound).
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->finish_called = true;
    }
    Finish(ToGrpcStatus(status));
  }
}

void GenerateReactor::Act(const Action& action) {
  switch (action.kind) {
    case Action::kWrite:
      StartWrite(&state_->write_buffer);
      break;
    case Action::kFinish:
      Finish(action.status);  // the last touch of this reactor by the acting thread
      break;
    case Action::kNone:
      break;
  }
}

void GenerateReactor::OnWriteDone(bool ok) {
  Action action;
  bool abort = false;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->write_in_flight = false;
    if (!ok && !state_->write_failed) {
      state_->write_failed = true;
      abort = !state_->final_received;
    }
    action = state_->NextLocked();
  }
  // Abort only enqueues on the engine side; its final output then finishes the call.
  if (abort) engine_->Abort(request_id_);
  Act(action);
}

void GenerateReactor::OnCancel() {
  bool abort;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->cancelled = true;
    // After the final output the id may already belong to a new request: do not abort it.
    abort = !state_->final_received && !state_->finish_called;
  }
  if (abort) engine_->Abort(request_id_);
}

void GenerateReactor::OnDone() { delete this; }

}  // namespace kvasir::server
