// MakeCudaOps of a build without the CUDA toolkit (KVASIR_CUDA=OFF or none found).
#include "engine/ops.h"

namespace kvasir {

absl::StatusOr<std::unique_ptr<Ops>> MakeCudaOps(const CudaOpsOptions& /*options*/) {
  return absl::FailedPreconditionError(
      "this build has no CUDA backend (configure with the CUDA toolkit and -DKVASIR_CUDA=ON)");
}

}  // namespace kvasir
