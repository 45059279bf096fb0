// The bf16 GEMM of every linear layer through cuBLASLt: y[m, n] = x[m, k] * w[n, k]^T (+ bias[n]),
// w in the [out, in] layout of the weight files, bf16 operands, fp32 accumulation, y bf16 or
// float32 (logits). The algorithm is cuBLASLt's heuristic first choice for the shape, asked once
// per (m, n, k, output type, bias, operand alignment) and cached with its descriptors.
//
// Not thread-safe, and its workspace is shared by every call: use one per stream.
#ifndef KVASIR_KERNELS_CUDA_GEMM_H_
#define KVASIR_KERNELS_CUDA_GEMM_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/kernel_args.h"
#include "kernels/dtype.h"

namespace kvasir::cuda {

struct GemmArgs {
  const bf16* x = nullptr;  // [m, k], rows k elements apart
  const bf16* w = nullptr;  // [n, k]
  // [n], of y's type, or null. Fused as cuBLASLt's BIAS epilogue (no extra pass).
  const void* bias = nullptr;
  void* y = nullptr;             // [m, n]; must not overlap x or w
  DType y_dtype = DType::kBF16;  // kBF16 or kF32
  int64_t m = 0, n = 0, k = 0;
};

class CublasLtGemm {
 public:
  // 32 MiB is NVIDIA's recommendation for Hopper.
  static constexpr size_t kDefaultWorkspaceBytes = size_t{32} << 20;

  // On success returns a GEMM runner with its cuBLASLt handle and a workspace of
  // workspace_bytes on the current device.
  static absl::StatusOr<std::unique_ptr<CublasLtGemm>> Create(
      size_t workspace_bytes = kDefaultWorkspaceBytes);
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;
  ~CublasLtGemm();

  // Enqueues y = x * w^T (+ bias) on stream. INVALID_ARGUMENT for bad shapes or types;
  // UNIMPLEMENTED when cuBLASLt has no algorithm for the shape; INTERNAL naming the cuBLASLt call
  // otherwise. The first call of a shape asks the heuristic (host work, no device sync); later
  // calls of it only launch, so they can be captured in a CUDA graph.
  absl::Status Run(const GemmArgs& args, cudaStream_t stream);

  // Plans cached so far (one per distinct shape key).
  size_t num_cached_plans() const { return plans_.size(); }

 private:
  struct Plan;
  // m, n, k, y dtype, has bias, min pointer alignment in bytes.
  using Key = std::tuple<int64_t, int64_t, int64_t, int, bool, int>;

  CublasLtGemm() = default;
  absl::StatusOr<Plan*> GetPlan(const Key& key);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace kvasir::cuda

#endif  // KVASIR_KERNELS_CUDA_GEMM_H_
