// EngineMetrics: engine events in, Prometheus metrics out (values asserted exactly, and the
// exposition accepted by the real promtool).
#include "server/metrics/engine_metrics.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kvasir {
namespace {

constexpr int64_t kMs = 1'000'000;  // nanoseconds

RequestEvent ScriptEvent(RequestEventKind kind, std::string_view id, int64_t ms, int32_t prompt,
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

// Feeds events as engine/engine.cc emits them (a step's kPreempted and kScheduled before its
// OnStep, token events after it, kFinished after the request's last token event):
//   "a": arrives at 0, scheduled at 100 ms, first token at 300 ms, a token at 350 ms,
//        preempted at 400 ms, recomputed, tokens at 600 and 650 ms, finished (length) at 660 ms;
//        10 prompt tokens, 4 generated.
//   "b": arrives at 200 ms and is aborted while waiting at 500 ms.
//   "c": arrives at 200 ms, scheduled at 400 ms, first token at 450 ms, preempted at 500 ms
//        and aborted at 550 ms before it is recomputed; 5 prompt tokens, 1 generated.
void RunScriptedHistory(EngineObserver& o) {
  using K = RequestEventKind;
  o.OnRequestEvent(ScriptEvent(K::kArrived, "a", 0, 10, 0));
  o.OnRequestEvent(ScriptEvent(K::kScheduled, "a", 100, 10, 0));
  o.OnStep(Step(0, {100, 300, 1, 10, 0, 1, 0, 0, 0.25, 10, 4, 6}));
  o.OnRequestEvent(ScriptEvent(K::kFirstToken, "a", 300, 10, 1));

  o.OnRequestEvent(ScriptEvent(K::kArrived, "b", 200, 3, 0));
  o.OnRequestEvent(ScriptEvent(K::kArrived, "c", 200, 5, 0));
  o.OnStep(Step(1, {300, 350, 1, 0, 1, 1, 2, 0, 0.25, 10, 4, 7}));
  o.OnRequestEvent(ScriptEvent(K::kToken, "a", 350, 10, 2));

  o.OnRequestEvent(ScriptEvent(K::kPreempted, "a", 400, 10, 2));
  o.OnRequestEvent(ScriptEvent(K::kScheduled, "c", 400, 5, 0));
  o.OnStep(Step(2, {400, 450, 1, 5, 0, 1, 2, 1, 0.5, 15, 4, 12}));
  o.OnRequestEvent(ScriptEvent(K::kFirstToken, "c", 450, 5, 1));

  o.OnRequestEvent(ScriptEvent(K::kFinished, "b", 500, 3, 0, FinishReason::kAbort));
  o.OnRequestEvent(ScriptEvent(K::kPreempted, "c", 500, 5, 1));
  o.OnStep(Step(3, {500, 600, 1, 11, 0, 1, 1, 1, 0.5, 15, 4, 23}));
  o.OnRequestEvent(ScriptEvent(K::kToken, "a", 600, 10, 3));

  o.OnRequestEvent(ScriptEvent(K::kFinished, "c", 610, 5, 1, FinishReason::kAbort));
  o.OnStep(Step(4, {620, 650, 1, 0, 1, 1, 0, 0, 0.5, 15, 4, 24}));
  o.OnRequestEvent(ScriptEvent(K::kToken, "a", 650, 10, 4));
  o.OnRequestEvent(ScriptEvent(K::kFinished, "a", 660, 10, 4, FinishReason::kLength));
}

// The value of the sample line `series value` (series with its labels, as serialized), or
// nullopt when there is no such line.
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

// ---- promtool: the real `promtool check metrics` (Debian package prometheus, installed by
// tools/setup.sh) over what EngineMetrics serves. A missing promtool fails the test: it is not
// skipped.

// The promtool on PATH, or an empty path.
std::filesystem::path FindPromtool() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path == nullptr ? "" : path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::filesystem::path candidate = std::filesystem::path(dir) / "promtool";
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

struct CheckResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// promtool check metrics < text
CheckResult CheckMetrics(const std::filesystem::path& promtool, const std::string& text) {
  const std::filesystem::path file =
      std::filesystem::path(::testing::TempDir()) / "kvasir_metrics_promtool_input.txt";
  std::ofstream(file) << text;
  const std::string command =
      absl::StrCat("'", promtool.string(), "' check metrics < '", file.string(), "' 2>&1");
  CheckResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) result.output.append(buf, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

class PromtoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    promtool_ = FindPromtool();
    ASSERT_FALSE(promtool_.empty())
        << "promtool is not on PATH. Install the Debian package 'prometheus' "
           "(bash tools/setup.sh does), then run this test again.";
  }
  std::filesystem::path promtool_;
};

TEST_F(PromtoolTest, PopulatedEngineMetricsPassCheckMetrics) {
  absl::StatusOr<std::shared_ptr<EngineMetrics>> m = EngineMetrics::Create();
  ASSERT_TRUE(m.ok()) << m.status();
  RunScriptedHistory(**m);
  ModelInfo info;
  info.name = "SmolLM2 \"135M\"\\Instruct";  // quotes and backslash: escaped in the label
  info.architecture = "LlamaForCausalLM";
  info.format = "gguf";
  info.weight_dtype = "Q4_1";
  info.kernels = "avx2";
  info.kv_block_size = 16;
  info.kv_num_blocks = 512;
  ASSERT_TRUE((*m)->SetModelInfo(info).ok());
  (*m)->SetLoadsSource([] {
    EngineLoads loads;
    loads.loop_alive = true;
    return loads;
  });
  (*m)->RecordRejected("queue_full");
  (*m)->RecordGrpc("Generate", absl::StatusCode::kInvalidArgument);
  (*m)->RecordHttp("GET", "/metrics", 200);
  const std::string text = (*m)->registry().Serialize();

  const CheckResult result = CheckMetrics(promtool_, text);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, "") << "exposition:\n" << text;
}

// The check above can fail: promtool does flag what the registry's rules keep out.
TEST_F(PromtoolTest, CheckMetricsFlagsACounterWithoutTotal) {
  const CheckResult result =
      CheckMetrics(promtool_, "# HELP jobs Jobs.\n# TYPE jobs counter\njobs 1\n");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("_total"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace kvasir
