#include "server/metrics/engine_metrics.h"

#include <functional>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "tests/metrics/metrics_fixtures.h"

namespace kvasir {
namespace {

using ::kvasir::testing::kMs;
using ::kvasir::testing::RunScriptedHistory;
using ::kvasir::testing::SampleValue;

std::shared_ptr<EngineMetrics> NewMetrics() {
  absl::StatusOr<std::shared_ptr<EngineMetrics>> m = EngineMetrics::Create({"1.2.3", "abc"});
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

RequestEvent Event(RequestEventKind kind, std::string_view id, int64_t ms,
                   FinishReason reason = FinishReason::kNone) {
  RequestEvent e;
  e.kind = kind;
  e.request_id = id;
  e.uid = std::hash<std::string_view>{}(id);  // one choice per id in these tests
  e.time_ns = ms * kMs;
  e.num_prompt_tokens = 4;
  e.finish_reason = reason;
  return e;
}

// Expects the sample `series` to be `value` (within rounding of nanoseconds to seconds).
void ExpectSample(const std::string& text, std::string_view series, double value) {
  std::optional<double> got = SampleValue(text, series);
  ASSERT_TRUE(got.has_value()) << "no sample " << series << " in\n" << text;
  EXPECT_NEAR(*got, value, 1e-9) << series;
}

struct Expected {
  const char* series;
  double value;
};

TEST(EngineMetricsTest, ScriptedHistoryGivesExactCountersAndHistograms) {
  std::shared_ptr<EngineMetrics> m = NewMetrics();
  RunScriptedHistory(*m);
  const std::string text = m->registry().Serialize();
  const Expected expected[] = {
      // a: 0.3 s; c: 0.25 s. b never got a token.
      {"kvasir_time_to_first_token_seconds_count", 2},
      {"kvasir_time_to_first_token_seconds_sum", 0.55},
      {"kvasir_time_to_first_token_seconds_bucket{le=\"0.25\"}", 1},
      {"kvasir_time_to_first_token_seconds_bucket{le=\"0.5\"}", 2},
      // a: 50 ms, 250 ms across its preemption, 50 ms.
      {"kvasir_inter_token_latency_seconds_count", 3},
      {"kvasir_inter_token_latency_seconds_sum", 0.35},
      {"kvasir_inter_token_latency_seconds_bucket{le=\"0.05\"}", 2},
      {"kvasir_inter_token_latency_seconds_bucket{le=\"0.2\"}", 2},
      {"kvasir_inter_token_latency_seconds_bucket{le=\"0.3\"}", 3},
      // a 0.66 s, b 0.3 s (aborted while waiting), c 0.41 s (aborted while preempted).
      {"kvasir_e2e_request_latency_seconds_count", 3},
      {"kvasir_e2e_request_latency_seconds_sum", 1.37},
      // a 0.1 s, c 0.2 s; b was never scheduled.
      {"kvasir_request_queue_time_seconds_count", 2},
      {"kvasir_request_queue_time_seconds_sum", 0.3},
      {"kvasir_request_prefill_time_seconds_count", 2},
      {"kvasir_request_prefill_time_seconds_sum", 0.25},
      // a: first to last token 0.35 s; c: one token, 0 s.
      {"kvasir_request_decode_time_seconds_count", 2},
      {"kvasir_request_decode_time_seconds_sum", 0.35},
      {"kvasir_request_prompt_tokens_count", 3},
      {"kvasir_request_prompt_tokens_sum", 18},
      {"kvasir_request_generation_tokens_sum", 5},
      {"kvasir_request_generation_tokens_bucket{le=\"1\"}", 2},
      {"kvasir_prompt_tokens_total", 15},
      {"kvasir_generation_tokens_total", 5},
      {"kvasir_preemptions_total", 2},
      {"kvasir_requests_finished_total{finish_reason=\"length\"}", 1},
      {"kvasir_requests_finished_total{finish_reason=\"abort\"}", 2},
      {"kvasir_requests_finished_total{finish_reason=\"stop\"}", 0},
      {"kvasir_requests_finished_total{finish_reason=\"error\"}", 0},
      {"kvasir_prefix_cache_queried_tokens_total", 15},
      {"kvasir_prefix_cache_hit_tokens_total", 4},
      {"kvasir_computed_tokens_total", 24},
      {"kvasir_engine_steps_total", 5},
      {"kvasir_step_tokens_sum", 28},
      {"kvasir_step_tokens_count", 5},
      {"kvasir_step_sequences_sum", 5},
      {"kvasir_step_duration_seconds_sum", 0.43},
      // Nothing is live any more.
      {"kvasir_num_requests_running", 0},
      {"kvasir_num_requests_waiting", 0},
      {"kvasir_num_requests_swapped", 0},
      {"kvasir_kv_cache_usage_ratio", 0},
  };
  for (const Expected& e : expected) ExpectSample(text, e.series, e.value);
  EXPECT_EQ(m->num_tracked_requests(), 0);
}

TEST(EngineMetricsTest, GaugesFollowStepsArrivalsAndFinishes) {
  std::shared_ptr<EngineMetrics> m = NewMetrics();
  using K = RequestEventKind;
  m->OnRequestEvent(Event(K::kArrived, "x", 0));
  m->OnRequestEvent(Event(K::kArrived, "y", 0));
  ExpectSample(m->registry().Serialize(), "kvasir_num_requests_waiting", 2);
  m->OnRequestEvent(Event(K::kScheduled, "x", 10));
  StepEvent step;
  step.num_running = 1;
  step.num_waiting = 1;
  step.kv_usage = 0.125;
  m->OnStep(step);
  std::string text = m->registry().Serialize();
  ExpectSample(text, "kvasir_num_requests_running", 1);
  ExpectSample(text, "kvasir_num_requests_waiting", 1);
  ExpectSample(text, "kvasir_kv_cache_usage_ratio", 0.125);
  // y is aborted while waiting: the waiting gauge drops before the next step reports.
  m->OnRequestEvent(Event(K::kFinished, "y", 20, FinishReason::kAbort));
  text = m->registry().Serialize();
  ExpectSample(text, "kvasir_num_requests_waiting", 0);
  ExpectSample(text, "kvasir_num_requests_running", 1);
  // x is preempted: swapped until it produces a token again.
  m->OnRequestEvent(Event(K::kPreempted, "x", 30));
  ExpectSample(m->registry().Serialize(), "kvasir_num_requests_swapped", 1);
  m->OnRequestEvent(Event(K::kFirstToken, "x", 40));
  ExpectSample(m->registry().Serialize(), "kvasir_num_requests_swapped", 0);
  m->OnRequestEvent(Event(K::kFinished, "x", 50, FinishReason::kStop));
  text = m->registry().Serialize();
  ExpectSample(text, "kvasir_num_requests_running", 0);
  ExpectSample(text, "kvasir_kv_cache_usage_ratio", 0);
  EXPECT_EQ(m->num_tracked_requests(), 0);
}

TEST(EngineMetricsTest, EventsForUnknownRequestsLeaveNothingBehind) {
  std::shared_ptr<EngineMetrics> m = NewMetrics();
  using K = RequestEventKind;
  m->OnRequestEvent(Event(K::kScheduled, "ghost", 0));
  m->OnRequestEvent(Event(K::kToken, "ghost", 1));
  m->OnRequestEvent(Event(K::kPreempted, "ghost", 2));
  m->OnRequestEvent(Event(K::kFinished, "ghost", 3, FinishReason::kError));
  EXPECT_EQ(m->num_tracked_requests(), 0);
  const std::string text = m->registry().Serialize();
  ExpectSample(text, "kvasir_requests_finished_total{finish_reason=\"error\"}", 1);
  ExpectSample(text, "kvasir_e2e_request_latency_seconds_count", 0);
  ExpectSample(text, "kvasir_num_requests_swapped", 0);
}

TEST(EngineMetricsTest, LoadsSourceIsSampledAtScrapeTime) {
  std::shared_ptr<EngineMetrics> m = NewMetrics();
  EXPECT_FALSE(SampleValue(m->registry().Serialize(), "kvasir_engine_loop_alive").has_value());
  EngineLoads loads;
  loads.num_running = 3;
  loads.num_waiting = 7;
  loads.kv_usage = 0.5;
  loads.loop_alive = true;
  loads.stalled_seconds = 2.5;
  m->SetLoadsSource([&loads] { return loads; });
  std::string text = m->registry().Serialize();
  ExpectSample(text, "kvasir_num_requests_running", 3);
  ExpectSample(text, "kvasir_num_requests_waiting", 7);
  ExpectSample(text, "kvasir_kv_cache_usage_ratio", 0.5);
  ExpectSample(text, "kvasir_engine_loop_alive", 1);
  ExpectSample(text, "kvasir_engine_stalled_seconds", 2.5);
  loads.loop_alive = false;
  ExpectSample(m->registry().Serialize(), "kvasir_engine_loop_alive", 0);
  m->SetLoadsSource(nullptr);
  loads.num_waiting = 100;
  ExpectSample(m->registry().Serialize(), "kvasir_num_requests_waiting", 7);
}

TEST(EngineMetricsTest, InfoGaugesCarryTheirLabels) {
  std::shared_ptr<EngineMetrics> m = NewMetrics();
  ModelInfo info;
  info.name = "SmolLM2-135M-Instruct.Q4_1.gguf";
  info.architecture = "LlamaForCausalLM";
  info.format = "gguf";
  info.weight_dtype = "Q4_1";
  info.kernels = "avx2";
  info.kv_block_size = 16;
  info.kv_num_blocks = 512;
  info.prefix_caching = true;
  ASSERT_TRUE(m->SetModelInfo(info).ok());
  EXPECT_EQ(m->SetModelInfo(info).code(), absl::StatusCode::kFailedPrecondition);
  const std::string text = m->registry().Serialize();
  ExpectSample(text, "kvasir_build_info{version=\"1.2.3\",revision=\"abc\"}", 1);
  ExpectSample(text,
               "kvasir_model_info{name=\"SmolLM2-135M-Instruct.Q4_1.gguf\","
               "architecture=\"LlamaForCausalLM\",format=\"gguf\",weight_dtype=\"Q4_1\","
               "kernels=\"avx2\"}",
               1);
  ExpectSample(text,
               "kvasir_cache_config_info{block_size=\"16\",num_gpu_blocks=\"512\","
               "prefix_caching=\"true\"}",
               1);
  ExpectSample(text, "kvasir_kv_cache_blocks", 512);
  ExpectSample(text, "kvasir_kv_cache_block_size_tokens", 16);
}

TEST(EngineMetricsTest, ServerFamiliesCountByLabel) {
  std::shared_ptr<EngineMetrics> m = NewMetrics();
  m->RecordRejected("queue_full");
  m->RecordRejected("queue_full");
  m->RecordGrpc("Generate", absl::StatusCode::kOk);
  m->RecordGrpc("Generate", absl::StatusCode::kResourceExhausted);
  m->RecordHttp("POST", "/v1/completions", 200);
  const std::string text = m->registry().Serialize();
  ExpectSample(text, "kvasir_requests_rejected_total{reason=\"queue_full\"}", 2);
  ExpectSample(text, "kvasir_grpc_requests_total{method=\"Generate\",code=\"OK\"}", 1);
  ExpectSample(text, "kvasir_grpc_requests_total{method=\"Generate\",code=\"RESOURCE_EXHAUSTED\"}",
               1);
  ExpectSample(
      text, "kvasir_http_requests_total{method=\"POST\",path=\"/v1/completions\",code=\"200\"}", 1);
}

TEST(EngineMetricsTest, CompiledBuildInfoIsFilledIn) {
  const BuildInfo build = CompiledBuildInfo();
  EXPECT_FALSE(build.version.empty());
  EXPECT_FALSE(build.revision.empty());
}

}  // namespace
}  // namespace kvasir
