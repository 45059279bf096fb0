// Helpers for the metrics tests: a scripted engine history and a reader for exposition text.
#ifndef KVASIR_TESTS_METRICS_METRICS_FIXTURES_H_
#define KVASIR_TESTS_METRICS_METRICS_FIXTURES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "engine/events.h"
#include "server/metrics/engine_metrics.h"

namespace kvasir::testing {

constexpr int64_t kMs = 1'000'000;  // nanoseconds

// Feeds events as engine/engine.cc emits them (a step's kPreempted and kScheduled before its
// OnStep, token events after it, kFinished after the request's last token event):
//   "a": arrives at 0, scheduled at 100 ms, first token at 300 ms, a token at 350 ms,
//        preempted at 400 ms, recomputed, tokens at 600 and 650 ms, finished (length) at 660 ms;
//        10 prompt tokens, 4 generated.
//   "b": arrives at 200 ms and is aborted while waiting at 500 ms.
//   "c": arrives at 200 ms, scheduled at 400 ms, first token at 450 ms, preempted at 500 ms
//        and aborted at 550 ms before it is recomputed; 5 prompt tokens, 1 generated.
void RunScriptedHistory(EngineObserver& observer);

// The value of the sample line `series value` (series with its labels, as serialized), or
// nullopt when there is no such line.
std::optional<double> SampleValue(std::string_view text, std::string_view series);

}  // namespace kvasir::testing

#endif  // KVASIR_TESTS_METRICS_METRICS_FIXTURES_H_
