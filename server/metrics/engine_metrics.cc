#include "server/metrics/engine_metrics.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"
#include "kernels/check.h"

namespace kvasir {
namespace {

using metrics::Counter;
using metrics::Gauge;
using metrics::Histogram;
using metrics::Registry;

// Request latencies, from a GPU's milliseconds to a CPU's minutes: 1-2.5-5 per decade.
std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,  1,
          2.5,   5,      10,    25,   50,    100,  250, 500,  1000, 2500};
}

// Per-token and per-step times: dense where GPU decode steps (5-50 ms) and CPU decode steps
// (50 ms-1 s) fall, so that a percentile moves when a step gets 10% slower.
std::vector<double> StepTimeBuckets() {
  return {0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075,
          0.1,   0.15,   0.2,   0.3,    0.4,  0.5,   0.75, 1,    2.5,  5,    10};
}

// Prompt and generation lengths in tokens: 1-2-5 per decade up to 100k.
std::vector<double> LengthBuckets() {
  return {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000};
}

// Powers of two from 1 to max.
std::vector<double> PowersOfTwo(double max) {
  std::vector<double> b;
  for (double v = 1; v <= max; v *= 2) b.push_back(v);
  return b;
}

absl::StatusOr<Counter*> AddCounter(Registry& r, std::string_view name, std::string_view help) {
  KV_ASSIGN_OR_RETURN(metrics::Family<Counter> * family, r.AddCounter(name, help));
  return &family->WithLabels({});
}

absl::StatusOr<Gauge*> AddGauge(Registry& r, std::string_view name, std::string_view help) {
  KV_ASSIGN_OR_RETURN(metrics::Family<Gauge> * family, r.AddGauge(name, help));
  return &family->WithLabels({});
}

absl::StatusOr<Histogram*> AddHistogram(Registry& r, std::string_view name, std::string_view help,
                                        std::vector<double> bounds) {
  KV_ASSIGN_OR_RETURN(metrics::Family<Histogram> * family,
                      r.AddHistogram(name, help, {}, std::move(bounds)));
  return &family->WithLabels({});
}

// The finish_reason label values are part of the metrics contract (docs/METRICS.md), so they are
// spelled here rather than borrowed from the engine's log names.
constexpr std::array<std::string_view, 5> kFinishReasonLabels = {"none", "stop", "length", "abort",
                                                                 "error"};

double Seconds(int64_t from_ns, int64_t to_ns) {
  return static_cast<double>(std::max<int64_t>(0, to_ns - from_ns)) * 1e-9;
}

}  // namespace

absl::StatusOr<std::shared_ptr<EngineMetrics>> EngineMetrics::Create(const BuildInfo& build) {
  std::shared_ptr<EngineMetrics> m(new EngineMetrics());
  KV_RETURN_IF_ERROR(m->RegisterGauges());
  KV_RETURN_IF_ERROR(m->RegisterCounters());
  KV_RETURN_IF_ERROR(m->RegisterHistograms());
  KV_RETURN_IF_ERROR(m->RegisterServerFamilies(build));
  m->registry_.AddCollectHook([raw = m.get()] { raw->CollectLoads(); });
  return m;
}

absl::Status EngineMetrics::RegisterGauges() {
  Registry& r = registry_;
  KV_ASSIGN_OR_RETURN(s_.running, AddGauge(r, "kvasir_num_requests_running",
                                           "Requests in the running batch (being prefilled or "
                                           "decoded)."));
  KV_ASSIGN_OR_RETURN(s_.waiting, AddGauge(r, "kvasir_num_requests_waiting",
                                           "Requests queued for scheduling, preempted ones "
                                           "included."));
  KV_ASSIGN_OR_RETURN(s_.swapped,
                      AddGauge(r, "kvasir_num_requests_swapped",
                               "Requests preempted (KV blocks taken back) that have not produced "
                               "a token since; they will be recomputed."));
  KV_ASSIGN_OR_RETURN(s_.kv_usage, AddGauge(r, "kvasir_kv_cache_usage_ratio",
                                            "Fraction of KV cache blocks held by requests, 0 to "
                                            "1."));
  KV_ASSIGN_OR_RETURN(f_.kv_blocks,
                      AddGauge(r, "kvasir_kv_cache_blocks", "KV cache blocks in the pool."));
  KV_ASSIGN_OR_RETURN(f_.kv_block_size, AddGauge(r, "kvasir_kv_cache_block_size_tokens",
                                                 "Tokens per KV cache block."));
  return absl::OkStatus();
}

absl::Status EngineMetrics::RegisterCounters() {
  Registry& r = registry_;
  KV_ASSIGN_OR_RETURN(s_.prefix_queried,
                      AddCounter(r, "kvasir_prefix_cache_queried_tokens_total",
                                 "Prompt tokens looked up in the prefix cache at admission."));
  KV_ASSIGN_OR_RETURN(s_.prefix_hits,
                      AddCounter(r, "kvasir_prefix_cache_hit_tokens_total",
                                 "Prompt tokens found in the prefix cache (not computed)."));
  KV_ASSIGN_OR_RETURN(s_.preemptions, AddCounter(r, "kvasir_preemptions_total",
                                                 "Requests preempted to free KV cache blocks."));
  KV_ASSIGN_OR_RETURN(s_.prompt_tokens,
                      AddCounter(r, "kvasir_prompt_tokens_total",
                                 "Prompt tokens of requests whose prefill completed."));
  KV_ASSIGN_OR_RETURN(s_.generation_tokens,
                      AddCounter(r, "kvasir_generation_tokens_total", "Tokens generated."));
  KV_ASSIGN_OR_RETURN(s_.computed_tokens,
                      AddCounter(r, "kvasir_computed_tokens_total",
                                 "Tokens whose K/V the model computed (prefill, recompute after "
                                 "preemption, decode)."));
  KV_ASSIGN_OR_RETURN(s_.steps, AddCounter(r, "kvasir_engine_steps_total", "Engine steps run."));
  KV_ASSIGN_OR_RETURN(metrics::Family<Counter> * finished,
                      r.AddCounter("kvasir_requests_finished_total",
                                   "Requests finished, by finish reason.", {"finish_reason"}));
  // Every real reason exists from the start (at 0), so rate() sees the first one.
  for (size_t i = 1; i < kFinishReasonLabels.size(); ++i) {
    s_.finished[i] = &finished->WithLabels({kFinishReasonLabels[i]});
  }
  s_.finished[0] = nullptr;  // kNone: never expected; created on first use
  f_.finished = finished;
  return absl::OkStatus();
}

absl::Status EngineMetrics::RegisterHistograms() {
  Registry& r = registry_;
  KV_ASSIGN_OR_RETURN(s_.ttft,
                      AddHistogram(r, "kvasir_time_to_first_token_seconds",
                                   "From arrival to the first generated token.", LatencyBuckets()));
  KV_ASSIGN_OR_RETURN(
      s_.inter_token,
      AddHistogram(r, "kvasir_inter_token_latency_seconds",
                   "Between consecutive generated tokens of a request.", StepTimeBuckets()));
  KV_ASSIGN_OR_RETURN(s_.e2e, AddHistogram(r, "kvasir_e2e_request_latency_seconds",
                                           "From arrival to the end of the request, any finish "
                                           "reason.",
                                           LatencyBuckets()));
  KV_ASSIGN_OR_RETURN(
      s_.queue_time, AddHistogram(r, "kvasir_request_queue_time_seconds",
                                  "From arrival to the first step that ran it.", LatencyBuckets()));
  KV_ASSIGN_OR_RETURN(
      s_.prefill_time,
      AddHistogram(r, "kvasir_request_prefill_time_seconds",
                   "From the first step that ran a request to its first token.", LatencyBuckets()));
  KV_ASSIGN_OR_RETURN(s_.decode_time,
                      AddHistogram(r, "kvasir_request_decode_time_seconds",
                                   "From a request's first token to its last.", LatencyBuckets()));
  KV_ASSIGN_OR_RETURN(s_.prompt_length,
                      AddHistogram(r, "kvasir_request_prompt_tokens",
                                   "Prompt length of finished requests.", LengthBuckets()));
  KV_ASSIGN_OR_RETURN(s_.generation_length,
                      AddHistogram(r, "kvasir_request_generation_tokens",
                                   "Tokens generated by finished requests.", LengthBuckets()));
  KV_ASSIGN_OR_RETURN(s_.step_tokens, AddHistogram(r, "kvasir_step_tokens",
                                                   "Tokens computed per engine step (prefill "
                                                   "chunks and decodes).",
                                                   PowersOfTwo(16384)));
  KV_ASSIGN_OR_RETURN(s_.step_sequences,
                      AddHistogram(r, "kvasir_step_sequences", "Sequences in each step's batch.",
                                   PowersOfTwo(1024)));
  KV_ASSIGN_OR_RETURN(
      s_.step_duration,
      AddHistogram(r, "kvasir_step_duration_seconds",
                   "Wall time of an engine step (schedule and model).", StepTimeBuckets()));
  return absl::OkStatus();
}

absl::Status EngineMetrics::RegisterServerFamilies(const BuildInfo& build) {
  Registry& r = registry_;
  KV_ASSIGN_OR_RETURN(f_.rejected, r.AddCounter("kvasir_requests_rejected_total",
                                                "Requests refused before reaching the engine, "
                                                "by reason.",
                                                {"reason"}));
  KV_ASSIGN_OR_RETURN(
      f_.grpc, r.AddCounter("kvasir_grpc_requests_total",
                            "gRPC calls handled, by method and status code.", {"method", "code"}));
  KV_ASSIGN_OR_RETURN(f_.http,
                      r.AddCounter("kvasir_http_requests_total",
                                   "HTTP requests handled, by method, route and status code.",
                                   {"method", "path", "code"}));
  KV_ASSIGN_OR_RETURN(f_.model_info,
                      r.AddGauge("kvasir_model_info", "The served model; the value is 1.",
                                 {"name", "architecture", "format", "weight_dtype", "kernels"}));
  KV_ASSIGN_OR_RETURN(f_.cache_config_info,
                      r.AddGauge("kvasir_cache_config_info",
                                 "The KV cache configuration; the value is 1. num_gpu_blocks is "
                                 "the pool size on any device (named as the EPP expects).",
                                 {"block_size", "num_gpu_blocks", "prefix_caching"}));
  KV_ASSIGN_OR_RETURN(metrics::Family<Gauge> * build_info,
                      r.AddGauge("kvasir_build_info", "The running build; the value is 1.",
                                 {"version", "revision"}));
  build_info->WithLabels({build.version, build.revision}).Set(1);
  return absl::OkStatus();
}

void EngineMetrics::OnRequestEvent(const RequestEvent& event) {
  if (event.kind == RequestEventKind::kArrived) return OnArrived(event);
  if (event.kind == RequestEventKind::kFinished) return OnFinished(event);
  auto it = requests_.find(event.uid);
  if (it == requests_.end()) return;  // attached after the request arrived: nothing to time
  RequestState& state = it->second;
  switch (event.kind) {
    case RequestEventKind::kScheduled:
      state.scheduled_ns = event.time_ns;
      s_.queue_time->Observe(Seconds(state.arrival_ns, event.time_ns));
      break;
    case RequestEventKind::kFirstToken:
    case RequestEventKind::kToken:
      OnToken(event, state);
      break;
    case RequestEventKind::kPreempted:
      OnPreempted(state);
      break;
    case RequestEventKind::kArrived:
    case RequestEventKind::kFinished:
      break;
  }
}

void EngineMetrics::OnArrived(const RequestEvent& event) {
  RequestState& state = requests_[event.uid];
  if (state.preempted) s_.swapped->Decrement();  // a uid seen twice (tests): start over
  state = RequestState{.arrival_ns = event.time_ns};
  // Waiting until the step that schedules it reports (it runs right after admission).
  s_.waiting->Increment();
}

void EngineMetrics::OnToken(const RequestEvent& event, RequestState& state) {
  if (state.first_token_ns == 0) {
    // The first token (also when a preemption during prefill made the engine recompute it).
    state.first_token_ns = event.time_ns;
    s_.ttft->Observe(Seconds(state.arrival_ns, event.time_ns));
    if (state.scheduled_ns != 0) {
      s_.prefill_time->Observe(Seconds(state.scheduled_ns, event.time_ns));
    }
    s_.prompt_tokens->Increment(event.num_prompt_tokens);
  } else {
    // After a preemption this gap includes the recompute: it is what the client waited.
    s_.inter_token->Observe(Seconds(state.last_token_ns, event.time_ns));
  }
  state.last_token_ns = event.time_ns;
  s_.generation_tokens->Increment();
  if (state.preempted) {
    state.preempted = false;
    s_.swapped->Decrement();
  }
}

void EngineMetrics::OnPreempted(RequestState& state) {
  s_.preemptions->Increment();
  if (!state.preempted) {
    state.preempted = true;
    s_.swapped->Increment();
  }
}

void EngineMetrics::OnFinished(const RequestEvent& event) {
  const auto reason = static_cast<size_t>(event.finish_reason);
  Counter* finished = reason < s_.finished.size() ? s_.finished[reason] : nullptr;
  if (finished == nullptr) finished = &f_.finished->WithLabels({"none"});
  finished->Increment();
  auto it = requests_.find(event.uid);
  if (it == requests_.end()) return;
  const RequestState state = it->second;
  requests_.erase(it);
  s_.e2e->Observe(Seconds(state.arrival_ns, event.time_ns));
  if (state.first_token_ns != 0) {
    s_.decode_time->Observe(Seconds(state.first_token_ns, state.last_token_ns));
  }
  s_.prompt_length->Observe(event.num_prompt_tokens);
  s_.generation_length->Observe(event.num_generated_tokens);
  if (state.preempted) s_.swapped->Decrement();
  if (requests_.empty()) {
    // Nothing live: exact, whatever the last step reported.
    s_.running->Set(0);
    s_.waiting->Set(0);
    s_.swapped->Set(0);
    s_.kv_usage->Set(0);
    return;
  }
  // Until the next step reports: a request never scheduled, or preempted, was waiting.
  Gauge* gauge = state.scheduled_ns == 0 || state.preempted ? s_.waiting : s_.running;
  gauge->Set(std::max(0.0, gauge->Value() - 1));
}

void EngineMetrics::OnStep(const StepEvent& event) {
  s_.running->Set(event.num_running);
  s_.waiting->Set(event.num_waiting);
  s_.kv_usage->Set(event.kv_usage);
  s_.steps->Increment();
  s_.step_tokens->Observe(event.num_prefill_tokens + event.num_decode_tokens);
  s_.step_sequences->Observe(event.num_seqs);
  s_.step_duration->Observe(Seconds(event.start_ns, event.end_ns));
  // The scheduler's counters are cumulative; a smaller value means a new scheduler (restart).
  const auto delta = [](int64_t now, int64_t before) {
    return static_cast<double>(now >= before ? now - before : now);
  };
  const SchedulerCounters& c = event.counters;
  s_.prefix_queried->Increment(delta(c.prefix_query_tokens, last_counters_.prefix_query_tokens));
  s_.prefix_hits->Increment(delta(c.prefix_hit_tokens, last_counters_.prefix_hit_tokens));
  s_.computed_tokens->Increment(delta(c.computed_tokens, last_counters_.computed_tokens));
  last_counters_ = c;
}

absl::Status EngineMetrics::SetModelInfo(const ModelInfo& info) {
  if (model_info_set_.exchange(true)) {
    return absl::FailedPreconditionError("EngineMetrics::SetModelInfo was already called");
  }
  f_.model_info
      ->WithLabels({info.name, info.architecture, info.format, info.weight_dtype, info.kernels})
      .Set(1);
  f_.cache_config_info
      ->WithLabels({absl::StrCat(info.kv_block_size), absl::StrCat(info.kv_num_blocks),
                    info.prefix_caching ? "true" : "false"})
      .Set(1);
  f_.kv_blocks->Set(info.kv_num_blocks);
  f_.kv_block_size->Set(info.kv_block_size);
  return absl::OkStatus();
}

void EngineMetrics::SetLoadsSource(std::function<EngineLoads()> source) {
  std::lock_guard<std::mutex> lock(loads_mu_);
  loads_source_ = std::move(source);
  if (loop_alive_ != nullptr || !loads_source_) return;
  // Fixed, valid names registered once: failing here is a bug, not an input error.
  absl::StatusOr<Gauge*> alive = AddGauge(registry_, "kvasir_engine_loop_alive",
                                          "1 while the engine loop thread runs, else 0.");
  absl::StatusOr<Gauge*> stalled =
      AddGauge(registry_, "kvasir_engine_stalled_seconds",
               "Seconds since the engine loop last made progress while it has work; 0 when idle.");
  KV_CHECK(alive.ok() && stalled.ok()) << alive.status() << " " << stalled.status();
  loop_alive_ = *alive;
  stalled_seconds_ = *stalled;
}

void EngineMetrics::CollectLoads() {
  std::lock_guard<std::mutex> lock(loads_mu_);
  if (!loads_source_) return;
  const EngineLoads loads = loads_source_();
  s_.running->Set(loads.num_running);
  s_.waiting->Set(loads.num_waiting);
  s_.kv_usage->Set(loads.kv_usage);
  loop_alive_->Set(loads.loop_alive ? 1 : 0);
  stalled_seconds_->Set(loads.stalled_seconds);
}

void EngineMetrics::RecordRejected(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kResourceExhausted:
      return RecordRejected("queue_full");
    case absl::StatusCode::kUnavailable:
      return RecordRejected("shutting_down");
    case absl::StatusCode::kInvalidArgument:
      return RecordRejected("invalid_argument");
    default:
      return RecordRejected(absl::AsciiStrToLower(absl::StatusCodeToString(status.code())));
  }
}

void EngineMetrics::RecordRejected(std::string_view reason) {
  f_.rejected->WithLabels({reason}).Increment();
}

void EngineMetrics::RecordGrpc(std::string_view method, absl::StatusCode code) {
  f_.grpc->WithLabels({method, absl::StatusCodeToString(code)}).Increment();
}

void EngineMetrics::RecordHttp(std::string_view method, std::string_view path, int status_code) {
  f_.http->WithLabels({method, path, absl::StrCat(status_code)}).Increment();
}

}  // namespace kvasir
