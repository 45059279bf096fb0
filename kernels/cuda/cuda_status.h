// CUDA and cuBLASLt errors as absl::Status, naming the call that failed.
//   KV_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(...));  returns Internal("cudaMemcpyAsync(...): ...")
// Out-of-memory becomes RESOURCE_EXHAUSTED; everything else INTERNAL.
#ifndef KVASIR_KERNELS_CUDA_CUDA_STATUS_H_
#define KVASIR_KERNELS_CUDA_CUDA_STATUS_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"

namespace kvasir::cuda {

// OK for cudaSuccess; otherwise an error whose message is "<what>: <cudaGetErrorName>: <string>".
absl::Status CudaStatus(cudaError_t err, const char* what);
// OK for CUBLAS_STATUS_SUCCESS; otherwise "<what>: CUBLAS_STATUS_<NAME> (<code>)".
absl::Status CublasStatus(cublasStatus_t err, const char* what);

}  // namespace kvasir::cuda

#define KV_CUDA_RETURN_IF_ERROR(call)                                           \
  do {                                                                          \
    ::absl::Status kv_cuda_status_ = ::kvasir::cuda::CudaStatus((call), #call); \
    if (!kv_cuda_status_.ok()) return kv_cuda_status_;                          \
  } while (0)

#define KV_CUBLAS_RETURN_IF_ERROR(call)                                             \
  do {                                                                              \
    ::absl::Status kv_cublas_status_ = ::kvasir::cuda::CublasStatus((call), #call); \
    if (!kv_cublas_status_.ok()) return kv_cublas_status_;                          \
  } while (0)

#endif  // KVASIR_KERNELS_CUDA_CUDA_STATUS_H_
