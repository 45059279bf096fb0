// Argument checks of the host launchers (ops.cc, mla.cc, moe.cc): a failed check returns
// INVALID_ARGUMENT "<op>: <what>", naming the launcher and the field.
//   KV_CUDA_REQUIRE(rows >= 0, "RmsNorm", absl::StrCat("rows ", rows, " < 0"));
#ifndef KVASIR_KERNELS_CUDA_ARG_CHECK_H_
#define KVASIR_KERNELS_CUDA_ARG_CHECK_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvasir::cuda::internal {

inline absl::Status InvalidArgument(const char* op, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", what));
}

inline bool Aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

}  // namespace kvasir::cuda::internal

#define KV_CUDA_REQUIRE(cond, op, msg) \
  if (!(cond)) return ::kvasir::cuda::internal::InvalidArgument(op, msg)

#endif  // KVASIR_KERNELS_CUDA_ARG_CHECK_H_
