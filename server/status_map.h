// The one place where absl::Status becomes a gRPC status (and a process exit code).
#ifndef KVASIR_SERVER_STATUS_MAP_H_
#define KVASIR_SERVER_STATUS_MAP_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace kvasir::server {

// absl::StatusCode values are gRPC's codes one for one; the message is kept verbatim.
// OK maps to grpc::Status::OK.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Exit code of a CLI command that failed with `status`: 0 for OK, 1 otherwise (2 is kept for
// command-line usage errors, which are not Status values).
int ToExitCode(const absl::Status& status);

}  // namespace kvasir::server

#endif  // KVASIR_SERVER_STATUS_MAP_H_
