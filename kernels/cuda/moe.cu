// Mixture-of-experts kernels (moe.h): routing (one warp per token), align (one block: counts,
// offsets, a stable permutation and the tile schedule), row gather, the grouped SwiGLU GEMM (bf16
// WMMA tensor cores, cp.async multi-stage pipeline, tiles from the device schedule) and combine.
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/moe_args.h"

namespace kvasir::cuda::internal {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float QuietNan() { return __int_as_float(0x7fc00000); }

// ---------------------------------------------------------------------------------------------
// Routing: one warp per token; scores, choices and group scores in per-warp shared memory.

constexpr int kRouteWarps = 4;

// (a, ia) comes strictly before (b, ib) in the order "larger choice first, lower index on ties";
// ib < 0 stands for "nothing yet", after everything.
__device__ __forceinline__ bool Before(float a, int ia, float b, int ib) {
  return ib < 0 || a > b || (a == b && ia < ib);
}

__global__ void __launch_bounds__(kRouteWarps * 32)
    MoeRouteKernel(const float* logits, int32_t num_tokens, MoeRouting r, const float* bias,
                   int32_t* ids, float* weights) {
  __shared__ float score_sh[kRouteWarps][kMoeMaxExperts];
  __shared__ float choice_sh[kRouteWarps][kMoeMaxExperts];
  __shared__ float group_sh[kRouteWarps][kMoeMaxExperts];
  __shared__ float sum_sh[kRouteWarps];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t = int64_t{blockIdx.x} * kRouteWarps + warp;
  if (t >= num_tokens) return;  // the whole warp: this kernel has no block-wide barrier
  const int n = r.num_experts;
  const float* l = logits + t * n;
  float* s = score_sh[warp];
  float* c = choice_sh[warp];

  // 1. Scores, as cpu::MoeRoute computes them (softmax: max subtracted, sum in expert order).
  if (r.scoring == MoeScoring::kSigmoid) {
    for (int e = lane; e < n; e += 32) s[e] = 1.0f / (1.0f + expf(-l[e]));
  } else {
    float m = -INFINITY;
    for (int e = lane; e < n; e += 32) m = fmaxf(m, l[e]);
    m = WarpMax(m);
    for (int e = lane; e < n; e += 32) s[e] = expf(l[e] - m);
    __syncwarp();
    if (lane == 0) {
      float sum = 0.0f;
      for (int e = 0; e < n; ++e) sum += s[e];
      sum_sh[warp] = sum;
    }
    __syncwarp();
    const float sum = sum_sh[warp];
    for (int e = lane; e < n; e += 32) s[e] = s[e] / sum;
  }
  // 2. Choices: score + bias, NaN -> -inf (each lane its own experts).
  for (int e = lane; e < n; e += 32) {
    const float ce = s[e] + (bias != nullptr ? bias[e] : 0.0f);
    c[e] = isnan(ce) ? -INFINITY : ce;
  }
  __syncwarp();

  // 3. Group-limited routing: only the topk_groups best groups stay eligible.
  if (r.num_groups > 1) {
    const int per_group = n / r.num_groups;
    float* gs = group_sh[warp];
    for (int g = lane; g < r.num_groups; g += 32) {
      const float* cg = c + g * per_group;
      float best = -INFINITY, second = -INFINITY;
      for (int i = 0; i < per_group; ++i) {
        if (cg[i] > best) {
          second = best;
          best = cg[i];
        } else if (cg[i] > second) {
          second = cg[i];
        }
      }
      gs[g] = r.group_score == MoeGroupScore::kMax ? best : best + second;
    }
    __syncwarp();
    for (int g = lane; g < r.num_groups; g += 32) {
      int rank = 0;  // groups strictly before g (larger score, or equal and lower index)
      for (int h = 0; h < r.num_groups; ++h) rank += (h != g && Before(gs[h], h, gs[g], g));
      if (rank >= r.topk_groups) {
        for (int i = 0; i < per_group; ++i) c[g * per_group + i] = -INFINITY;
      }
    }
    __syncwarp();
  }

  // 4. top_k by choice: pick j is the first expert strictly after pick j - 1 in the order.
  float prev_c = INFINITY;
  int prev_i = -1;
  float sum = 0.0f;  // lane 0's
  int32_t* out_ids = ids + t * r.top_k;
  float* out_w = weights + t * r.top_k;
  for (int j = 0; j < r.top_k; ++j) {
    float bc = 0.0f;
    int bi = -1;
    for (int e = lane; e < n; e += 32) {
      const float ce = c[e];
      const bool after = ce < prev_c || (ce == prev_c && e > prev_i);
      if (after && Before(ce, e, bc, bi)) {
        bc = ce;
        bi = e;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o /= 2) {
      const float oc = __shfl_xor_sync(kFullMask, bc, o);
      const int oi = __shfl_xor_sync(kFullMask, bi, o);
      if (oi >= 0 && Before(oc, oi, bc, bi)) {
        bc = oc;
        bi = oi;
      }
    }
    prev_c = bc;
    prev_i = bi;
    if (lane == 0) {
      const float w = s[bi];
      out_ids[j] = bi;
      out_w[j] = w;
      sum += w;
    }
  }
  // 5. Weights: the scores, renormalised in j order, times scaling.
  if (lane == 0) {
    for (int j = 0; j < r.top_k; ++j) {
      float w = out_w[j];
      if (r.renormalize) w = w / sum;
      out_w[j] = w * r.scaling;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Align: one block of 1024 threads. Counts per expert (shared atomics), exclusive scans of rows
// and tiles, the tile list, then a stable rank of each assignment within its expert, chunk by
// chunk: within a warp by __match_any_sync, across warps by per-warp counts.

constexpr int kAlignThreads = 1024;
constexpr int kAlignWarps = kAlignThreads / 32;
static_assert(kMoeMaxExperts <= kAlignThreads && kMoeMaxExperts % 32 == 0);

__global__ void __launch_bounds__(kAlignThreads)
    MoeAlignKernel(const int32_t* ids, int32_t n, int32_t top_k, int32_t num_experts,
                   int32_t block_m, MoeAlignOut out) {
  __shared__ int32_t count[kMoeMaxExperts];
  __shared__ int32_t cursor[kMoeMaxExperts];
  __shared__ int32_t tile_start[kMoeMaxExperts + 1];
  __shared__ int32_t warp_rows[kMoeMaxExperts / 32], warp_tiles[kMoeMaxExperts / 32];
  __shared__ int32_t total_rows;
  __shared__ int32_t warp_count[kAlignWarps][kMoeMaxExperts];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  for (int i = tid; i < kMoeMaxExperts; i += kAlignThreads) count[i] = 0;
  for (int i = tid; i < kAlignWarps * kMoeMaxExperts; i += kAlignThreads) {
    (&warp_count[0][0])[i] = 0;
  }
  __syncthreads();
  for (int i = tid; i < n; i += kAlignThreads) {
    const int e = ids[i];
    if (e >= 0 && e < num_experts) atomicAdd(&count[e], 1);
  }
  __syncthreads();

  // Exclusive scans of rows and tiles over the experts (threads < kMoeMaxExperts, one expert
  // each; experts >= num_experts count 0). Every warp runs the shuffles with all lanes.
  const int rows_e = tid < num_experts ? count[tid] : 0;
  const int tiles_e = (rows_e + block_m - 1) / block_m;
  int inc_rows = rows_e, inc_tiles = tiles_e;
#pragma unroll
  for (int o = 1; o < 32; o *= 2) {
    const int a = __shfl_up_sync(kFullMask, inc_rows, o);
    const int b = __shfl_up_sync(kFullMask, inc_tiles, o);
    if (lane >= o) {
      inc_rows += a;
      inc_tiles += b;
    }
  }
  if (tid < kMoeMaxExperts && lane == 31) {
    warp_rows[warp] = inc_rows;
    warp_tiles[warp] = inc_tiles;
  }
  __syncthreads();
  if (tid < kMoeMaxExperts) {
    int rows_before = 0, tiles_before = 0;
    for (int w = 0; w < warp; ++w) {
      rows_before += warp_rows[w];
      tiles_before += warp_tiles[w];
    }
    const int ex_rows = rows_before + inc_rows - rows_e;
    const int ex_tiles = tiles_before + inc_tiles - tiles_e;
    if (tid < num_experts) {
      cursor[tid] = ex_rows;
      tile_start[tid] = ex_tiles;
      out.expert_offsets[tid] = ex_rows;
    }
    if (tid == kMoeMaxExperts - 1) {  // its inclusive sums are the totals
      const int all_rows = rows_before + inc_rows, all_tiles = tiles_before + inc_tiles;
      total_rows = all_rows;
      tile_start[num_experts] = all_tiles;
      out.expert_offsets[num_experts] = all_rows;
      *out.num_tiles = min(all_tiles, out.max_tiles);
    }
  }
  __syncthreads();

  // The tile list: expert e's tiles start at tile_start[e], one per block_m rows.
  for (int e = warp; e < num_experts; e += kAlignWarps) {
    const int t0 = tile_start[e], num = tile_start[e + 1] - t0;
    for (int b = lane; b < num; b += 32) {
      if (t0 + b < out.max_tiles) {
        out.tile_expert[t0 + b] = e;
        out.tile_row[t0 + b] = cursor[e] + b * block_m;
      }
    }
  }
  // Rows past the valid assignments (only when some id was out of range) are unused.
  for (int r = total_rows + tid; r < n; r += kAlignThreads) out.source_token[r] = -1;

  // Stable ranks: assignment i of expert e goes to cursor[e] + (earlier assignments of e).
  for (int base = 0; base < n; base += kAlignThreads) {
    const int i = base + tid;
    int e = -1;
    if (i < n) {
      e = ids[i];
      if (e < 0 || e >= num_experts) {
        out.row_of[i] = -1;
        e = -1;
      }
    }
    const unsigned peers = __match_any_sync(kFullMask, e);
    const int rank = __popc(peers & ((1u << lane) - 1u));
    const bool leader = rank == 0;
    if (e >= 0 && leader) warp_count[warp][e] = __popc(peers);
    __syncthreads();
    if (e >= 0) {
      int before = 0;
      for (int w = 0; w < warp; ++w) before += warp_count[w][e];
      const int row = cursor[e] + before + rank;
      out.row_of[i] = row;
      out.source_token[row] = i / top_k;
    }
    __syncthreads();  // every read of cursor and warp_count for this chunk is done
    if (e >= 0 && leader) {
      atomicAdd(&cursor[e], __popc(peers));
      warp_count[warp][e] = 0;
    }
    __syncthreads();
  }
}

// ---------------------------------------------------------------------------------------------
// Gather and combine: one block per row / token, 16-byte vectors (hidden % 8 == 0).

constexpr int kRowThreads = 128;

__global__ void __launch_bounds__(kRowThreads)
    MoeGatherKernel(const bf16* x, int32_t num_tokens, int64_t hidden, const int32_t* source_token,
                    bf16* xs) {
  const int64_t r = blockIdx.x;
  const int32_t t = source_token[r];
  bf16* o = xs + r * hidden;
  if (t < 0 || t >= num_tokens) {
    float nan8[8];
#pragma unroll
    for (int q = 0; q < 8; ++q) nan8[q] = QuietNan();
    for (int64_t i = threadIdx.x * 8; i < hidden; i += kRowThreads * 8) Store8(o + i, nan8);
    return;
  }
  const bf16* in = x + int64_t{t} * hidden;
  for (int64_t i = threadIdx.x * 8; i < hidden; i += kRowThreads * 8) {
    *reinterpret_cast<uint4*>(o + i) = *reinterpret_cast<const uint4*>(in + i);
  }
}

__global__ void __launch_bounds__(kRowThreads)
    MoeCombineKernel(const bf16* ys, int64_t hidden, const int32_t* row_of, const float* weights,
                     int32_t top_k, bf16* out) {
  const int64_t t = blockIdx.x;
  const int32_t* rows = row_of + t * top_k;
  const float* w = weights + t * top_k;
  for (int64_t d = threadIdx.x * 8; d < hidden; d += kRowThreads * 8) {
    float acc[8];
#pragma unroll
    for (int q = 0; q < 8; ++q) acc[q] = 0.0f;
    for (int j = 0; j < top_k; ++j) {
      const int32_t r = rows[j];
      const float wj = w[j];
      float y[8];
      if (r < 0) {
#pragma unroll
        for (int q = 0; q < 8; ++q) y[q] = QuietNan();
      } else {
        Load8(ys + int64_t{r} * hidden + d, y);
      }
#pragma unroll
      for (int q = 0; q < 8; ++q) acc[q] += wj * y[q];
    }
    Store8(out + t * hidden + d, acc);
  }
}

// ---------------------------------------------------------------------------------------------
// The grouped GEMM: c[rows, N] = a[rows, K] * W_e[N, K]^T per tile of the schedule, bf16 WMMA
// 16x16x16 with fp32 accumulators. Block tile BM x BN, K step 32, warps WARPS_M x WARPS_N each
// owning (BM / WARPS_M) x (BN / WARPS_N). kGateUp: two weights (gate, up) on the same a tile,
// epilogue c = bf16(silu(bf16(gate)) * bf16(up)). Operands reach shared memory by cp.async
// (16 bytes, zero-filled past the rows / N / K edges) in a kStages-deep ring.

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem),
               "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ const bf16* ExpertWeight(const MoeWeight& w, int e) {
  return w.ptrs != nullptr ? w.ptrs[e] : w.base + int64_t{e} * w.expert_stride;
}

template <int BM, int BN, int WARPS_M, int WARPS_N, bool kGateUp>
struct GemmConfig {
  static constexpr int kBK = 32;
  static constexpr int kLd = kBK + 8;  // bf16 elements per smem row (80 bytes: no bank conflicts)
  static constexpr int kNumB = kGateUp ? 2 : 1;
  static constexpr int kThreads = 32 * WARPS_M * WARPS_N;
  static constexpr int kWM = BM / WARPS_M, kWN = BN / WARPS_N;
  static constexpr int kFragM = kWM / 16, kFragN = kWN / 16;
  static constexpr int kStageElems = (BM + kNumB * BN) * kLd;
  static constexpr int kStageBytes = kStageElems * 2;
  static constexpr int kMaxStatic = 48 * 1024;
  static constexpr int kStages = kMaxStatic / kStageBytes < 4 ? kMaxStatic / kStageBytes : 4;
  static constexpr int kLdc = BN + 4;  // floats per epilogue row
  static constexpr int kEpiBytes = kNumB * BM * kLdc * 4;
  static constexpr int kSmemBytes =
      kStages * kStageBytes > kEpiBytes ? kStages* kStageBytes : kEpiBytes;
  static_assert(kStages >= 2, "tile too large for static shared memory");
  static_assert(kSmemBytes <= kMaxStatic);
  static_assert(kWM % 16 == 0 && kWN % 16 == 0 && BN % 8 == 0);
  static_assert((BM * 2 * kLd) % 32 == 0 && (16 * 2 * kLd) % 32 == 0, "WMMA 32-byte alignment");
};

template <int BM, int BN, int WARPS_M, int WARPS_N, bool kGateUp>
__global__ void __launch_bounds__(32 * WARPS_M * WARPS_N)
    MoeGemmKernel(const bf16* a, int64_t K, int64_t N, MoeWeight w0, MoeWeight w1,
                  const int32_t* offsets, const int32_t* tile_expert, const int32_t* tile_row,
                  const int32_t* num_tiles, bf16* c) {
  using Cfg = GemmConfig<BM, BN, WARPS_M, WARPS_N, kGateUp>;
  using namespace nvcuda;
  constexpr int kBK = Cfg::kBK, kLd = Cfg::kLd, kStages = Cfg::kStages;
  __shared__ __align__(128) unsigned char smem[Cfg::kSmemBytes];

  const int tile = blockIdx.x;
  if (tile >= *num_tiles) return;  // past the device's schedule: the whole block leaves
  const int e = tile_expert[tile];
  const int64_t row0 = tile_row[tile];
  const int rows = static_cast<int>(min(int64_t{BM}, int64_t{offsets[e + 1]} - row0));
  const int64_t n0 = int64_t{blockIdx.y} * BN;
  const bf16* b0 = ExpertWeight(w0, e);
  const bf16* b1 = kGateUp ? ExpertWeight(w1, e) : b0;
  bf16* sbase = reinterpret_cast<bf16*>(smem);

  auto load_stage = [&](int stage, int kt) {
    bf16* sa = sbase + stage * Cfg::kStageElems;
    bf16* sb = sa + BM * kLd;
    const int64_t k0 = int64_t{kt} * kBK;
    constexpr int kChunks = kBK / 8;  // 16-byte chunks per row
    for (int ch = threadIdx.x; ch < BM * kChunks; ch += Cfg::kThreads) {
      const int r = ch / kChunks, kc = (ch % kChunks) * 8;
      const bool ok = r < rows && k0 + kc < K;
      CpAsync16(sa + r * kLd + kc, ok ? a + (row0 + r) * K + k0 + kc : a, ok);
    }
    for (int ch = threadIdx.x; ch < Cfg::kNumB * BN * kChunks; ch += Cfg::kThreads) {
      const int which = ch / (BN * kChunks), rem = ch % (BN * kChunks);
      const int r = rem / kChunks, kc = (rem % kChunks) * 8;
      const bf16* wb = which == 0 ? b0 : b1;
      const bool ok = n0 + r < N && k0 + kc < K;
      CpAsync16(sb + (which * BN + r) * kLd + kc, ok ? wb + (n0 + r) * K + k0 + kc : wb, ok);
    }
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[Cfg::kNumB][Cfg::kFragM][Cfg::kFragN];
#pragma unroll
  for (int q = 0; q < Cfg::kNumB; ++q) {
#pragma unroll
    for (int i = 0; i < Cfg::kFragM; ++i) {
#pragma unroll
      for (int j = 0; j < Cfg::kFragN; ++j) wmma::fill_fragment(acc[q][i][j], 0.0f);
    }
  }
  const int warp = threadIdx.x / 32;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const int num_k = static_cast<int>((K + kBK - 1) / kBK);

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < num_k) load_stage(s, s);
    CpAsyncCommit();  // always: one group per stage keeps the wait counts right
  }
  for (int kt = 0; kt < num_k; ++kt) {
    CpAsyncWait<kStages - 2>();  // this thread's copies of tile kt have landed ...
    __syncthreads();             // ... and everyone's; stage (kt - 1) % kStages is free again
    const int next = kt + kStages - 1;
    if (next < num_k) load_stage(next % kStages, next);
    CpAsyncCommit();
    const bf16* sa = sbase + (kt % kStages) * Cfg::kStageElems;
    const bf16* sb = sa + BM * kLd;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[Cfg::kFragM];
#pragma unroll
      for (int i = 0; i < Cfg::kFragM; ++i) {
        wmma::load_matrix_sync(fa[i], sa + (wm * Cfg::kWM + i * 16) * kLd + kk, kLd);
      }
#pragma unroll
      for (int q = 0; q < Cfg::kNumB; ++q) {
#pragma unroll
        for (int j = 0; j < Cfg::kFragN; ++j) {
          // B(k, n) = W[n0 + n][k0 + k]: the [BN][kLd] weight tile read column-major.
          wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
          wmma::load_matrix_sync(fb, sb + (q * BN + wn * Cfg::kWN + j * 16) * kLd + kk, kLd);
#pragma unroll
          for (int i = 0; i < Cfg::kFragM; ++i)
            wmma::mma_sync(acc[q][i][j], fa[i], fb, acc[q][i][j]);
        }
      }
    }
  }
  CpAsyncWait<0>();
  __syncthreads();  // the ring is no longer read: reuse it for the fp32 epilogue tile

  float* sc = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int q = 0; q < Cfg::kNumB; ++q) {
#pragma unroll
    for (int i = 0; i < Cfg::kFragM; ++i) {
#pragma unroll
      for (int j = 0; j < Cfg::kFragN; ++j) {
        float* dst =
            sc + q * BM * Cfg::kLdc + (wm * Cfg::kWM + i * 16) * Cfg::kLdc + wn * Cfg::kWN + j * 16;
        wmma::store_matrix_sync(dst, acc[q][i][j], Cfg::kLdc, wmma::mem_row_major);
      }
    }
  }
  __syncthreads();
  constexpr int kVecPerRow = BN / 8;
  for (int v = threadIdx.x; v < BM * kVecPerRow; v += Cfg::kThreads) {
    const int r = v / kVecPerRow, col = (v % kVecPerRow) * 8;
    if (r >= rows || n0 + col >= N) continue;  // N % 8 == 0: a vector is all in or all out
    const float* g = sc + r * Cfg::kLdc + col;
    float o[8];
#pragma unroll
    for (int q = 0; q < 8; ++q) {
      if constexpr (kGateUp) {
        const float gv = RoundBf16(g[q]), uv = RoundBf16(g[BM * Cfg::kLdc + q]);
        o[q] = gv / (1.0f + __expf(-gv)) * uv;
      } else {
        o[q] = g[q];
      }
    }
    Store8(c + (row0 + r) * N + n0 + col, o);
  }
}

template <int BM, int BN, int WARPS_M, int WARPS_N>
cudaError_t RunExperts(const MoeExpertsArgs& a, cudaStream_t stream) {
  constexpr int kThreads = 32 * WARPS_M * WARPS_N;
  const dim3 grid_gate_up(a.max_tiles, static_cast<unsigned>((a.inter + BN - 1) / BN));
  MoeGemmKernel<BM, BN, WARPS_M, WARPS_N, true><<<grid_gate_up, kThreads, 0, stream>>>(
      a.xs, a.hidden, a.inter, a.gate, a.up, a.expert_offsets, a.tile_expert, a.tile_row,
      a.num_tiles, a.h);
  if (cudaError_t err = cudaGetLastError(); err != cudaSuccess) return err;
  const dim3 grid_down(a.max_tiles, static_cast<unsigned>((a.hidden + BN - 1) / BN));
  MoeGemmKernel<BM, BN, WARPS_M, WARPS_N, false>
      <<<grid_down, kThreads, 0, stream>>>(a.h, a.inter, a.hidden, a.down, a.down, a.expert_offsets,
                                           a.tile_expert, a.tile_row, a.num_tiles, a.ys);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchMoeRoute(const float* logits, int32_t num_tokens, const MoeRouting& routing,
                           const float* selection_bias, int32_t* expert_ids, float* weights,
                           cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>((num_tokens + kRouteWarps - 1) / kRouteWarps);
  MoeRouteKernel<<<blocks, kRouteWarps * 32, 0, stream>>>(logits, num_tokens, routing,
                                                          selection_bias, expert_ids, weights);
  return cudaGetLastError();
}

cudaError_t LaunchMoeAlign(const int32_t* expert_ids, int32_t num_tokens, int32_t top_k,
                           int32_t num_experts, int32_t block_m, const MoeAlignOut& out,
                           cudaStream_t stream) {
  // Runs even for no tokens: the offsets and the tile count must still be written.
  MoeAlignKernel<<<1, kAlignThreads, 0, stream>>>(expert_ids, num_tokens * top_k, top_k,
                                                  num_experts, block_m, out);
  return cudaGetLastError();
}

cudaError_t LaunchMoeGatherRows(const bf16* x, int32_t num_tokens, int64_t hidden,
                                const int32_t* source_token, int32_t num_rows, bf16* xs,
                                cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  MoeGatherKernel<<<num_rows, kRowThreads, 0, stream>>>(x, num_tokens, hidden, source_token, xs);
  return cudaGetLastError();
}

cudaError_t LaunchMoeExperts(const MoeExpertsArgs& args, cudaStream_t stream) {
  if (args.max_tiles == 0) return cudaSuccess;
  if (args.block_m == kMoeBlockMSmall) return RunExperts<kMoeBlockMSmall, 64, 1, 4>(args, stream);
  return RunExperts<kMoeBlockMLarge, 64, 2, 2>(args, stream);
}

cudaError_t LaunchMoeCombine(const bf16* ys, int64_t hidden, const int32_t* row_of,
                             const float* weights, int32_t num_tokens, int32_t top_k, bf16* out,
                             cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  MoeCombineKernel<<<num_tokens, kRowThreads, 0, stream>>>(ys, hidden, row_of, weights, top_k, out);
  return cudaGetLastError();
}

}  // namespace kvasir::cuda::internal
