#include "server/status_map.h"

#include <string>

namespace kvasir::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode is defined as gRPC's code space (0..16); anything else is UNKNOWN.
  const int code = static_cast<int>(status.code());
  const grpc::StatusCode grpc_code =
      (code >= 0 && code <= 16) ? static_cast<grpc::StatusCode>(code) : grpc::StatusCode::UNKNOWN;
  return grpc::Status(grpc_code, std::string(status.message()));
}

int ToExitCode(const absl::Status& status) { return status.ok() ? 0 : 1; }

}  // namespace kvasir::server
