// Device helpers shared by the kernels: 16-byte bf16 vectors, warp and block reductions.
#ifndef KVASIR_KERNELS_CUDA_DEVICE_UTIL_CUH_
#define KVASIR_KERNELS_CUDA_DEVICE_UTIL_CUH_

#include <cuda_bf16.h>

#include <cstdint>

namespace kvasir::cuda::internal {

// Eight bf16 = 16 bytes: one vector load or store. p must be 16-byte aligned.
__device__ __forceinline__ void Load8(const __nv_bfloat16* p, float out[8]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ void Store8(__nv_bfloat16* p, const float in[8]) {
  uint4 raw;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(in[2 * i], in[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = raw;
}

__device__ __forceinline__ float RoundBf16(float x) {
  return __bfloat162float(__float2bfloat16_rn(x));
}

template <int kWidth = 32>
__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = kWidth / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o, kWidth);
  return v;
}

template <int kWidth = 32>
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = kWidth / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o, kWidth));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024), returned to every thread.
// Uses 33 floats of shared memory; safe to call repeatedly.
__device__ __forceinline__ float BlockSum(float v) {
  __shared__ float partial[33];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = WarpSum(v);
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < static_cast<int>(blockDim.x / 32) ? partial[lane] : 0.0f;
    t = WarpSum(t);
    if (lane == 0) partial[32] = t;
  }
  __syncthreads();
  return partial[32];
}

__device__ __forceinline__ float BlockMax(float v) {
  __shared__ float partial[33];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < static_cast<int>(blockDim.x / 32) ? partial[lane] : -INFINITY;
    t = WarpMax(t);
    if (lane == 0) partial[32] = t;
  }
  __syncthreads();
  return partial[32];
}

}  // namespace kvasir::cuda::internal

#endif  // KVASIR_KERNELS_CUDA_DEVICE_UTIL_CUH_
