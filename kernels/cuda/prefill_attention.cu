// Paged prefill attention (causal, over the cached prefix and this step's chunk, GQA), a
// flash-attention-2 style tiled kernel in fp32 SIMT arithmetic: a first version to be correct and
// reasonable, before a tensor-core (mma / wgmma) one.
//
// Grid (ceil(max_query_len / 32), num_heads, num_seqs); 128 threads. A block owns 32 query rows
// of one head; four threads share a row, each holding a quarter of q and of the output
// accumulator (dims interleaved by pairs so that shared-memory reads are conflict-free). K and V
// tiles of 32 positions are staged in shared memory with 16-byte loads through the page table; an
// online softmax (base 2) carries the running max and sum across tiles; tiles past the block's
// last query position are never loaded.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/launch.h"

namespace kvasir::cuda::internal {
namespace {

constexpr int kThreads = 128;
constexpr int kRows = 32;  // query rows per block
constexpr int kKeys = 32;  // positions per K/V tile
constexpr int kTpr = 4;    // threads per row

template <int kHeadDim>
__global__ void __launch_bounds__(kThreads) PrefillKernel(PrefillAttentionArgs a, int group) {
  constexpr int kPairs = kHeadDim / 2 / kTpr;  // bf16 pairs per thread
  constexpr int kVecPerRow = kHeadDim / 8;
  __shared__ __align__(16) bf16 ks[kKeys][kHeadDim];
  __shared__ __align__(16) bf16 vs[kKeys][kHeadDim];

  const int seq = blockIdx.z, head = blockIdx.y;
  const int q0 = a.query_start[seq];
  const int q_len = a.query_start[seq + 1] - q0;
  const int row0 = blockIdx.x * kRows;
  if (row0 >= q_len) return;  // block-uniform, before any barrier
  const int len = a.kv.seq_lens[seq];
  const int ctx0 = len - q_len;  // position of the chunk's first query
  const int r = threadIdx.x / kTpr, part = threadIdx.x % kTpr;
  const int t = row0 + r;
  const bool valid = t < q_len;
  const int pos = ctx0 + t;
  const int kvh = head / group;
  const int H = a.num_heads;

  float q[2 * kPairs], acc[2 * kPairs];
  const float qscale = a.scale * 1.4426950408889634f;  // scores in base 2
  const bf16* qrow = a.q + (static_cast<int64_t>(q0 + t) * H + head) * kHeadDim;
#pragma unroll
  for (int i = 0; i < kPairs; ++i) {
    const int d = 2 * (i * kTpr + part);
    float2 f = make_float2(0.0f, 0.0f);
    if (valid) f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(qrow + d));
    q[2 * i] = f.x * qscale;
    q[2 * i + 1] = f.y * qscale;
    acc[2 * i] = acc[2 * i + 1] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;

  const int max_pos = ctx0 + min(q_len, row0 + kRows) - 1;  // the block's last query position
  const int32_t* pages = a.kv.kv_indices + a.kv.kv_indptr[seq];
  const int bs = a.kv.block_size;
  const int64_t row_stride = static_cast<int64_t>(a.kv.num_kv_heads) * kHeadDim;
  for (int kt = 0; kt <= max_pos; kt += kKeys) {
    __syncthreads();  // the previous tile is no longer read
    for (int c = threadIdx.x; c < kKeys * kVecPerRow; c += kThreads) {
      const int j = c / kVecPerRow, d8 = (c % kVecPerRow) * 8;
      const int p = kt + j;
      uint4 kk = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (p <= max_pos) {
        const int64_t slot = static_cast<int64_t>(pages[p / bs]) * bs + p % bs;
        const int64_t off = slot * row_stride + static_cast<int64_t>(kvh) * kHeadDim + d8;
        kk = *reinterpret_cast<const uint4*>(a.kv.k_cache + off);
        vv = *reinterpret_cast<const uint4*>(a.kv.v_cache + off);
      }
      *reinterpret_cast<uint4*>(&ks[j][d8]) = kk;
      *reinterpret_cast<uint4*>(&vs[j][d8]) = vv;
    }
    __syncthreads();
    float s[kKeys];
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kKeys; ++j) {
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < kPairs; ++i) {
        const float2 k2 = __bfloat1622float2(
            *reinterpret_cast<const __nv_bfloat162*>(&ks[j][2 * (i * kTpr + part)]));
        dot += q[2 * i] * k2.x + q[2 * i + 1] * k2.y;
      }
      dot += __shfl_xor_sync(0xffffffffu, dot, 1);
      dot += __shfl_xor_sync(0xffffffffu, dot, 2);
      s[j] = kt + j <= pos ? dot : -INFINITY;
      tile_max = fmaxf(tile_max, s[j]);
    }
    const float m_new = fmaxf(m, tile_max);
    if (m_new != -INFINITY) {  // false only for padding rows (t >= q_len)
      const float alpha = exp2f(m - m_new);
      l *= alpha;
#pragma unroll
      for (int i = 0; i < 2 * kPairs; ++i) acc[i] *= alpha;
#pragma unroll
      for (int j = 0; j < kKeys; ++j) {
        const float p = exp2f(s[j] - m_new);
        l += p;
#pragma unroll
        for (int i = 0; i < kPairs; ++i) {
          const float2 v2 = __bfloat1622float2(
              *reinterpret_cast<const __nv_bfloat162*>(&vs[j][2 * (i * kTpr + part)]));
          acc[2 * i] += p * v2.x;
          acc[2 * i + 1] += p * v2.y;
        }
      }
      m = m_new;
    }
  }
  if (!valid) return;
  const float inv_l = 1.0f / l;
  bf16* orow = a.out + (static_cast<int64_t>(q0 + t) * H + head) * kHeadDim;
#pragma unroll
  for (int i = 0; i < kPairs; ++i) {
    *reinterpret_cast<__nv_bfloat162*>(orow + 2 * (i * kTpr + part)) =
        __floats2bfloat162_rn(acc[2 * i] * inv_l, acc[2 * i + 1] * inv_l);
  }
}

template <int kHeadDim>
cudaError_t Launch(const PrefillAttentionArgs& a, cudaStream_t stream) {
  const dim3 grid((a.max_query_len + kRows - 1) / kRows, a.num_heads, a.num_seqs);
  PrefillKernel<kHeadDim><<<grid, kThreads, 0, stream>>>(a, a.num_heads / a.kv.num_kv_heads);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchPrefillAttention(const PrefillAttentionArgs& args, cudaStream_t stream) {
  if (args.num_seqs == 0 || args.max_query_len == 0) return cudaSuccess;
  switch (args.kv.head_dim) {
    case 16:
      return Launch<16>(args, stream);
    case 32:
      return Launch<32>(args, stream);
    case 64:
      return Launch<64>(args, stream);
    case 128:
      return Launch<128>(args, stream);
    case 256:
      return Launch<256>(args, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace kvasir::cuda::internal
