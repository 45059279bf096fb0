#include "server/grpc_metrics.h"

#include <string>
#include <utility>

#include "server/metrics/engine_metrics.h"

namespace kvasir::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(std::string method, EngineMetrics* metrics)
      : method_(std::move(method)), metrics_(metrics) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      metrics_->RecordGrpc(method_, static_cast<absl::StatusCode>(status.error_code()));
    }
    methods->Proceed();
  }

 private:
  const std::string method_;  // "/package.Service/Method"
  EngineMetrics* const metrics_;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(std::shared_ptr<EngineMetrics> metrics)
      : metrics_(std::move(metrics)) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(info->method(), metrics_.get());
  }

 private:
  const std::shared_ptr<EngineMetrics> metrics_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewGrpcMetricsInterceptor(
    std::shared_ptr<EngineMetrics> metrics) {
  return std::make_unique<MetricsInterceptorFactory>(std::move(metrics));
}

}  // namespace kvasir::server
