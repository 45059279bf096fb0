// The small kernels the engine's CUDA backend needs around the big ones: residual add, row
// gather, bf16 -> float32, the per-step RoPE table, RoPE in place and the paged K/V write.
// Each is one pass over its data with grid-stride loops; none is on a hot path's critical size.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/launch.h"

namespace kvasir::cuda::internal {
namespace {

constexpr int kThreads = 256;

int Blocks(int64_t n, int64_t per_block) {
  const int64_t b = (n + per_block - 1) / per_block;
  return static_cast<int>(b < 1 ? 1 : (b > 65535 * 4 ? 65535 * 4 : b));
}

__global__ void AddKernel(bf16* __restrict__ a, const bf16* __restrict__ b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    a[i] = __float2bfloat16_rn(__bfloat162float(a[i]) + __bfloat162float(b[i]));
  }
}

__global__ void GatherRowsKernel(const bf16* __restrict__ x, int64_t dim,
                                 const int32_t* __restrict__ rows, bf16* __restrict__ out) {
  const bf16* src = x + static_cast<int64_t>(rows[blockIdx.x]) * dim;
  bf16* dst = out + static_cast<int64_t>(blockIdx.x) * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = src[i];
}

__global__ void ToFloatKernel(const bf16* __restrict__ x, int64_t n, float* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = __bfloat162float(x[i]);
  }
}

// One thread per token: the recurrence (ggml) is sequential in i, and rot_dim / 2 <= 256.
__global__ void RopeTableKernel(const int32_t* __restrict__ positions, int64_t num_tokens,
                                const float* __restrict__ inv_freq, int rot_dim, bool recurrence,
                                float attention_factor, float* __restrict__ cos_sin) {
  const int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (t >= num_tokens) return;
  const int half = rot_dim / 2;
  float* c = cos_sin + t * rot_dim;
  const float p = static_cast<float>(positions[t]);
  float theta = p;
  for (int i = 0; i < half; ++i) {
    const float angle = recurrence ? theta : p * inv_freq[i];
    // cosf/sinf (not the __cosf intrinsics): angles reach the context length in radians.
    c[i] = cosf(angle) * attention_factor;
    c[half + i] = sinf(angle) * attention_factor;
    if (half > 1) theta *= inv_freq[1];
  }
}

// One thread per (token, head, pair).
__global__ void RopeApplyKernel(bf16* __restrict__ x, int64_t num_tokens, int num_heads,
                                int head_dim, int rot_offset, int rot_dim,
                                const float* __restrict__ cos_sin, bool neox) {
  const int half = rot_dim / 2;
  const int64_t total = num_tokens * num_heads * half;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int i = static_cast<int>(idx % half);
    const int64_t th = idx / half;  // token * num_heads + head
    const int64_t t = th / num_heads;
    bf16* v = x + th * head_dim + rot_offset;
    const float c = cos_sin[t * rot_dim + i], s = cos_sin[t * rot_dim + half + i];
    const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
    const float a = __bfloat162float(v[i0]), b = __bfloat162float(v[i1]);
    v[i0] = __float2bfloat16_rn(fmaf(a, c, -(b * s)));
    v[i1] = __float2bfloat16_rn(fmaf(a, s, b * c));
  }
}

// One block per token; 16-byte copies when the row allows them.
__global__ void WriteKvKernel(const bf16* __restrict__ k, const bf16* __restrict__ v,
                              int64_t row, const int64_t* __restrict__ slot_mapping,
                              bf16* __restrict__ k_cache, bf16* __restrict__ v_cache, bool vec) {
  const int64_t slot = slot_mapping[blockIdx.x];
  if (slot < 0) return;
  const bf16* ks = k + blockIdx.x * row;
  const bf16* vs = v + blockIdx.x * row;
  bf16* kd = k_cache + slot * row;
  bf16* vd = v_cache + slot * row;
  if (vec) {
    for (int64_t i = threadIdx.x; i < row / 8; i += blockDim.x) {
      reinterpret_cast<uint4*>(kd)[i] = reinterpret_cast<const uint4*>(ks)[i];
      reinterpret_cast<uint4*>(vd)[i] = reinterpret_cast<const uint4*>(vs)[i];
    }
  } else {
    for (int64_t i = threadIdx.x; i < row; i += blockDim.x) {
      kd[i] = ks[i];
      vd[i] = vs[i];
    }
  }
}

// Element i of engine/weights/dummy_weights.h's stream: splitmix64 of seed + (i + 1) * golden.
__global__ void FillDummyKernel(bf16* __restrict__ out, int64_t n, uint64_t seed, bool ones,
                                double amplitude) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    float v = 1.0f;
    if (!ones) {
      uint64_t z = seed + static_cast<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ull;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      const double u = static_cast<double>(z >> 11) * 0x1.0p-53;
      v = static_cast<float>(__dmul_rn(__dsub_rn(__dmul_rn(2.0, u), 1.0), amplitude));
    }
    out[i] = __float2bfloat16_rn(v);
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

cudaError_t LaunchFillDummy(bf16* out, int64_t n, uint64_t seed, bool ones, double amplitude,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  FillDummyKernel<<<Blocks(n, kThreads * 8), kThreads, 0, stream>>>(out, n, seed, ones,
                                                                      amplitude);
  return cudaGetLastError();
}

cudaError_t LaunchAdd(bf16* a, const bf16* b, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  AddKernel<<<Blocks(n, kThreads * 4), kThreads, 0, stream>>>(a, b, n);
  return cudaGetLastError();
}

cudaError_t LaunchGatherRows(const bf16* x, int64_t dim, const int32_t* rows, int64_t num_rows,
                             bf16* out, cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  GatherRowsKernel<<<num_rows, kThreads, 0, stream>>>(x, dim, rows, out);
  return cudaGetLastError();
}

cudaError_t LaunchToFloat(const bf16* x, int64_t n, float* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  ToFloatKernel<<<Blocks(n, kThreads * 4), kThreads, 0, stream>>>(x, n, out);
  return cudaGetLastError();
}

cudaError_t LaunchRopeTable(const int32_t* positions, int64_t num_tokens, const float* inv_freq,
                            int rot_dim, bool recurrence, float attention_factor, float* cos_sin,
                            cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  constexpr int kTableThreads = 128;
  RopeTableKernel<<<(num_tokens + kTableThreads - 1) / kTableThreads, kTableThreads, 0, stream>>>(
      positions, num_tokens, inv_freq, rot_dim, recurrence, attention_factor, cos_sin);
  return cudaGetLastError();
}

cudaError_t LaunchRopeApply(bf16* x, int64_t num_tokens, int num_heads, int head_dim,
                            int rot_offset, int rot_dim, const float* cos_sin, bool neox,
                            cudaStream_t stream) {
  const int64_t total = num_tokens * num_heads * (rot_dim / 2);
  if (total == 0) return cudaSuccess;
  RopeApplyKernel<<<Blocks(total, kThreads), kThreads, 0, stream>>>(
      x, num_tokens, num_heads, head_dim, rot_offset, rot_dim, cos_sin, neox);
  return cudaGetLastError();
}

cudaError_t LaunchWriteKv(const bf16* k, const bf16* v, int64_t num_tokens, int64_t row,
                          const int64_t* slot_mapping, bf16* k_cache, bf16* v_cache,
                          cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  const bool vec = row % 8 == 0 && Aligned16(k) && Aligned16(v) && Aligned16(k_cache) &&
                   Aligned16(v_cache);
  WriteKvKernel<<<num_tokens, 128, 0, stream>>>(k, v, row, slot_mapping, k_cache, v_cache, vec);
  return cudaGetLastError();
}

}  // namespace kvasir::cuda::internal
