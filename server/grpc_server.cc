#include "server/grpc_server.h"

#include <chrono>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/grpc_metrics.h"

namespace kvasir::server {

namespace {
constexpr char kServiceName[] = "kvasir.v1.Kvasir";
constexpr char kLiveness[] = "kvasir.liveness";
constexpr char kReadiness[] = "kvasir.readiness";
}  // namespace

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(const GrpcServerOptions& options,
                                                              Engine* engine) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  std::unique_ptr<GrpcServer> server(new GrpcServer());
  server->engine_.store(engine);
  server->stall_timeout_ = options.stall_timeout;
  server->service_ = std::make_unique<KvasirService>(engine, options.metrics.get());
  // IPv6 literals need brackets in a gRPC address.
  const std::string host =
      (options.host.find(':') != std::string::npos && options.host.front() != '[')
          ? absl::StrCat("[", options.host, "]")
          : options.host;
  const std::string requested = absl::StrCat(host, ":", options.port);
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, options.keepalive_time_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, options.keepalive_timeout_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Clients may ping as often as every 10 s without being told off (GOAWAY too_many_pings).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  if (options.max_connection_age_ms > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, options.max_connection_age_ms);
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, 30000);
  }
  builder.AddListeningPort(requested, grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(server->service_.get());
  if (options.metrics != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(NewGrpcMetricsInterceptor(options.metrics));
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", requested, " (address in use or not available)"));
  }
  server->address_ = absl::StrCat(host, ":", server->port_);
  if (grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService()) {
    health->SetServingStatus(kLiveness, true);
  }
  server->ready_ = engine != nullptr;  // the watchdog follows the engine's loop from here
  server->SetReady(server->ready_);
  server->watchdog_ = std::thread([s = server.get()] { s->Watchdog(); });
  return server;
}

GrpcServer::~GrpcServer() { Shutdown(absl::ZeroDuration()); }

void GrpcServer::SetReady(bool ready) {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  for (const char* name : {"", kServiceName, kReadiness}) health->SetServingStatus(name, ready);
}

void GrpcServer::SetEngine(Engine* engine) {
  service_->SetEngine(engine);
  engine_.store(engine);
  cv_.notify_all();  // the watchdog decides readiness now
}

void GrpcServer::Watchdog() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_watchdog_) {
    cv_.wait_for(lock, std::chrono::milliseconds(250));
    if (stop_watchdog_) break;
    Engine* const engine = engine_.load();
    if (engine == nullptr) continue;  // loading: NOT_SERVING until SetEngine
    const EngineLoads loads = engine->GetLoads();
    const bool ready = !draining_ && loads.loop_alive &&
                       loads.stalled_seconds < absl::ToDoubleSeconds(stall_timeout_);
    if (ready != ready_) {
      ready_ = ready;
      SetReady(ready);
      if (!ready && !draining_) {
        std::fprintf(stderr, "kvasir: readiness NOT_SERVING: engine loop %s (no step for %.1f s)\n",
                     loads.loop_alive ? "stalled" : "stopped", loads.stalled_seconds);
      }
    }
  }
}

void GrpcServer::Drain(absl::Duration timeout) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
    ready_ = false;
    SetReady(false);
  }
  service_->SetDraining();
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    // Done when the engine has nothing and every stream has been written out to its client.
    Engine* const engine = engine_.load();
    const EngineLoads loads = engine != nullptr ? engine->GetLoads() : EngineLoads();
    if (loads.num_running + loads.num_waiting == 0 && service_->live_calls() == 0) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void GrpcServer::Shutdown(absl::Duration deadline) {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_watchdog_ = true;
  }
  cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
    health->Shutdown();  // every service NOT_SERVING; no further changes
  }
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(deadline));
  server_->Wait();
}

}  // namespace kvasir::server
