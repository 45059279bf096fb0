#include "server/http/openai_service.h"

#include <deque>
#include <mutex>
#include <random>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "server/http/openai_error.h"
#include "server/http/openai_response.h"

namespace kvasir::server::http {

namespace {

using json = nlohmann::json;

constexpr char kJson[] = "application/json";
constexpr char kRequestIdHeader[] = "x-request-id";

// "cmpl-" / "chatcmpl-" and 24 hex digits: a random 64-bit prefix per process and a counter.
std::string NewId(Endpoint endpoint) {
  static const uint64_t base = [] {
    std::random_device device;
    return (uint64_t{device()} << 32) | device();
  }();
  static std::atomic<uint64_t> counter{0};
  return absl::StrFormat("%s%016x%08x", endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-", base,
                         static_cast<uint32_t>(counter.fetch_add(1)));
}

void ReplyJson(HttpExchange& exchange, int status, const json& body) {
  exchange.Reply(status, kJson, Dump(body));
}

// One accepted completion; see the header for its threads and lifetime.
class Call : public std::enable_shared_from_this<Call> {
 public:
  Call(std::shared_ptr<HttpExchange> exchange, ResponseContext context, bool stream, Engine* engine,
       LiveCallCount live_calls)
      : live_(std::move(live_calls)),
        exchange_(std::move(exchange)),
        executor_(exchange_->executor()),
        builder_(std::move(context)),
        stream_(stream),
        engine_(engine) {}

  // Engine thread: queue, and wake the loop if nobody has yet.
  void Enqueue(RequestOutput output) {
    bool post = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.push_back(std::move(output));
      post = !posted_;
      posted_ = true;
    }
    if (post) executor_->Post([self = shared_from_this()] { self->Drain(); });
  }

  // Loop thread, after a successful Submit.
  void Start() {
    std::weak_ptr<Call> weak = weak_from_this();
    exchange_->SetOnClientGone([weak, engine = engine_, id = builder_.context().id] {
      if (weak.lock()) engine->Abort(id);
    });
    if (stream_) {
      exchange_->AddHeader("Cache-Control", "no-cache");
      exchange_->StartStream(200, "text/event-stream; charset=utf-8");
    }
  }

 private:
  // Loop thread: everything queued since the last drain, written as one chunk.
  void Drain() {
    std::deque<RequestOutput> batch;
    {
      std::lock_guard<std::mutex> lock(mu_);
      batch.swap(pending_);
      posted_ = false;
    }
    std::string events;
    for (RequestOutput& output : batch) Handle(output, events);
    if (exchange_ != nullptr) exchange_->Send(events);
    if (finished_ && exchange_ != nullptr) End();
  }

  void Handle(const RequestOutput& output, std::string& events) {
    if (output.final_output) finished_ = true;
    if (failed_) return;  // an error was answered; the rest only drains
    if (output.finish_reason == FinishReason::kError) {
      failed_ = true;
      error_ = ToHttpError(output.error.ok() ? absl::InternalError("engine error") : output.error);
      if (stream_) events += ResponseBuilder::StreamError(*error_);
      if (!output.final_output) engine_->Abort(builder_.context().id);  // the other choices
      return;
    }
    if (stream_) {
      events += builder_.StreamEvents(output);
    } else {
      builder_.Add(output);
    }
  }

  // The request's final output was handled: end the response and let go of the exchange.
  void End() {
    if (stream_) {
      if (!failed_) exchange_->Send(builder_.StreamEnd());
      exchange_->EndStream();
    } else if (failed_) {
      exchange_->Reply(error_->status, kJson, ErrorJson(*error_));
    } else {
      exchange_->Reply(200, kJson, builder_.Response());
    }
    exchange_->SetOnClientGone(nullptr);
    exchange_.reset();
  }

  LiveCall live_;
  std::shared_ptr<HttpExchange> exchange_;  // loop thread; null after End
  const std::shared_ptr<LoopExecutor> executor_;
  ResponseBuilder builder_;  // loop thread
  const bool stream_;
  Engine* const engine_;
  bool finished_ = false;  // loop thread: the final output was handled
  bool failed_ = false;
  std::optional<HttpError> error_;

  std::mutex mu_;
  std::deque<RequestOutput> pending_ ABSL_GUARDED_BY(mu_);
  bool posted_ ABSL_GUARDED_BY(mu_) = false;  // a Drain task is queued
};

class CallSink final : public RequestSink {
 public:
  explicit CallSink(std::shared_ptr<Call> call) : call_(std::move(call)) {}
  void OnOutput(RequestOutput output) override { call_->Enqueue(std::move(output)); }

 private:
  const std::shared_ptr<Call> call_;
};

const char* RejectionReason(int http_status) {
  switch (http_status) {
    case 429:
      return "queue_full";
    case 503:
      return "shutting_down";
    default:
      return http_status < 500 ? "invalid_argument" : "internal";
  }
}

absl::Status Loading() { return absl::UnavailableError("the model is still loading"); }

}  // namespace

OpenAiService::OpenAiService(Engine* engine, std::shared_ptr<EngineMetrics> metrics,
                             OpenAiServiceOptions options)
    : metrics_(std::move(metrics)),
      options_(std::move(options)),
      created_(absl::ToUnixSeconds(absl::Now())) {
  if (engine != nullptr) SetEngine(engine);
}

void OpenAiService::SetEngine(Engine* engine) {
  const ModelInfo& info = engine->model_info();
  model_.name = options_.served_model_name.empty() ? info.name : options_.served_model_name;
  model_.tokenizer = engine->tokenizer();
  model_.max_model_len = info.max_model_len;
  model_.kv_capacity_tokens = int64_t{info.kv_num_blocks} * info.kv_block_size;
  model_.engine = engine;
  // Publishes model_: handlers read it only after loading a non-null engine_.
  engine_.store(engine, std::memory_order_release);
}

void OpenAiService::Configure(HttpServerOptions& options) {
  auto route = [this](const char* method, const char* path,
                      void (OpenAiService::*handler)(const std::shared_ptr<HttpExchange>&)) {
    return HttpRoute{method, path,
                     [this, handler](std::shared_ptr<HttpExchange> e) { (this->*handler)(e); }};
  };
  options.routes = {
      route("GET", "/health", &OpenAiService::HandleHealth),
      route("GET", "/ready", &OpenAiService::HandleReady),
      route("GET", "/metrics", &OpenAiService::HandleMetrics),
      route("GET", "/v1/models", &OpenAiService::HandleModels),
      HttpRoute{
          "POST", "/v1/completions",
          [this](std::shared_ptr<HttpExchange> e) { HandleCompletion(e, Endpoint::kCompletions); }},
      HttpRoute{"POST", "/v1/chat/completions",
                [this](std::shared_ptr<HttpExchange> e) { HandleCompletion(e, Endpoint::kChat); }},
  };
  options.error_body = [](int status, absl::string_view message) {
    return std::make_pair(std::string(kJson), ErrorJson(HttpErrorFor(status, message)));
  };
  options.on_response = [metrics = metrics_](std::string_view method, std::string_view route,
                                             int status) {
    if (metrics) metrics->RecordHttp(method, route, status);
  };
}

void OpenAiService::HandleHealth(const std::shared_ptr<HttpExchange>& exchange) {
  ReplyJson(*exchange, 200, {{"status", "ok"}});
}

void OpenAiService::HandleReady(const std::shared_ptr<HttpExchange>& exchange) {
  Engine* const engine = engine_.load(std::memory_order_acquire);
  const EngineLoads loads = engine != nullptr ? engine->GetLoads() : EngineLoads();
  std::string problem;
  if (engine == nullptr) {
    problem = "the model is still loading";
  } else if (draining_.load()) {
    problem = "the server is draining for shutdown";
  } else if (!loads.loop_alive) {
    problem = "the engine loop is not running";
  } else if (loads.stalled_seconds >= absl::ToDoubleSeconds(options_.stall_timeout)) {
    problem = absl::StrFormat("the engine has made no progress for %.1f s", loads.stalled_seconds);
  }
  if (problem.empty()) return ReplyJson(*exchange, 200, {{"status", "ready"}});
  exchange->Reply(503, kJson, ErrorJson(HttpErrorFor(503, problem)));
}

void OpenAiService::HandleModels(const std::shared_ptr<HttpExchange>& exchange) {
  Engine* const engine = engine_.load(std::memory_order_acquire);
  if (engine == nullptr) return Reject(exchange, Loading());
  json model = {{"id", model_.name},
                {"object", "model"},
                {"created", created_},
                {"owned_by", "kvasir"},
                {"root", engine->model_info().name},
                {"max_model_len", model_.max_model_len}};
  ReplyJson(*exchange, 200, {{"object", "list"}, {"data", json::array({std::move(model)})}});
}

void OpenAiService::HandleMetrics(const std::shared_ptr<HttpExchange>& exchange) {
  if (metrics_ == nullptr) {
    exchange->Reply(404, kJson, ErrorJson(HttpErrorFor(404, "metrics are not enabled")));
    return;
  }
  exchange->Reply(200, "text/plain; version=0.0.4; charset=utf-8",
                  metrics_->registry().Serialize());
}

void OpenAiService::Reject(const std::shared_ptr<HttpExchange>& exchange,
                           const absl::Status& status) {
  const HttpError error = ToHttpError(status);
  if (error.status == 429) exchange->AddHeader("Retry-After", "1");
  if (metrics_) metrics_->RecordRejected(RejectionReason(error.status));
  exchange->Reply(error.status, kJson, ErrorJson(error));
}

absl::StatusOr<OpenAiRequest> OpenAiService::Parse(const HttpExchange& exchange,
                                                   Endpoint endpoint) const {
  absl::StatusOr<json> body = ParseJsonBody(exchange.body());
  if (!body.ok()) return body.status();
  if (endpoint == Endpoint::kCompletions) return ParseCompletionRequest(*body, model_);
  return ParseChatRequest(*body, model_);
}

void OpenAiService::HandleCompletion(const std::shared_ptr<HttpExchange>& exchange,
                                     Endpoint endpoint) {
  Engine* const engine = engine_.load(std::memory_order_acquire);
  if (engine == nullptr) return Reject(exchange, Loading());
  if (draining_.load()) {
    return Reject(exchange,
                  absl::UnavailableError("the server is draining for shutdown; send the request to "
                                         "another replica"));
  }
  // The engine id (and the response's `id`) is always ours: clients and proxies reuse
  // x-request-id (an Envoy retry keeps it while the first attempt may still be live), and the
  // engine requires live ids to be unique. The header is only echoed.
  const std::string id = NewId(endpoint);
  std::optional<std::string> client_id = exchange->RequestHeader(kRequestIdHeader);
  exchange->AddHeader(kRequestIdHeader, client_id && !client_id->empty() ? *client_id : id);
  absl::StatusOr<OpenAiRequest> request = Parse(*exchange, endpoint);
  if (!request.ok()) return Reject(exchange, request.status());

  ResponseContext context;
  context.endpoint = endpoint;
  context.id = id;
  context.created = absl::ToUnixSeconds(absl::Now());
  context.model = model_.name;
  context.n = request->engine.n;
  context.top_logprobs = request->top_logprobs;
  context.include_usage = request->include_usage;
  context.tokenizer = model_.tokenizer;
  auto call =
      std::make_shared<Call>(exchange, std::move(context), request->stream, engine, live_calls_);
  request->engine.id = id;
  // The sink's first output reaches the loop as a posted task, so it runs after this handler.
  const absl::Status submitted =
      engine->Submit(std::move(request->engine), std::make_shared<CallSink>(call));
  if (!submitted.ok()) return Reject(exchange, submitted);
  call->Start();
}

}  // namespace kvasir::server::http
