// Owns the gRPC server: the Kvasir service, grpc.health.v1 and server reflection.
#ifndef KVASIR_SERVER_GRPC_SERVER_H_
#define KVASIR_SERVER_GRPC_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "server/kvasir_service.h"

namespace kvasir::server {

struct GrpcServerOptions {
  std::string host = "0.0.0.0";
  int port = 50051;  // 0 = pick a free port (see GrpcServer::port)
};

class GrpcServer {
 public:
  // Starts listening and marks the health service SERVING for "" and "kvasir.v1.Kvasir".
  // `engine` (loaded) is not owned and must outlive the server. Unavailable naming the address
  // when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const GrpcServerOptions& options,
                                                           Engine* engine);
  // Shuts down if not done yet.
  ~GrpcServer();
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // The bound port and "host:port".
  int port() const { return port_; }
  const std::string& address() const { return address_; }

  // Marks health NOT_SERVING, stops accepting calls, lets live calls finish until `deadline`
  // from now, then cancels the rest (their engine requests are aborted) and waits for them.
  // Call before Engine::Shutdown. Idempotent.
  void Shutdown(absl::Duration deadline);

 private:
  GrpcServer() = default;

  std::unique_ptr<KvasirService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
  bool shut_down_ = false;
};

}  // namespace kvasir::server

#endif  // KVASIR_SERVER_GRPC_SERVER_H_
