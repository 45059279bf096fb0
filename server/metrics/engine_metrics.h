// EngineMetrics: turns the engine's plain events (engine/events.h) into Prometheus metrics, and
// holds the families the server layer records into (rejections, gRPC and HTTP requests, build
// and model info). Every metric is listed, with its unit and meaning, in docs/METRICS.md.
//
//   KV_ASSIGN_OR_RETURN(std::shared_ptr<EngineMetrics> metrics, EngineMetrics::Create());
//   options.observer = metrics;                       // before Engine::Create
//   ... engine = Engine::Create(options) ...
//   metrics->SetModelInfo(engine->model_info());
//   metrics->SetLoadsSource([e = engine.get()] { return e->GetLoads(); });
//   ... GET /metrics: metrics->registry().Serialize()
//
// Threads: OnRequestEvent and OnStep run on the engine thread only (they keep per-request state
// without a lock; each is a hash lookup and a few atomic adds). Everything else is thread-safe.
#ifndef KVASIR_SERVER_METRICS_ENGINE_METRICS_H_
#define KVASIR_SERVER_METRICS_ENGINE_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/events.h"
#include "server/metrics/registry.h"

namespace kvasir {

struct BuildInfo {
  std::string version;
  std::string revision;  // git commit at configure time, "unknown" without git
};
// What CMake saw when the build was configured.
BuildInfo CompiledBuildInfo();

class EngineMetrics final : public EngineObserver {
 public:
  // Registers every family in a registry of its own and sets kvasir_build_info.
  static absl::StatusOr<std::shared_ptr<EngineMetrics>> Create(
      const BuildInfo& build = CompiledBuildInfo());
  EngineMetrics(const EngineMetrics&) = delete;
  EngineMetrics& operator=(const EngineMetrics&) = delete;

  // EngineObserver, engine thread only.
  void OnRequestEvent(const RequestEvent& event) override;
  void OnStep(const StepEvent& event) override;

  // Sets kvasir_model_info, kvasir_cache_config_info and the KV pool gauges. Once: a second call
  // returns FailedPrecondition (info series are never removed, so new labels would add a second
  // series rather than replace the first).
  absl::Status SetModelInfo(const ModelInfo& info);
  // From then on every scrape samples the engine's loads: running/waiting requests and KV usage
  // (fresher than the last step's event, which is what they show without a source), and loop
  // health (kvasir_engine_loop_alive, kvasir_engine_stalled_seconds: absent until this call).
  // source must be thread-safe (Engine::GetLoads is); it is called under a lock, so that
  // SetLoadsSource(nullptr) before the engine goes away waits for a scrape that is using it.
  void SetLoadsSource(std::function<EngineLoads()> source);

  // For the server layer, from any thread. Label values must come from small fixed sets (each
  // distinct value is a time series kept forever): reason e.g. "queue_full", "invalid_argument",
  // "shutting_down"; method the RPC's short name ("Generate"); path the route as registered
  // ("/v1/completions"), never the raw request URL.
  void RecordRejected(std::string_view reason);
  // A request refused before reaching the engine with `status`: reason queue_full
  // (ResourceExhausted), shutting_down (Unavailable), invalid_argument, or the code's name.
  void RecordRejected(const absl::Status& status);
  void RecordGrpc(std::string_view method, absl::StatusCode code);
  void RecordHttp(std::string_view method, std::string_view path, int status_code);

  // Requests between kArrived and kFinished that the observer keeps state for. Engine thread
  // only (tests check that finished, aborted and preempted requests leave nothing behind).
  size_t num_tracked_requests() const { return requests_.size(); }

  metrics::Registry& registry() { return registry_; }
  const metrics::Registry& registry() const { return registry_; }

 private:
  // Engine-thread state of a request between kArrived and kFinished (0 = not reached).
  struct RequestState {
    int64_t arrival_ns = 0;
    int64_t scheduled_ns = 0;
    int64_t first_token_ns = 0;
    int64_t last_token_ns = 0;
    bool preempted = false;  // preempted and no token since: counted in num_requests_swapped
  };
  // Handles resolved once at Create, so that events only do atomic adds.
  struct Series {
    metrics::Gauge* running;
    metrics::Gauge* waiting;
    metrics::Gauge* swapped;
    metrics::Gauge* kv_usage;
    metrics::Counter* prefix_queried;
    metrics::Counter* prefix_hits;
    metrics::Counter* preemptions;
    metrics::Counter* prompt_tokens;
    metrics::Counter* generation_tokens;
    metrics::Counter* computed_tokens;
    metrics::Counter* steps;
    std::array<metrics::Counter*, 5> finished;  // by FinishReason
    metrics::Histogram* ttft;
    metrics::Histogram* inter_token;
    metrics::Histogram* e2e;
    metrics::Histogram* queue_time;
    metrics::Histogram* prefill_time;
    metrics::Histogram* decode_time;
    metrics::Histogram* prompt_length;
    metrics::Histogram* generation_length;
    metrics::Histogram* step_tokens;
    metrics::Histogram* step_sequences;
    metrics::Histogram* step_duration;
  };
  struct Families {
    metrics::Family<metrics::Counter>* finished;
    metrics::Family<metrics::Counter>* rejected;
    metrics::Family<metrics::Counter>* grpc;
    metrics::Family<metrics::Counter>* http;
    metrics::Family<metrics::Gauge>* model_info;
    metrics::Family<metrics::Gauge>* cache_config_info;
    metrics::Gauge* kv_blocks;
    metrics::Gauge* kv_block_size;
  };

  EngineMetrics() = default;
  absl::Status RegisterGauges();
  absl::Status RegisterCounters();
  absl::Status RegisterHistograms();
  absl::Status RegisterServerFamilies(const BuildInfo& build);

  void OnArrived(const RequestEvent& event);
  void OnToken(const RequestEvent& event, RequestState& state);
  void OnPreempted(RequestState& state);
  void OnFinished(const RequestEvent& event);
  void CollectLoads();

  metrics::Registry registry_;
  Series s_{};
  Families f_{};
  std::atomic<bool> model_info_set_{false};
  std::mutex loads_mu_;
  std::function<EngineLoads()> loads_source_ ABSL_GUARDED_BY(loads_mu_);
  // Registered by the first SetLoadsSource: without a source the loop's health is unknown.
  metrics::Gauge* loop_alive_ ABSL_GUARDED_BY(loads_mu_) = nullptr;
  metrics::Gauge* stalled_seconds_ ABSL_GUARDED_BY(loads_mu_) = nullptr;

  // Engine thread only.
  absl::flat_hash_map<uint64_t, RequestState> requests_;  // by RequestEvent::uid (per choice)
  SchedulerCounters last_counters_;                       // cumulative, from the previous step
};

}  // namespace kvasir

#endif  // KVASIR_SERVER_METRICS_ENGINE_METRICS_H_
