// Multi-head latent attention, absorbed form (mla.h), fp32 SIMT. Four kernels per call:
//   MlaAbsorbKernel  grid (ceil(rank / 128), heads, ceil(tokens / 32)), 128 threads: thread l of
//                    head h computes q_lat[t, h, l] = sum_d q_nope[t, h, d] W_UK_h[d, l] for 32
//                    query rows held in shared memory (each W_UK_h element read once per 32
//                    rows, coalesced); the first column block also copies q_rope beside it.
//   MlaAttendKernel  grid (ceil(heads / 16), partitions, tokens), 256 threads: one query row, 16
//                    heads, one partition of the row's causal context. Tiles of 32 cache rows
//                    (latent + RoPE key, 16-byte loads through the page table) are staged in
//                    shared memory once and used by all 16 heads:
//                      scores  a thread dots 4 rows with 4 heads over 1/8 of the dims, the 8
//                              slices summed by shuffles; q (fp32, pre-scaled to base 2) is in
//                              shared memory;
//                      softmax a warp per 2 heads, lane = row: running max, rescale, sum;
//                      values  a thread accumulates 4 heads x 8 latent dims in registers.
//                    One partition writes the normalised o_lat; several write it with their
//                    max and sum, and MlaMergeKernel combines them by log-sum-exp.
//   MlaMergeKernel   grid (tokens, heads): o_lat = sum_p w_p o_p / sum_p w_p.
//   MlaUvKernel      grid (ceil(v_dim / 8), heads, ceil(tokens / 16)), 256 threads: warp j of
//                    head h computes out[t, h, j] = W_UV_h[j] . o_lat[t, h] for 16 rows of o_lat
//                    in shared memory (each W_UV_h row read once per 16 rows, coalesced).
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/mla_args.h"

namespace kvasir::cuda::internal {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// ---- cache write --------------------------------------------------------------------------

__global__ void MlaWriteCacheKernel(MlaWriteCacheArgs a) {
  const int64_t t = blockIdx.x;
  const int64_t slot = a.slot_mapping[t];
  if (slot < 0) return;
  const int width = a.kv_lora_rank + a.rope_dim;
  bf16* row = a.cache + slot * width;
  const bf16* lat = a.latent + t * a.latent_row_stride;
  const bf16* kr = a.k_rope + t * a.k_rope_row_stride;
  for (int i = threadIdx.x; i < width; i += blockDim.x) {
    row[i] = i < a.kv_lora_rank ? lat[i] : kr[i - a.kv_lora_rank];
  }
}

// ---- 1. q_lat = W_UK_h^T q_nope, q_rope copied ----------------------------------------------

constexpr int kAbsorbThreads = 128;  // latent columns per block
constexpr int kAbsorbRows = 32;      // query rows per block

__global__ void __launch_bounds__(kAbsorbThreads)
    MlaAbsorbKernel(MlaAttentionArgs a, float* __restrict__ q_lat) {
  extern __shared__ float qn[];  // [kAbsorbRows][nope_dim]
  const int N = a.shape.nope_dim, R = a.shape.rope_dim, L = a.shape.kv_lora_rank;
  const int H = a.shape.num_heads, V = a.shape.v_dim;
  const int qw = N + R, W = L + R;
  const int h = blockIdx.y;
  const int t0 = blockIdx.z * kAbsorbRows;
  const int rows = min(kAbsorbRows, a.num_tokens - t0);
  auto q_at = [&](int b, int d) {  // q[t0 + b, h, d] as float
    return __bfloat162float(a.q[(static_cast<int64_t>(t0 + b) * H + h) * qw + d]);
  };
  for (int i = threadIdx.x; i < kAbsorbRows * N; i += kAbsorbThreads) {
    const int b = i / N;
    qn[i] = b < rows ? q_at(b, i % N) : 0.0f;
  }
  __syncthreads();
  const int l = blockIdx.x * kAbsorbThreads + threadIdx.x;
  if (l < L) {
    float acc[kAbsorbRows];
#pragma unroll
    for (int b = 0; b < kAbsorbRows; ++b) acc[b] = 0.0f;
    const bf16* w = a.kv_b + static_cast<int64_t>(h) * (N + V) * L + l;  // W_UK_h[0, l]
    for (int d = 0; d < N; ++d) {
      const float wd = __bfloat162float(w[static_cast<int64_t>(d) * L]);
#pragma unroll
      for (int b = 0; b < kAbsorbRows; ++b) acc[b] += qn[b * N + d] * wd;
    }
#pragma unroll
    for (int b = 0; b < kAbsorbRows; ++b) {
      if (b < rows) q_lat[(static_cast<int64_t>(t0 + b) * H + h) * W + l] = acc[b];
    }
  }
  if (blockIdx.x == 0) {
    for (int i = threadIdx.x; i < rows * R; i += kAbsorbThreads) {
      const int b = i / R, r = i % R;
      q_lat[(static_cast<int64_t>(t0 + b) * H + h) * W + L + r] = q_at(b, N + r);
    }
  }
}

// ---- 2. attention over the latent ------------------------------------------------------------

constexpr int kThreads = 256;
constexpr int kG = kMlaHeadsPerBlock;  // 16 heads per block
constexpr int kTile = kMlaTileTokens;  // 32 cache rows per tile
constexpr int kSlices = 8;             // score phase: threads sharing one (4 rows, 4 heads) tile
static_assert(kThreads == (kG / 4) * (kTile / 4) * kSlices, "score phase covers the tile");
static_assert(kThreads / 32 * 2 == kG, "softmax phase: one warp per two heads");
static_assert(kTile == 32, "softmax phase: lane = tile row");
static_assert(kThreads / 64 * 4 == kG, "values phase: 64 threads per four heads");

// The sequence of query row `row` and the length of its causal context (<= 0: empty).
struct QueryRow {
  int seq = 0;
  int ctx = 0;
};

__device__ QueryRow FindQueryRow(const MlaAttentionArgs& a, int row) {
  if (a.query_start == nullptr) return {row, a.seq_lens[row]};
  // The last sequence whose queries start at or before row (empty sequences before it share its
  // query_start and lose to it).
  int lo = 0, hi = a.num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (a.query_start[mid] <= row) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int first = a.query_start[lo], q_len = a.query_start[lo + 1] - first;
  return {lo, a.seq_lens[lo] - q_len + (row - first) + 1};
}

__global__ void __launch_bounds__(kThreads)
    MlaAttendKernel(MlaAttentionArgs a, const float* __restrict__ q_lat, float* __restrict__ o_lat,
                    float* __restrict__ o_part, float* __restrict__ ml) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int L = a.shape.kv_lora_rank, W = L + a.shape.rope_dim, H = a.shape.num_heads;
  const int W8 = W / 8;
  float* qs = reinterpret_cast<float*>(smem);       // [kG][W], scaled to base 2
  bf16* ks = reinterpret_cast<bf16*>(qs + kG * W);  // [kTile][W]: the tile's cache rows
  __shared__ __align__(16) float sp[kTile][kG];     // scores, then probabilities
  __shared__ float stat_m[kG], stat_l[kG], stat_alpha[kG];

  const int h0 = blockIdx.x * kG;
  const int gn = min(kG, H - h0);
  const int part = blockIdx.y, parts = gridDim.y;
  const int row = blockIdx.z;
  const QueryRow qr = FindQueryRow(a, row);
  const int ctx = max(0, qr.ctx);
  const int P = a.plan.partition_tokens;
  const int start = part * P;
  // The last partition takes everything after it, so a context past the plan's bound is still
  // attended in full.
  const int end = part == parts - 1 ? ctx : min(ctx, start + P);
  const bool direct = parts == 1;
  const int tid = threadIdx.x;
  // Values phase: heads 4 * hq .. 4 * hq + 3, latent dims 8 * c .. 8 * c + 7.
  const int hq = tid / 64, c = tid % 64;
  const bool c_ok = 8 * c < L;
  auto out_row = [&](int g) {  // the o_lat or o_part row of head h0 + g
    const int64_t rh = static_cast<int64_t>(row) * H + h0 + g;
    return direct ? o_lat + rh * L : o_part + (rh * parts + part) * L;
  };
  auto ml_index = [&](int g) {
    return ((static_cast<int64_t>(row) * H + h0 + g) * parts + part) * 2;
  };

  if (start >= end) {  // past the end of the context (or an empty one)
    if (c_ok) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (4 * hq + j < gn) {
          float* o = out_row(4 * hq + j) + 8 * c;
#pragma unroll
          for (int e = 0; e < 8; ++e) o[e] = 0.0f;
        }
      }
    }
    if (!direct && tid < gn) {
      ml[ml_index(tid)] = -INFINITY;
      ml[ml_index(tid) + 1] = 0.0f;
    }
    return;
  }

  const float qscale = a.scale * kLog2e;
  for (int i = tid; i < kG * (W / 4); i += kThreads) {
    const int g = i / (W / 4), d = 4 * (i % (W / 4));
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (g < gn) {
      v = *reinterpret_cast<const float4*>(q_lat + (static_cast<int64_t>(row) * H + h0 + g) * W +
                                           d);
    }
    v.x *= qscale;
    v.y *= qscale;
    v.z *= qscale;
    v.w *= qscale;
    *reinterpret_cast<float4*>(qs + g * W + d) = v;
  }
  if (tid < kG) {
    stat_m[tid] = -INFINITY;
    stat_l[tid] = 0.0f;
  }
  float acc[4][8];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[j][e] = 0.0f;
  }
  const int32_t* pages = a.kv_indices + a.kv_indptr[qr.seq];
  const int bs = a.block_size;
  // Score phase: rows 4 * sr .. 4 * sr + 3, heads 4 * hq .. 4 * hq + 3 (hq as above), dims in
  // 8-wide chunks slice, slice + 8, ...
  const int slice = tid % kSlices, sr = (tid / kSlices) % (kTile / 4);
  const int warp = tid / 32, lane = tid % 32;

  for (int t0 = start; t0 < end; t0 += kTile) {
    const int tn = min(kTile, end - t0);
    __syncthreads();  // the previous tile's ks and sp are consumed; qs and stats are written
    for (int i = tid; i < kTile * W8; i += kThreads) {
      const int j = i / W8, d = 8 * (i % W8);
      uint4 x = make_uint4(0, 0, 0, 0);  // rows past the context are zeros, never garbage
      if (j < tn) {
        const int p = t0 + j;
        const int64_t slot = static_cast<int64_t>(pages[p / bs]) * bs + p % bs;
        x = *reinterpret_cast<const uint4*>(a.cache + slot * W + d);
      }
      *reinterpret_cast<uint4*>(ks + j * W + d) = x;
    }
    __syncthreads();

    float s[4][4];  // [head][row]
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int i = 0; i < 4; ++i) s[j][i] = 0.0f;
    }
    for (int d8 = slice; d8 < W8; d8 += kSlices) {
      float k[4][8];
#pragma unroll
      for (int i = 0; i < 4; ++i) Load8(ks + (4 * sr + i) * W + 8 * d8, k[i]);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float* q = qs + (4 * hq + j) * W + 8 * d8;
        const float4 qa = *reinterpret_cast<const float4*>(q);
        const float4 qb = *reinterpret_cast<const float4*>(q + 4);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          s[j][i] += qa.x * k[i][0] + qa.y * k[i][1] + qa.z * k[i][2] + qa.w * k[i][3] +
                     qb.x * k[i][4] + qb.y * k[i][5] + qb.z * k[i][6] + qb.w * k[i][7];
        }
      }
    }
    // Sum the 8 slices; lane `slice` of the group stores entries 2 * slice and 2 * slice + 1.
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float v = WarpSum<kSlices>(s[j][i]);
        const int idx = 4 * j + i;
        if (idx / 2 == slice) {
          const int r = 4 * sr + i;
          sp[r][4 * hq + j] = r < tn ? v : -INFINITY;
        }
      }
    }
    __syncthreads();

    // Online softmax (base 2): warp w owns heads 2w and 2w + 1, lane = tile row.
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int g = 2 * warp + k;
      const float x = sp[lane][g];
      const float m_old = stat_m[g];
      const float m_new = fmaxf(m_old, WarpMax(x));  // finite: row 0 of a tile is in context
      const float p = x == -INFINITY ? 0.0f : exp2f(x - m_new);
      const float sum = WarpSum(p);
      sp[lane][g] = p;
      if (lane == 0) {
        const float alpha = m_old == -INFINITY ? 0.0f : exp2f(m_old - m_new);
        stat_alpha[g] = alpha;
        stat_l[g] = stat_l[g] * alpha + sum;
        stat_m[g] = m_new;
      }
    }
    __syncthreads();

    if (c_ok) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float alpha = stat_alpha[4 * hq + j];
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[j][e] *= alpha;
      }
      for (int r = 0; r < tn; ++r) {
        float v[8];
        Load8(ks + r * W + 8 * c, v);
        const float4 p = *reinterpret_cast<const float4*>(&sp[r][4 * hq]);
        const float pj[4] = {p.x, p.y, p.z, p.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[j][e] += pj[j] * v[e];
        }
      }
    }
  }

  // stat_l and stat_m were last written before the barrier ahead of the values phase.
  if (c_ok) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int g = 4 * hq + j;
      if (g < gn) {
        const float inv_l = 1.0f / stat_l[g];
        float* o = out_row(g) + 8 * c;
        float4 lo =
            make_float4(acc[j][0] * inv_l, acc[j][1] * inv_l, acc[j][2] * inv_l, acc[j][3] * inv_l);
        float4 hi =
            make_float4(acc[j][4] * inv_l, acc[j][5] * inv_l, acc[j][6] * inv_l, acc[j][7] * inv_l);
        reinterpret_cast<float4*>(o)[0] = lo;
        reinterpret_cast<float4*>(o)[1] = hi;
      }
    }
  }
  if (!direct && tid < gn) {
    ml[ml_index(tid)] = stat_m[tid];
    ml[ml_index(tid) + 1] = stat_l[tid];
  }
}

// o_lat = sum_p w_p o_p / sum_p w_p with w_p = l_p * 2^(m_p - max m) (base 2, as the scores).
// Grid (tokens, heads); 128 threads.
__global__ void MlaMergeKernel(const float* __restrict__ o_part, const float* __restrict__ ml,
                               int num_parts, int rank, float* __restrict__ o_lat) {
  const int64_t rh = static_cast<int64_t>(blockIdx.x) * gridDim.y + blockIdx.y;
  const float* m_l = ml + rh * num_parts * 2;
  float m = -INFINITY;
  for (int p = 0; p < num_parts; ++p) m = fmaxf(m, m_l[2 * p]);
  for (int d = threadIdx.x; d < rank; d += blockDim.x) {
    float num = 0.0f, den = 0.0f;
    if (m != -INFINITY) {
      for (int p = 0; p < num_parts; ++p) {
        const float mp = m_l[2 * p];
        const float w = mp == -INFINITY ? 0.0f : m_l[2 * p + 1] * exp2f(mp - m);
        num += w * o_part[(rh * num_parts + p) * rank + d];
        den += w;
      }
    }
    o_lat[rh * rank + d] = den > 0.0f ? num / den : 0.0f;
  }
}

// ---- 3. out = W_UV_h o_lat ---------------------------------------------------------------------

constexpr int kUvThreads = 256;
constexpr int kUvRows = 16;  // o_lat rows per block
constexpr int kUvCols = kUvThreads / 32;

__global__ void __launch_bounds__(kUvThreads)
    MlaUvKernel(MlaAttentionArgs a, const float* __restrict__ o_lat) {
  extern __shared__ float os[];  // [kUvRows][rank]
  const int N = a.shape.nope_dim, L = a.shape.kv_lora_rank;
  const int H = a.shape.num_heads, V = a.shape.v_dim;
  const int h = blockIdx.y;
  const int t0 = blockIdx.z * kUvRows;
  const int rows = min(kUvRows, a.num_tokens - t0);
  for (int i = threadIdx.x; i < kUvRows * L; i += kUvThreads) {
    const int b = i / L;
    os[i] = b < rows ? o_lat[(static_cast<int64_t>(t0 + b) * H + h) * L + i % L] : 0.0f;
  }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int j = blockIdx.x * kUvCols + warp;
  if (j >= V) return;  // warp-uniform, after the only barrier
  const bf16* w = a.kv_b + (static_cast<int64_t>(h) * (N + V) + N + j) * L;  // W_UV_h[j]
  float acc[kUvRows];
#pragma unroll
  for (int b = 0; b < kUvRows; ++b) acc[b] = 0.0f;
  for (int k = 2 * lane; k < L; k += 64) {  // L is even
    const float2 w2 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(w + k));
#pragma unroll
    for (int b = 0; b < kUvRows; ++b) {
      const float2 o = *reinterpret_cast<const float2*>(os + b * L + k);
      acc[b] += w2.x * o.x + w2.y * o.y;
    }
  }
  float mine = 0.0f;
#pragma unroll
  for (int b = 0; b < kUvRows; ++b) {
    const float v = WarpSum(acc[b]);
    if (lane == b) mine = v;
  }
  if (lane < rows) {
    a.out[(static_cast<int64_t>(t0 + lane) * H + h) * V + j] = __float2bfloat16_rn(mine);
  }
}

}  // namespace

cudaError_t LaunchMlaWriteCache(const MlaWriteCacheArgs& args, cudaStream_t stream) {
  if (args.num_tokens == 0) return cudaSuccess;
  MlaWriteCacheKernel<<<args.num_tokens, 128, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t LaunchMlaAttention(const MlaAttentionArgs& a, cudaStream_t stream) {
  if (a.num_tokens == 0) return cudaSuccess;
  const MlaShape& s = a.shape;
  const int T = a.num_tokens, H = s.num_heads, L = s.kv_lora_rank, W = L + s.rope_dim;
  const int parts = a.plan.num_partitions;
  const MlaWorkspaceLayout lay = MlaLayout(s, a.plan.max_tokens, parts);
  char* ws = static_cast<char*>(a.workspace);
  float* q_lat = reinterpret_cast<float*>(ws + lay.q_lat);
  float* o_lat = reinterpret_cast<float*>(ws + lay.o_lat);
  float* o_part = parts > 1 ? reinterpret_cast<float*>(ws + lay.o_part) : nullptr;
  float* ml = parts > 1 ? reinterpret_cast<float*>(ws + lay.ml) : nullptr;

  const dim3 absorb_grid((L + kAbsorbThreads - 1) / kAbsorbThreads, H,
                         (T + kAbsorbRows - 1) / kAbsorbRows);
  MlaAbsorbKernel<<<absorb_grid, kAbsorbThreads, sizeof(float) * kAbsorbRows * s.nope_dim,
                    stream>>>(a, q_lat);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;

  const size_t smem = sizeof(float) * kG * W + sizeof(bf16) * kTile * W;  // 73,728 B for V3
  err = cudaFuncSetAttribute(MlaAttendKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem));
  if (err != cudaSuccess) return err;
  const dim3 attend_grid((H + kG - 1) / kG, parts, T);
  MlaAttendKernel<<<attend_grid, kThreads, smem, stream>>>(a, q_lat, o_lat, o_part, ml);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  if (parts > 1) {
    MlaMergeKernel<<<dim3(T, H), 128, 0, stream>>>(o_part, ml, parts, L, o_lat);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }

  const dim3 uv_grid((s.v_dim + kUvCols - 1) / kUvCols, H, (T + kUvRows - 1) / kUvRows);
  MlaUvKernel<<<uv_grid, kUvThreads, sizeof(float) * kUvRows * L, stream>>>(a, o_lat);
  return cudaGetLastError();
}

}  // namespace kvasir::cuda::internal
