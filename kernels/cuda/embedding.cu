// Embedding gather: one block per token, 16-byte copies when rows allow them.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/launch.h"

namespace kvasir::cuda::internal {
namespace {

constexpr int kThreads = 256;

__global__ void EmbeddingKernel(const bf16* __restrict__ table, int64_t vocab, int64_t dim,
                                const int32_t* __restrict__ ids, bf16* __restrict__ out, bool vec) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  bf16* dst = out + t * dim;
  if (id < 0 || id >= vocab) {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = __float2bfloat16(NAN);
    return;
  }
  const bf16* src = table + static_cast<int64_t>(id) * dim;
  if (vec) {
    const uint4* s = reinterpret_cast<const uint4*>(src);
    uint4* d = reinterpret_cast<uint4*>(dst);
    for (int64_t i = threadIdx.x; i < dim / 8; i += blockDim.x) d[i] = s[i];
  } else {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = src[i];
  }
}

}  // namespace

cudaError_t LaunchEmbedding(const bf16* table, int64_t vocab, int64_t dim, const int32_t* ids,
                            int64_t num_tokens, bf16* out, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  const bool vec = dim % 8 == 0 && reinterpret_cast<uintptr_t>(table) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(out) % 16 == 0;
  EmbeddingKernel<<<num_tokens, kThreads, 0, stream>>>(table, vocab, dim, ids, out, vec);
  return cudaGetLastError();
}

}  // namespace kvasir::cuda::internal
