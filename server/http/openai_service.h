// The OpenAI-compatible API over HttpServer: /v1/completions, /v1/chat/completions, /v1/models,
// plus /health, /ready and /metrics. docs/API.md lists the fields and the error mapping.
//
// Threads and lifetimes of one completion (a `Call`):
//   - The HTTP loop thread parses and validates the body, tokenizes (chat: renders the template
//     first), and calls Engine::Submit with a sink holding the Call.
//   - The engine thread calls the sink: it queues the output in the Call under a small mutex and,
//     when the queue was empty, posts one task to the loop (LoopExecutor); it never blocks.
//   - The loop thread drains the queue and writes: SSE events for a stream, or the whole JSON
//     body at the request's final output. After the final output the Call lets go of its
//     exchange; the Call itself is freed when the engine drops the sink and the last task ran.
//   - A client that disconnects (HttpExchange's client-gone callback, on the loop) aborts the
//     engine request with Engine::Abort(id); the engine then sends its final kAbort output,
//     which the Call consumes without writing. So every engine request still ends with exactly
//     one final output, and its state is freed only after that.
#ifndef KVASIR_SERVER_HTTP_OPENAI_SERVICE_H_
#define KVASIR_SERVER_HTTP_OPENAI_SERVICE_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "server/http/http_server.h"
#include "server/http/openai_request.h"
#include "server/live_call.h"
#include "server/metrics/engine_metrics.h"

namespace kvasir::server::http {

struct OpenAiServiceOptions {
  std::string served_model_name;  // empty: the engine's model name
  // /ready turns 503 when the engine loop makes no progress for this long while it has work.
  absl::Duration stall_timeout = absl::Seconds(60);
};

class OpenAiService {
 public:
  // `engine` must outlive the service and the HTTP server using it; it may be null while the
  // model loads (then /health is 200, /ready and the API 503 until SetEngine). `metrics` may be
  // null (no /metrics, no request counts).
  OpenAiService(Engine* engine, std::shared_ptr<EngineMetrics> metrics,
                OpenAiServiceOptions options);
  OpenAiService(const OpenAiService&) = delete;
  OpenAiService& operator=(const OpenAiService&) = delete;

  // The loaded engine. Once, from any thread.
  void SetEngine(Engine* engine);
  // Sets the routes, the error body and the request counting of `options`.
  void Configure(HttpServerOptions& options);

  // From now on /ready answers 503 and new completions 503 (service_unavailable); requests
  // already accepted go on. Thread-safe.
  void SetDraining() { draining_.store(true); }
  // Completions accepted by the engine whose Call is still alive. Thread-safe.
  int num_live_calls() const { return live_calls_->load(); }

  // Valid after SetEngine.
  const std::string& model_name() const { return model_.name; }

 private:
  void HandleHealth(const std::shared_ptr<HttpExchange>& exchange);
  void HandleReady(const std::shared_ptr<HttpExchange>& exchange);
  void HandleModels(const std::shared_ptr<HttpExchange>& exchange);
  void HandleMetrics(const std::shared_ptr<HttpExchange>& exchange);
  void HandleCompletion(const std::shared_ptr<HttpExchange>& exchange, Endpoint endpoint);
  absl::StatusOr<OpenAiRequest> Parse(const HttpExchange& exchange, Endpoint endpoint) const;
  // Replies with the error object and status of `status` (429 adds Retry-After) and counts the
  // rejection.
  void Reject(const std::shared_ptr<HttpExchange>& exchange, const absl::Status& status);

  std::atomic<Engine*> engine_{nullptr};
  const std::shared_ptr<EngineMetrics> metrics_;
  const OpenAiServiceOptions options_;
  ServedModel model_;
  const int64_t created_;  // Unix seconds when the service started
  std::atomic<bool> draining_{false};
  LiveCallCount live_calls_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace kvasir::server::http

#endif  // KVASIR_SERVER_HTTP_OPENAI_SERVICE_H_
