// Counts every gRPC call by method and final status (kvasir_grpc_requests_total), with a server
// interceptor: one place for every service (Kvasir, health, reflection), including calls that
// end before a handler runs.
#ifndef KVASIR_SERVER_GRPC_METRICS_H_
#define KVASIR_SERVER_GRPC_METRICS_H_

#include <memory>

#include "grpcpp/support/server_interceptor.h"

namespace kvasir {
class EngineMetrics;
}  // namespace kvasir

namespace kvasir::server {

// `metrics` must outlive the server the factory is installed in.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewGrpcMetricsInterceptor(
    std::shared_ptr<EngineMetrics> metrics);

}  // namespace kvasir::server

#endif  // KVASIR_SERVER_GRPC_METRICS_H_
