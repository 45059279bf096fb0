// RMSNorm, optionally fused with the residual add: one block per row. Pass 1 forms the (rounded)
// residual sum and its sum of squares; pass 2 re-reads the row (from L1/L2) and scales it.
#include <cuda_runtime.h>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/launch.h"

namespace kvasir::cuda::internal {
namespace {

constexpr int kThreads = 256;

// kResidual: residual = bf16(residual + x) first, and the norm reads residual.
template <bool kResidual>
__global__ void RmsNormKernel(const bf16* x, bf16* residual, const bf16* __restrict__ w,
                              int64_t dim, float eps, bf16* out, bool vec) {
  const int64_t row = blockIdx.x;
  const bf16* xr = x + row * dim;
  bf16* rr = kResidual ? residual + row * dim : nullptr;
  const bf16* src = kResidual ? rr : xr;  // what pass 2 normalises
  bf16* o = out + row * dim;
  float sq = 0.0f;
  if (vec) {
    for (int64_t i = threadIdx.x * 8; i < dim; i += blockDim.x * 8) {
      float v[8];
      Load8(xr + i, v);
      if constexpr (kResidual) {
        float r[8];
        Load8(rr + i, r);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = RoundBf16(v[j] + r[j]);
        Store8(rr + i, v);
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) sq += v[j] * v[j];
    }
  } else {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      float v = __bfloat162float(xr[i]);
      if constexpr (kResidual) {
        v = RoundBf16(v + __bfloat162float(rr[i]));
        rr[i] = __float2bfloat16_rn(v);
      }
      sq += v * v;
    }
  }
  const float inv = rsqrtf(BlockSum(sq) / static_cast<float>(dim) + eps);
  // Pass 2 reads what this same thread wrote in pass 1 (same indices), so no barrier is needed
  // between the residual stores and these loads.
  if (vec) {
    for (int64_t i = threadIdx.x * 8; i < dim; i += blockDim.x * 8) {
      float v[8], g[8];
      Load8(src + i, v);
      Load8(w + i, g);
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = g[j] * RoundBf16(v[j] * inv);
      Store8(o + i, v);
    }
  } else {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      const float v = __bfloat162float(src[i]);
      o[i] = __float2bfloat16_rn(__bfloat162float(w[i]) * RoundBf16(v * inv));
    }
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

cudaError_t LaunchRmsNorm(const bf16* x, bf16* residual, const bf16* w, int64_t rows, int64_t dim,
                          float eps, bf16* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const bool vec = dim % 8 == 0 && Aligned16(x) && Aligned16(w) && Aligned16(out) &&
                   (residual == nullptr || Aligned16(residual));
  if (residual != nullptr) {
    RmsNormKernel<true><<<rows, kThreads, 0, stream>>>(x, residual, w, dim, eps, out, vec);
  } else {
    RmsNormKernel<false><<<rows, kThreads, 0, stream>>>(x, nullptr, w, dim, eps, out, vec);
  }
  return cudaGetLastError();
}

}  // namespace kvasir::cuda::internal
