// Owns the gRPC server: the Kvasir service, grpc.health.v1 and server reflection.
#ifndef KVASIR_SERVER_GRPC_SERVER_H_
#define KVASIR_SERVER_GRPC_SERVER_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "server/kvasir_service.h"

namespace kvasir {
class EngineMetrics;
}  // namespace kvasir

namespace kvasir::server {

struct GrpcServerOptions {
  std::string host = "0.0.0.0";
  int port = 50051;                   // 0 = pick a free port (see GrpcServer::port)
  int max_message_bytes = 16 << 20;   // largest request accepted
  int max_concurrent_streams = 4096;  // per HTTP/2 connection
  int keepalive_time_ms = 30000;      // server pings idle connections this often
  int keepalive_timeout_ms = 10000;   // and closes them when a ping is not answered
  int max_connection_age_ms = 0;      // 0 = forever; >0 spreads clients behind a Service
  absl::Duration stall_timeout = absl::Seconds(60);  // watchdog: readiness off past this
  // Counts calls by method and status, and refused requests; null = no metrics.
  std::shared_ptr<EngineMetrics> metrics;
};

class GrpcServer {
 public:
  // Starts listening. Health (grpc.health.v1) names: "kvasir.liveness" is SERVING while the
  // process runs; "kvasir.readiness", "" and "kvasir.v1.Kvasir" are SERVING while the engine
  // loop is alive and not stalled (a watchdog thread checks every 250 ms) and the server is not
  // draining.
  // `engine` is not owned and must outlive the server; null while the model loads: liveness is
  // SERVING, readiness NOT_SERVING and every Kvasir call UNAVAILABLE until SetEngine.
  // Unavailable naming the address when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const GrpcServerOptions& options,
                                                           Engine* engine);
  // Shuts down if not done yet.
  ~GrpcServer();
  // The loaded engine (see Start); readiness follows its loop from now on.
  void SetEngine(Engine* engine);
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // The bound port and "host:port".
  int port() const { return port_; }
  const std::string& address() const { return address_; }

  // Graceful drain: readiness NOT_SERVING at once and new Generate/Complete calls UNAVAILABLE,
  // while health checks and live calls go on; returns when no request is running or waiting in
  // the engine and every Generate/Complete call is done, or after `timeout`. Then call Shutdown.
  void Drain(absl::Duration timeout);
  // Marks health NOT_SERVING, stops accepting calls, lets live calls finish until `deadline`
  // from now, then cancels the rest (their engine requests are aborted) and waits for them.
  // Call before Engine::Shutdown. Idempotent.
  void Shutdown(absl::Duration deadline);

 private:
  GrpcServer() = default;

  void Watchdog();
  void SetReady(bool ready);

  std::atomic<Engine*> engine_{nullptr};
  absl::Duration stall_timeout_;
  std::unique_ptr<KvasirService> service_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_watchdog_ = false;  // guarded by mu_
  bool draining_ = false;       // guarded by mu_
  bool ready_ = false;          // guarded by mu_
  std::thread watchdog_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
  bool shut_down_ = false;
};

}  // namespace kvasir::server

#endif  // KVASIR_SERVER_GRPC_SERVER_H_
