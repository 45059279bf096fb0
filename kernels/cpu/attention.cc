// Paged attention and KV-cache writes (declared in ops.h).
//
// One task per (query token, head), computed with the numerics of llama.cpp's CPU attention
// (non-flash path, F32 KV cache) so that GGUF models reproduce llama.cpp bit for bit:
//   scores s_p = dot(q, k_p) * scale, the dot as ggml_vec_dot_f32 does it on AVX2: four 8-lane
//     FMA accumulators over 32-element steps, reduced acc0+acc2, acc1+acc3, then +, then the
//     8 lanes as (l0+l4)+(l1+l5) + ((l2+l6)+(l3+l7)) (hadd order);
//   softmax as ggml_soft_max: m = max_p s_p; e_p = ExpfGgml(s_p - m); the sum is taken over
//     8-position blocks aligned at position 0 (each block summed in float, ReduceLanes order)
//     accumulated in double; w_p = e_p * float(1 / sum);
//   out_j as llamafile's tinyBLAS sgemm (V transposed): 8 lanes, lane p % 8 accumulates
//     fma(v_p[j], w_p) in position order, then ReduceLanes.
// Every step depends only on the query row and its context, in a fixed order, so the result is
// independent of batching, chunking, block size and threads.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/simd_internal.h"

namespace kvasir::cpu {
namespace {

constexpr int kMaxHeadDim = 512;

inline float DotGgml(const float* a, const float* b, int d) {
  float acc[4][8] = {};
  const int d32 = d / 32 * 32;
  for (int i = 0; i < d32; i += 32) {
    for (int r = 0; r < 4; ++r) {
      for (int l = 0; l < 8; ++l)
        acc[r][l] = std::fma(a[i + 8 * r + l], b[i + 8 * r + l], acc[r][l]);
    }
  }
  float t[4];
  for (int l = 0; l < 8; ++l) {
    acc[0][l] += acc[2][l];
    acc[1][l] += acc[3][l];
    acc[0][l] += acc[1][l];
  }
  for (int l = 0; l < 4; ++l) t[l] = acc[0][l] + acc[0][l + 4];
  float s = (t[0] + t[1]) + (t[2] + t[3]);
  for (int i = d32; i < d; ++i) s += a[i] * b[i];
  return s;
}

// Address of position p's row for kv head kvh in one sequence's paged cache.
inline const float* CacheRow(const float* cache, const PagedAttentionArgs& a, const int32_t* blocks,
                             int p, int kvh) {
  const int64_t block = blocks[p / a.block_size];
  const int64_t slot = block * a.block_size + p % a.block_size;
  return cache + (slot * a.num_kv_heads + kvh) * a.head_dim;
}

#define KVASIR_AVX2 __attribute__((target("avx2,fma")))

// DotGgml with AVX2 intrinsics: the same four accumulators, the same reduction, bit for bit.
KVASIR_AVX2 float DotGgmlAvx2(const float* a, const float* b, int d) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  const int d32 = d / 32 * 32;
  for (int i = 0; i < d32; i += 32) {
    for (int r = 0; r < 4; ++r) {
      acc[r] =
          _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8 * r), _mm256_loadu_ps(b + i + 8 * r), acc[r]);
    }
  }
  alignas(32) float l[8];
  _mm256_store_ps(l, _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3])));
  float t[4];
  for (int k = 0; k < 4; ++k) t[k] = l[k] + l[k + 4];
  float s = (t[0] + t[1]) + (t[2] + t[3]);
  for (int i = d32; i < d; ++i) s += a[i] * b[i];
  return s;
}

// acc[j][l] = fma(rows[l][j], w[l], acc[j][l]) for the 8 lanes l and j < d: one 8-position block
// of the V sum, each lane still accumulating its own positions in order. The rows are transposed
// 8x8 in registers so that each fma is one 8-lane instruction.
KVASIR_AVX2 void AccumulateVBlockAvx2(const float* const rows[8], const float* w, int d,
                                      float (*acc)[8]) {
  const __m256 wv = _mm256_loadu_ps(w);
  const int d8 = d / 8 * 8;
  for (int j = 0; j < d8; j += 8) {
    __m256 r[8];
    for (int l = 0; l < 8; ++l) r[l] = _mm256_loadu_ps(rows[l] + j);
    // 8x8 transpose: c[jj] = (rows[0][j+jj], ..., rows[7][j+jj]).
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    const __m256 c[8] = {
        _mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
        _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
        _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
        _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
    for (int jj = 0; jj < 8; ++jj) {
      _mm256_store_ps(acc[j + jj], _mm256_fmadd_ps(c[jj], wv, _mm256_load_ps(acc[j + jj])));
    }
  }
  for (int j = d8; j < d; ++j) {
    for (int l = 0; l < 8; ++l) acc[j][l] = std::fma(rows[l][j], w[l], acc[j][l]);
  }
}

// Attends one query head at absolute position pos to positions [0, pos] of its sequence.
KVASIR_FMA_CLONES void AttendOne(const PagedAttentionArgs& a, const float* q, const int32_t* blocks,
                                 int pos, int kvh, float* out) {
  const int d = a.head_dim;
  const int n = pos + 1;
  const bool avx2 = UseAvx2();
  thread_local std::vector<float> w;
  w.assign(static_cast<size_t>((n + 7) / 8 * 8), 0.0f);
  float m = -std::numeric_limits<float>::infinity();
  for (int p = 0; p < n; ++p) {
    const float* k = CacheRow(a.k_cache, a, blocks, p, kvh);
    w[p] = (avx2 ? DotGgmlAvx2(q, k, d) : DotGgml(q, k, d)) * a.scale;
    m = std::fmax(m, w[p]);
  }
  for (int p = 0; p < n; ++p) w[p] = internal::ExpfGgml(w[p] - m);
  double sum = 0.0;
  for (int p0 = 0; p0 < n; p0 += 8) sum += static_cast<double>(internal::ReduceLanes(&w[p0]));
  const float inv = static_cast<float>(1.0 / sum);
  for (int p = 0; p < n; ++p) w[p] *= inv;
  alignas(32) float acc[kMaxHeadDim][8];
  for (int j = 0; j < d; ++j) {
    for (int l = 0; l < 8; ++l) acc[j][l] = 0.0f;
  }
  int p_done = 0;
  if (avx2) {
    for (; p_done + 8 <= n; p_done += 8) {
      const float* rows[8];
      for (int l = 0; l < 8; ++l) rows[l] = CacheRow(a.v_cache, a, blocks, p_done + l, kvh);
      AccumulateVBlockAvx2(rows, &w[p_done], d, acc);
    }
  }
  for (int p = p_done; p < n; ++p) {
    const float* v = CacheRow(a.v_cache, a, blocks, p, kvh);
    const float wp = w[p];
    float* lane = &acc[0][p % 8];
    for (int j = 0; j < d; ++j) lane[8 * j] = std::fma(v[j], wp, lane[8 * j]);
  }
  for (int j = 0; j < d; ++j) out[j] = internal::ReduceLanes(acc[j]);
}

}  // namespace

void PagedAttention(const PagedAttentionArgs& a, ThreadPool* pool) {
  const int64_t num_tokens = a.query_start[a.num_seqs];
  std::vector<int32_t> token_seq(num_tokens);
  for (int s = 0; s < a.num_seqs; ++s) {
    for (int32_t t = a.query_start[s]; t < a.query_start[s + 1]; ++t) token_seq[t] = s;
  }
  const int group = a.num_heads / a.num_kv_heads;
  auto task = [&](int64_t item) {
    const int64_t t = item / a.num_heads;
    const int h = static_cast<int>(item % a.num_heads);
    const int s = token_seq[t];
    const int q_len = a.query_start[s + 1] - a.query_start[s];
    const int pos = a.seq_lens[s] - q_len + static_cast<int>(t - a.query_start[s]);
    const int64_t offset = (t * a.num_heads + h) * a.head_dim;
    AttendOne(a, a.q + offset, a.block_table + a.block_table_indptr[s], pos, h / group,
              a.out + offset);
  };
  const int64_t items = num_tokens * a.num_heads;
  if (pool == nullptr) {
    for (int64_t i = 0; i < items; ++i) task(i);
  } else {
    pool->ParallelForTasks(items, task);
  }
}

void WriteKvCache(const float* k, const float* v, int64_t num_tokens, int num_kv_heads,
                  int head_dim, const int64_t* slot_mapping, float* k_cache, float* v_cache) {
  const int64_t row = static_cast<int64_t>(num_kv_heads) * head_dim;
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (slot_mapping[t] < 0) continue;
    std::copy(k + t * row, k + (t + 1) * row, k_cache + slot_mapping[t] * row);
    std::copy(v + t * row, v + (t + 1) * row, v_cache + slot_mapping[t] * row);
  }
}

}  // namespace kvasir::cpu
