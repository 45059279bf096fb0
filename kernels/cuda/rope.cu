// RoPE on q and k in place, and the K/V of this step's tokens stored into the paged cache: one
// block per token. Rotated pairs of k are written to both k and the cache by the thread that
// rotates them; the unrotated tail of k and all of v are copied by a second loop over disjoint
// elements, so no barrier is needed.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/launch.h"

namespace kvasir::cuda::internal {
namespace {

constexpr int kThreads = 128;

__global__ void RopeKvKernel(RopeKvArgs a) {
  const int64_t t = blockIdx.x;
  const int32_t pos = a.positions[t];
  const bool pos_ok = pos >= 0 && pos < a.max_positions;
  const int half = a.rot_dim / 2;
  const float* cos_v = a.cos_sin + static_cast<int64_t>(pos_ok ? pos : 0) * a.rot_dim;
  const float* sin_v = cos_v + half;
  const int64_t slot = a.slot_mapping != nullptr ? a.slot_mapping[t] : -1;
  const int64_t cache_row = slot * a.num_kv_heads * a.head_dim;
  bf16* qrow = a.q + t * a.q_row_stride;
  bf16* krow = a.k + t * a.kv_row_stride;
  const bf16* vrow = a.v + t * a.kv_row_stride;
  const int total_heads = a.num_heads + a.num_kv_heads;
  for (int item = threadIdx.x; item < total_heads * half; item += blockDim.x) {
    const int h = item / half;
    const int i = item % half;
    const bool is_q = h < a.num_heads;
    const int kh = h - a.num_heads;
    bf16* x = is_q ? qrow + h * a.head_dim : krow + kh * a.head_dim;
    const int i0 = a.style == RopeStyle::kNeox ? i : 2 * i;
    const int i1 = a.style == RopeStyle::kNeox ? i + half : 2 * i + 1;
    const float x0 = __bfloat162float(x[i0]), x1 = __bfloat162float(x[i1]);
    const float c = pos_ok ? cos_v[i] : NAN, s = pos_ok ? sin_v[i] : NAN;
    const bf16 y0 = __float2bfloat16_rn(x0 * c - x1 * s);
    const bf16 y1 = __float2bfloat16_rn(x0 * s + x1 * c);
    x[i0] = y0;
    x[i1] = y1;
    if (!is_q && slot >= 0) {
      bf16* dst = a.k_cache + cache_row + kh * a.head_dim;
      dst[i0] = y0;
      dst[i1] = y1;
    }
  }
  if (slot < 0) return;
  // The unrotated dims of k: NeoX and interleaved both rotate exactly dims [0, rot_dim).
  const int tail = a.head_dim - a.rot_dim;
  for (int item = threadIdx.x; item < a.num_kv_heads * tail; item += blockDim.x) {
    const int kh = item / tail;
    const int d = a.rot_dim + item % tail;
    a.k_cache[cache_row + kh * a.head_dim + d] = krow[kh * a.head_dim + d];
  }
  for (int item = threadIdx.x; item < a.num_kv_heads * a.head_dim; item += blockDim.x) {
    a.v_cache[cache_row + item] = vrow[item];
  }
}

}  // namespace

cudaError_t LaunchRopeKv(const RopeKvArgs& args, cudaStream_t stream) {
  if (args.num_tokens == 0) return cudaSuccess;
  RopeKvKernel<<<args.num_tokens, kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace kvasir::cuda::internal
