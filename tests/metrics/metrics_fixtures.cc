#include "tests/metrics/metrics_fixtures.h"

#include <cstdlib>
#include <functional>
#include <string>

namespace kvasir::testing {
namespace {

RequestEvent Event(RequestEventKind kind, std::string_view id, int64_t ms, int32_t prompt,
                   int32_t generated, FinishReason reason = FinishReason::kNone) {
  RequestEvent e;
  e.kind = kind;
  e.request_id = id;
  e.uid = std::hash<std::string_view>{}(id);  // one choice per id in these tests
  e.time_ns = ms * kMs;
  e.num_prompt_tokens = prompt;
  e.num_generated_tokens = generated;
  e.finish_reason = reason;
  return e;
}

struct StepSpec {
  int64_t start_ms, end_ms;
  int32_t num_seqs, prefill, decode, running, waiting, preempted;
  double kv_usage;
  int64_t prefix_query, prefix_hit, computed;  // cumulative
};

StepEvent Step(int64_t index, const StepSpec& s) {
  StepEvent e;
  e.step = index;
  e.start_ns = s.start_ms * kMs;
  e.end_ns = s.end_ms * kMs;
  e.num_seqs = s.num_seqs;
  e.num_prefill_tokens = s.prefill;
  e.num_decode_tokens = s.decode;
  e.num_running = s.running;
  e.num_waiting = s.waiting;
  e.num_preempted = s.preempted;
  e.num_blocks = 64;
  e.block_size = 16;
  e.kv_usage = s.kv_usage;
  e.counters.prefix_query_tokens = s.prefix_query;
  e.counters.prefix_hit_tokens = s.prefix_hit;
  e.counters.computed_tokens = s.computed;
  return e;
}

}  // namespace

void RunScriptedHistory(EngineObserver& o) {
  using K = RequestEventKind;
  o.OnRequestEvent(Event(K::kArrived, "a", 0, 10, 0));
  o.OnRequestEvent(Event(K::kScheduled, "a", 100, 10, 0));
  o.OnStep(Step(0, {100, 300, 1, 10, 0, 1, 0, 0, 0.25, 10, 4, 6}));
  o.OnRequestEvent(Event(K::kFirstToken, "a", 300, 10, 1));

  o.OnRequestEvent(Event(K::kArrived, "b", 200, 3, 0));
  o.OnRequestEvent(Event(K::kArrived, "c", 200, 5, 0));
  o.OnStep(Step(1, {300, 350, 1, 0, 1, 1, 2, 0, 0.25, 10, 4, 7}));
  o.OnRequestEvent(Event(K::kToken, "a", 350, 10, 2));

  o.OnRequestEvent(Event(K::kPreempted, "a", 400, 10, 2));
  o.OnRequestEvent(Event(K::kScheduled, "c", 400, 5, 0));
  o.OnStep(Step(2, {400, 450, 1, 5, 0, 1, 2, 1, 0.5, 15, 4, 12}));
  o.OnRequestEvent(Event(K::kFirstToken, "c", 450, 5, 1));

  o.OnRequestEvent(Event(K::kFinished, "b", 500, 3, 0, FinishReason::kAbort));
  o.OnRequestEvent(Event(K::kPreempted, "c", 500, 5, 1));
  o.OnStep(Step(3, {500, 600, 1, 11, 0, 1, 1, 1, 0.5, 15, 4, 23}));
  o.OnRequestEvent(Event(K::kToken, "a", 600, 10, 3));

  o.OnRequestEvent(Event(K::kFinished, "c", 610, 5, 1, FinishReason::kAbort));
  o.OnStep(Step(4, {620, 650, 1, 0, 1, 1, 0, 0, 0.5, 15, 4, 24}));
  o.OnRequestEvent(Event(K::kToken, "a", 650, 10, 4));
  o.OnRequestEvent(Event(K::kFinished, "a", 660, 10, 4, FinishReason::kLength));
}

std::optional<double> SampleValue(std::string_view text, std::string_view series) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    if (line.size() > series.size() && line.starts_with(series) && line[series.size()] == ' ') {
      return std::strtod(std::string(line.substr(series.size() + 1)).c_str(), nullptr);
    }
    pos = end + 1;
  }
  return std::nullopt;
}

}  // namespace kvasir::testing
