// Paged decode attention (one query token per sequence), flash-decoding style.
//
// Grid (num_seqs, num_kv_heads * head_chunks, num_partitions); 128 threads. A block serves up to
// 8 query heads sharing one kv head (GQA: each K/V row is read once for all of them) over one
// partition of positions:
//   1. scores: a group of head_dim / 8 threads reads one K row as 16-byte vectors, dots it with
//      the heads' q (registers), reduces by warp shuffles, stores the scores in shared memory;
//   2. softmax: one warp per head takes the max and the sum of exp over the partition;
//   3. values: each thread group accumulates p * V rows into registers, reduced over the groups
//      through shared memory.
// One partition writes bf16 output directly; several write fp32 partial outputs with their max
// and sum to the workspace, and DecodeMergeKernel combines them by log-sum-exp.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/launch.h"

namespace kvasir::cuda::internal {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kG = kDecodeMaxHeadsPerBlock;

template <int kHeadDim>
__global__ void __launch_bounds__(kThreads)
    DecodePartitionKernel(DecodeAttentionArgs a, int group, int chunks_per_kv) {
  constexpr int kTpk = kHeadDim / 8;  // threads per K/V row
  constexpr int kRowsPerPass = kThreads / kTpk;
  extern __shared__ float scores[];  // [kG][partition_tokens]
  __shared__ float red[kRowsPerPass][kHeadDim];
  __shared__ float stat_m[kG], stat_l[kG];

  const int seq = blockIdx.x;
  const int kvh = blockIdx.y / chunks_per_kv;
  const int chunk = blockIdx.y % chunks_per_kv;
  const int part = blockIdx.z;
  const int P = a.plan.partition_tokens;
  const int num_parts = a.plan.num_partitions;
  const int H = a.num_heads;
  const int len = a.kv.seq_lens[seq];
  const int start = part * P;
  const int n = max(0, min(len - start, P));
  const int h0 = kvh * group + chunk * kG;
  const int gn = min(kG, group - chunk * kG);
  const bool direct = num_parts == 1;
  float* ws_o = static_cast<float*>(a.workspace);  // [num_seqs, H, parts, head_dim]
  float* ws_ml =                                   // [num_seqs, H, parts, 2]: max and sum of exp
      direct ? nullptr : ws_o + static_cast<int64_t>(a.num_seqs) * H * num_parts * kHeadDim;
  auto ws_index = [&](int g) {
    return (static_cast<int64_t>(seq) * H + h0 + g) * num_parts + part;
  };

  if (n == 0) {  // past the end of this sequence (or an empty one)
    for (int idx = threadIdx.x; idx < gn * kHeadDim; idx += kThreads) {
      const int g = idx / kHeadDim, d = idx % kHeadDim;
      if (direct) {
        a.out[(static_cast<int64_t>(seq) * H + h0 + g) * kHeadDim + d] = __float2bfloat16(0.0f);
      } else {
        ws_o[ws_index(g) * kHeadDim + d] = 0.0f;
      }
    }
    if (!direct && threadIdx.x < gn) {
      ws_ml[ws_index(threadIdx.x) * 2] = -INFINITY;
      ws_ml[ws_index(threadIdx.x) * 2 + 1] = 0.0f;
    }
    return;
  }

  const int sub = threadIdx.x / kTpk, lane = threadIdx.x % kTpk;
  float q[kG][8];
#pragma unroll
  for (int g = 0; g < kG; ++g) {
    if (g < gn) {
      Load8(a.q + (static_cast<int64_t>(seq) * H + h0 + g) * kHeadDim + lane * 8, q[g]);
#pragma unroll
      for (int i = 0; i < 8; ++i) q[g][i] *= a.scale;
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) q[g][i] = 0.0f;
    }
  }
  const int32_t* pages = a.kv.kv_indices + a.kv.kv_indptr[seq];
  const int bs = a.kv.block_size;
  const int64_t row_stride = static_cast<int64_t>(a.kv.num_kv_heads) * kHeadDim;
  auto row_offset = [&](int pos) {
    const int64_t slot = static_cast<int64_t>(pages[pos / bs]) * bs + pos % bs;
    return slot * row_stride + static_cast<int64_t>(kvh) * kHeadDim + lane * 8;
  };

  // 1. Scores. Every thread runs the same number of passes so the shuffles see full warps.
  for (int t0 = 0; t0 < n; t0 += kRowsPerPass) {
    const int t = t0 + sub;
    float k[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (t < n) Load8(a.kv.k_cache + row_offset(start + t), k);
#pragma unroll
    for (int g = 0; g < kG; ++g) {
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) dot += q[g][i] * k[i];
      dot = WarpSum<kTpk>(dot);
      if (lane == 0 && t < n && g < gn) scores[g * P + t] = dot;
    }
  }
  __syncthreads();

  // 2. Softmax statistics, one warp per head; scores become unnormalised probabilities.
  const int warp = threadIdx.x / 32, wl = threadIdx.x % 32;
  for (int g = warp; g < gn; g += kWarps) {
    float m = -INFINITY;
    for (int t = wl; t < n; t += 32) m = fmaxf(m, scores[g * P + t]);
    m = WarpMax(m);
    float l = 0.0f;
    for (int t = wl; t < n; t += 32) {
      const float p = __expf(scores[g * P + t] - m);
      scores[g * P + t] = p;
      l += p;
    }
    l = WarpSum(l);
    if (wl == 0) {
      stat_m[g] = m;
      stat_l[g] = l;
    }
  }
  __syncthreads();

  // 3. Values.
  float acc[kG][8];
#pragma unroll
  for (int g = 0; g < kG; ++g) {
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[g][i] = 0.0f;
  }
  for (int t = sub; t < n; t += kRowsPerPass) {
    float v[8];
    Load8(a.kv.v_cache + row_offset(start + t), v);
#pragma unroll
    for (int g = 0; g < kG; ++g) {
      const float p = g < gn ? scores[g * P + t] : 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[g][i] += p * v[i];
    }
  }
#pragma unroll
  for (int g = 0; g < kG; ++g) {
    if (g < gn) {  // block-uniform
#pragma unroll
      for (int i = 0; i < 8; ++i) red[sub][lane * 8 + i] = acc[g][i];
      __syncthreads();
      const float inv_l = 1.0f / stat_l[g];
      for (int d = threadIdx.x; d < kHeadDim; d += kThreads) {
        float s = 0.0f;
#pragma unroll
        for (int r = 0; r < kRowsPerPass; ++r) s += red[r][d];
        s *= inv_l;
        if (direct) {
          a.out[(static_cast<int64_t>(seq) * H + h0 + g) * kHeadDim + d] = __float2bfloat16_rn(s);
        } else {
          ws_o[ws_index(g) * kHeadDim + d] = s;
        }
      }
      if (!direct && threadIdx.x == 0) {
        ws_ml[ws_index(g) * 2] = stat_m[g];
        ws_ml[ws_index(g) * 2 + 1] = stat_l[g];
      }
      __syncthreads();
    }
  }
}

// out = sum_p w_p o_p / sum_p w_p with w_p = l_p * exp(m_p - max m). Grid (num_seqs, num_heads).
__global__ void DecodeMergeKernel(const float* __restrict__ ws_o, const float* __restrict__ ws_ml,
                                  int num_parts, int head_dim, bf16* __restrict__ out) {
  const int64_t sh = static_cast<int64_t>(blockIdx.x) * gridDim.y + blockIdx.y;
  const float* ml = ws_ml + sh * num_parts * 2;
  float m = -INFINITY;
  for (int p = 0; p < num_parts; ++p) m = fmaxf(m, ml[2 * p]);
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float num = 0.0f, den = 0.0f;
    if (m != -INFINITY) {
      for (int p = 0; p < num_parts; ++p) {
        const float mp = ml[2 * p];
        const float w = mp == -INFINITY ? 0.0f : ml[2 * p + 1] * __expf(mp - m);
        num += w * ws_o[(sh * num_parts + p) * head_dim + d];
        den += w;
      }
    }
    out[sh * head_dim + d] = __float2bfloat16_rn(den > 0.0f ? num / den : 0.0f);
  }
}

template <int kHeadDim>
cudaError_t Launch(const DecodeAttentionArgs& a, cudaStream_t stream) {
  const int group = a.num_heads / a.kv.num_kv_heads;
  const int chunks = (group + kG - 1) / kG;
  const size_t smem = sizeof(float) * kG * a.plan.partition_tokens;
  const dim3 grid(a.num_seqs, a.kv.num_kv_heads * chunks, a.plan.num_partitions);
  DecodePartitionKernel<kHeadDim><<<grid, kThreads, smem, stream>>>(a, group, chunks);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || a.plan.num_partitions == 1) return err;
  const float* ws_o = static_cast<const float*>(a.workspace);
  const float* ws_ml =
      ws_o + static_cast<int64_t>(a.num_seqs) * a.num_heads * a.plan.num_partitions * kHeadDim;
  DecodeMergeKernel<<<dim3(a.num_seqs, a.num_heads), kHeadDim, 0, stream>>>(
      ws_o, ws_ml, a.plan.num_partitions, kHeadDim, a.out);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchDecodeAttention(const DecodeAttentionArgs& args, cudaStream_t stream) {
  if (args.num_seqs == 0) return cudaSuccess;
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
