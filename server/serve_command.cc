// kvasir serve.
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "server/cli_args.h"
#include "server/commands.h"
#include "server/engine_flags.h"
#include "server/grpc_server.h"
#include "server/http/http_server.h"
#include "server/http/openai_service.h"
#include "server/metrics/engine_metrics.h"

namespace kvasir::server {

namespace {

const FlagSpec kServeFlags[] = {
    {"model", true, "PATH", "GGUF file or model directory (default: the embedded SmolLM2)"},
    {"host", true, "HOST", "address to listen on (default 0.0.0.0)"},
    {"port", true, "PORT", "port to listen on; 0 picks a free one (default 50051)"},
    {"drain-timeout-s", true, "S",
     "on SIGTERM/SIGINT, how long in-flight requests may finish before they are cancelled "
     "(default 25: with the 2 s grace, inside Kubernetes' default 30 s termination period)"},
    {"stall-timeout-s", true, "S",
     "readiness turns NOT_SERVING when the engine makes no progress for this long (default 60)"},
    {"max-message-bytes", true, "N", "largest gRPC message (default 16777216)"},
    {"max-concurrent-streams", true, "N", "gRPC streams per connection (default 4096)"},
    {"keepalive-time-ms", true, "MS", "ping idle connections this often (default 30000)"},
    {"keepalive-timeout-ms", true, "MS", "drop them when a ping is unanswered (default 10000)"},
    {"max-connection-age-ms", true, "MS",
     "close connections after this age so clients re-balance behind a Service; 0 = never "
     "(default 0)"},
    {"http-port", true, "PORT",
     "port of the OpenAI-compatible HTTP API, /metrics, /health and /ready; 0 = no HTTP "
     "(default 8000)"},
    {"http-host", true, "HOST", "address for HTTP (default: --host)"},
    {"served-model-name", true, "NAME",
     "the model name the HTTP API answers to (default: the model file or directory name)"},
};

// After the drain, how long calls still live may run before they are cancelled.
constexpr absl::Duration kShutdownGrace = absl::Seconds(2);

// Each HTTP stream holds a socket: a thousand streams need more than the usual soft limit of
// 1024 descriptors. Raises the soft limit to the hard one.
void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    std::fprintf(stderr, "kvasir: cannot raise the open-file limit to %llu\n",
                 static_cast<unsigned long long>(limit.rlim_max));
  }
}

// Starts the HTTP front end on `port`; prints why and returns null when it cannot.
std::unique_ptr<http::HttpServer> StartHttp(const std::string& host, int port,
                                            http::OpenAiService* service) {
  http::HttpServerOptions options;
  options.host = host;
  options.port = port;
  service->Configure(options);
  absl::StatusOr<std::unique_ptr<http::HttpServer>> server =
      http::HttpServer::Start(std::move(options));
  if (!server.ok()) {
    std::fprintf(stderr, "kvasir serve: %s\n", server.status().ToString().c_str());
    return nullptr;
  }
  return *std::move(server);
}

// Waits until no HTTP response is open or being written and no accepted completion is live, or
// until `end`.
void DrainHttp(const http::HttpServer& server, const http::OpenAiService& service, absl::Time end) {
  while (absl::Now() < end && (server.num_live_exchanges() > 0 || service.num_live_calls() > 0)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
}

}  // namespace

std::string DefaultModelPath() {
  std::string cache;
  if (const char* c = std::getenv("KVASIR_CACHE"); c != nullptr && *c != '\0') {
    cache = c;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0') {
    cache = absl::StrCat(x, "/kvasir");
  } else {
    const char* home = std::getenv("HOME");
    cache = absl::StrCat(home != nullptr ? home : "", "/.cache/kvasir");
  }
  return absl::StrCat(cache, "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
}

int RunServe(absl::Span<const char* const> args) {
  const std::vector<FlagSpec> flags = WithEngineFlags(kServeFlags);
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(flags, args);
  if (!parsed.ok() || parsed->help) {
    if (!parsed.ok()) {
      std::fprintf(stderr, "kvasir serve: %s\n\n", std::string(parsed.status().message()).c_str());
    }
    std::fprintf(parsed.ok() ? stdout : stderr, "usage: kvasir serve [flags]\n\n%s",
                 FlagsHelp(flags).c_str());
    return parsed.ok() ? kExitOk : kExitUsage;
  }
  EngineOptions engine_options;
  GrpcServerOptions server_options;
  auto port = parsed->GetInt("port", 50051, 0, 65535);
  auto drain = parsed->GetInt("drain-timeout-s", 25, 0, 86400);
  auto stall = parsed->GetInt("stall-timeout-s", 60, 1, 86400);
  auto max_message =
      parsed->GetInt("max-message-bytes", server_options.max_message_bytes, 1024, INT32_MAX);
  auto streams =
      parsed->GetInt("max-concurrent-streams", server_options.max_concurrent_streams, 1, INT32_MAX);
  auto ka_time =
      parsed->GetInt("keepalive-time-ms", server_options.keepalive_time_ms, 1000, INT32_MAX);
  auto ka_timeout =
      parsed->GetInt("keepalive-timeout-ms", server_options.keepalive_timeout_ms, 100, INT32_MAX);
  auto age = parsed->GetInt("max-connection-age-ms", 0, 0, INT32_MAX);
  auto http_port = parsed->GetInt("http-port", 8000, 0, 65535);
  for (const absl::Status& s :
       {port.status(), drain.status(), stall.status(), max_message.status(), streams.status(),
        ka_time.status(), ka_timeout.status(), age.status(), http_port.status(),
        ReadEngineFlags(*parsed, &engine_options)}) {
    if (!s.ok()) {
      std::fprintf(stderr, "kvasir serve: %s\n", std::string(s.message()).c_str());
      return kExitUsage;
    }
  }
  server_options.host = parsed->GetString("host", server_options.host);
  server_options.port = static_cast<int>(*port);
  server_options.max_message_bytes = static_cast<int>(*max_message);
  server_options.max_concurrent_streams = static_cast<int>(*streams);
  server_options.keepalive_time_ms = static_cast<int>(*ka_time);
  server_options.keepalive_timeout_ms = static_cast<int>(*ka_timeout);
  server_options.max_connection_age_ms = static_cast<int>(*age);
  server_options.stall_timeout = absl::Seconds(*stall);
  engine_options.model_path = parsed->GetString("model", "");
  if (engine_options.model_path.empty()) {
    engine_options.model_path = DefaultModelPath();
    if (!std::filesystem::exists(engine_options.model_path)) {
      std::fprintf(stderr,
                   "kvasir serve: the default model %s is not there; run tools/setup.sh to "
                   "fetch it, or pass --model PATH\n",
                   engine_options.model_path.c_str());
      return kExitFailure;
    }
  }

  // SIGINT/SIGTERM are blocked in every thread (engine and gRPC threads inherit the mask) and
  // taken synchronously by one thread waiting in sigwait, so shutdown runs on this thread, not in
  // a handler. A signal while the model loads ends the process at once: nothing was accepted
  // yet, and a load can take minutes (an orchestrator would kill it anyway).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  static std::atomic<bool> loading{true};
  std::promise<int> signalled;
  std::future<int> signal_received = signalled.get_future();
  std::thread([signals, promise = std::move(signalled)]() mutable {
    int number = 0;
    sigwait(&signals, &number);
    if (loading.load()) {
      std::fprintf(stderr, "kvasir: %s received while loading the model: exiting\n",
                   number == SIGINT ? "SIGINT" : "SIGTERM");
      std::fflush(stderr);
      std::_Exit(kExitOk);
    }
    promise.set_value(number);
  }).detach();
  RaiseFileLimit();

  // The engine reports its events to the metrics; the HTTP side serves them at /metrics (and the
  // gRPC side may record into the same object).
  absl::StatusOr<std::shared_ptr<EngineMetrics>> metrics = EngineMetrics::Create();
  if (!metrics.ok()) {
    std::fprintf(stderr, "kvasir serve: %s\n", metrics.status().ToString().c_str());
    return kExitFailure;
  }
  engine_options.observer = *metrics;
  server_options.metrics = *metrics;  // gRPC calls and refusals are counted too

  // Listen first, load second: while a large model loads, liveness answers (so an orchestrator
  // does not restart the process) and readiness says "not yet".
  absl::StatusOr<std::unique_ptr<GrpcServer>> server = GrpcServer::Start(server_options, nullptr);
  if (!server.ok()) {
    std::fprintf(stderr, "kvasir serve: %s\n", server.status().ToString().c_str());
    return kExitFailure;
  }
  http::OpenAiServiceOptions http_service_options;
  http_service_options.served_model_name = parsed->GetString("served-model-name", "");
  http_service_options.stall_timeout = server_options.stall_timeout;
  http::OpenAiService http_service(nullptr, *metrics, http_service_options);
  std::unique_ptr<http::HttpServer> http_server;
  if (*http_port != 0) {
    http_server = StartHttp(parsed->GetString("http-host", server_options.host),
                            static_cast<int>(*http_port), &http_service);
    if (http_server == nullptr) {
      (*server)->Shutdown(absl::ZeroDuration());
      return kExitFailure;
    }
  }
  std::fprintf(stderr, "kvasir: listening on %s%s%s; loading %s\n", (*server)->address().c_str(),
               http_server != nullptr ? " and http " : "",
               http_server != nullptr ? http_server->address().c_str() : "",
               engine_options.model_path.c_str());
  std::fflush(stderr);
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(engine_options);
  if (!engine.ok()) {
    std::fprintf(stderr, "kvasir serve: %s\n", engine.status().ToString().c_str());
    if (http_server != nullptr) http_server->Stop();
    (*server)->Shutdown(absl::ZeroDuration());
    return kExitFailure;
  }
  (void)(*metrics)->SetModelInfo((*engine)->model_info());
  (*metrics)->SetLoadsSource([e = engine->get()] { return e->GetLoads(); });
  http_service.SetEngine(engine->get());
  (*server)->SetEngine(engine->get());
  loading.store(false);  // from now on a signal drains
  const ModelInfo& info = (*engine)->model_info();
  std::fprintf(stderr, "kvasir: serving %s (%s %s, max_model_len %lld) on %s, kernels: %s\n",
               info.name.c_str(), info.architecture.c_str(), info.weight_dtype.c_str(),
               static_cast<long long>(info.max_model_len), (*server)->address().c_str(),
               info.kernels.c_str());
  std::fprintf(stderr,
               "kvasir: send a request from the repository root with\n"
               "  .venv/bin/python tools/client.py --target localhost:%d --prompt \"Hello\"\n"
               "or, with grpcurl (reflection is on):\n"
               "  grpcurl -plaintext -d '{\"text\": \"Hello\", \"max_tokens\": 32}' "
               "localhost:%d kvasir.v1.Kvasir/Generate\n",
               (*server)->port(), (*server)->port());
  if (http_server != nullptr) {
    std::fprintf(stderr,
                 "kvasir: OpenAI-compatible HTTP API on %s (model \"%s\"), e.g.\n"
                 "  curl http://localhost:%d/v1/completions -H 'Content-Type: application/json' "
                 "-d '{\"model\": \"%s\", \"prompt\": \"Hello\", \"max_tokens\": 32}'\n",
                 http_server->address().c_str(), http_service.model_name().c_str(),
                 http_server->port(), http_service.model_name().c_str());
  }
  std::fflush(stderr);

  const int signal_number = signal_received.get();
  std::fprintf(stderr, "kvasir: %s received, draining (up to %lld s)\n",
               signal_number == SIGINT ? "SIGINT" : "SIGTERM", static_cast<long long>(*drain));
  std::fflush(stderr);
  const absl::Time drain_end = absl::Now() + absl::Seconds(*drain);
  http_service.SetDraining();               // /ready 503, new completions 503, live go on
  (*server)->Drain(absl::Seconds(*drain));  // readiness off, new calls UNAVAILABLE, live go on
  if (http_server != nullptr) DrainHttp(*http_server, http_service, drain_end);
  // Connections first: closing them aborts what is left of their requests.
  if (http_server != nullptr) http_server->Stop();
  (*server)->Shutdown(kShutdownGrace);  // calls first: cancelled calls abort their requests
  (*engine)->Shutdown();
  (*metrics)->SetLoadsSource(nullptr);
  http_server.reset();
  server->reset();
  engine->reset();
  std::fprintf(stderr, "kvasir: stopped\n");
  return kExitOk;
}

}  // namespace kvasir::server
