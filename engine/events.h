// What the engine loop reports as it runs, for metrics (the observability layer exports these;
// tests assert on them). Timestamps are steady-clock nanoseconds; `step` is the index of the
// engine step in which the event happened, so tests can reason in steps rather than seconds.
#ifndef KVASIR_ENGINE_EVENTS_H_
#define KVASIR_ENGINE_EVENTS_H_

#include <cstdint>
#include <string_view>

#include "engine/request.h"
#include "scheduler/scheduler.h"

namespace kvasir {

enum class RequestEventKind {
  kArrived,     // accepted by Submit (time of the Submit call)
  kScheduled,   // in a step for the first time (queue time ends)
  kFirstToken,  // first generated token sampled
  kToken,       // each later generated token
  kPreempted,   // blocks taken back; it will be recomputed
  kFinished,    // final output sent (finish_reason set)
};
const char* RequestEventKindName(RequestEventKind kind);

struct RequestEvent {
  RequestEventKind kind = RequestEventKind::kArrived;
  std::string_view request_id;  // valid during the callback only
  int32_t index = 0;            // the choice (n > 1 requests emit events per choice)
  uint64_t uid = 0;  // the choice's engine id, unique for the process lifetime (a map key)
  int64_t time_ns = 0;
  int64_t step = 0;  // steps completed before the event (kArrived: when the loop picked it up)
  int32_t num_prompt_tokens = 0;
  int32_t num_cached_prompt_tokens = 0;  // known from kScheduled on
  int32_t num_generated_tokens = 0;
  FinishReason finish_reason = FinishReason::kNone;  // kFinished
};

struct StepEvent {
  int64_t step = 0;  // this step's index, from 0
  int64_t start_ns = 0, end_ns = 0;
  int32_t num_seqs = 0;  // sequences in the batch
  int32_t num_prefill_tokens = 0;
  int32_t num_decode_tokens = 0;
  int32_t num_running = 0;  // after scheduling
  int32_t num_waiting = 0;
  int32_t num_preempted = 0;  // in this step
  int32_t num_blocks = 0;
  int32_t num_free_blocks = 0;  // after the model ran (before finished requests free theirs)
  int32_t block_size = 0;
  double kv_usage = 0.0;       // fraction of blocks held by sequences, after scheduling
  SchedulerCounters counters;  // cumulative, after the step
};

// Called on the engine thread: implementations must be quick and must not block. A step's
// OnStep comes before the token and finish events and the outputs of that step.
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnRequestEvent(const RequestEvent& event) = 0;
  virtual void OnStep(const StepEvent& event) = 0;
};

}  // namespace kvasir

#endif  // KVASIR_ENGINE_EVENTS_H_
