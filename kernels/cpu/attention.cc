// Paged attention and KV-cache writes (declared in ops.h).
//
// One task per (query token, head). Each task walks its context from position 0 upwards in tiles
// of kTile positions aligned to absolute positions (0, 32, 64, ...), with an online softmax:
//   scores s_p = dot(q, k_p) * scale (8-lane dot, fixed reduction tree, see simd_internal.h),
//   m' = max(m, max_p s_p); alpha = exp(m - m'); acc = acc * alpha; l = l * alpha;
//   for p in order: w = exp(s_p - m'); l += w; acc = fma(w, v_p, acc);
//   out = acc * (1 / l).
// Since tiles are fixed by absolute position and the order never changes, a query's result is
// independent of batching, chunking, block size, threads and ISA (scalar and AVX2 do the same ops).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/simd_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KVASIR_HAVE_X86 1
#endif

namespace kvasir::cpu {
namespace {

constexpr int kTile = 32;
constexpr int kMaxHeadDim = 512;

// scores[i] = dot(q, k[i]) * scale.
using ScoreFn = void (*)(const float* q, const float* const* k, int count, int d, float scale,
                         float* scores);
// acc = acc * alpha (skipped when alpha == 1), then acc = fma(w[i], v[i], acc) for i in order.
using AccumulateFn = void (*)(float* acc, const float* const* v, const float* w, int count, int d,
                              float alpha);

float DotScalar(const float* a, const float* b, int d) {
  float acc[8] = {};
  const int d8 = d / 8 * 8;
  for (int i = 0; i < d8; i += 8) {
    for (int l = 0; l < 8; ++l) acc[l] = std::fma(a[i + l], b[i + l], acc[l]);
  }
  float s = internal::ReduceLanes(acc);
  for (int i = d8; i < d; ++i) s = std::fma(a[i], b[i], s);
  return s;
}

void ScoreScalar(const float* q, const float* const* k, int count, int d, float scale,
                 float* scores) {
  for (int i = 0; i < count; ++i) scores[i] = DotScalar(q, k[i], d) * scale;
}

void AccumulateScalar(float* acc, const float* const* v, const float* w, int count, int d,
                      float alpha) {
  if (alpha != 1.0f) {
    for (int j = 0; j < d; ++j) acc[j] *= alpha;
  }
  for (int i = 0; i < count; ++i) {
    for (int j = 0; j < d; ++j) acc[j] = std::fma(w[i], v[i][j], acc[j]);
  }
}

#ifdef KVASIR_HAVE_X86
#define KVASIR_AVX2 __attribute__((target("avx2,fma,f16c")))

KVASIR_AVX2 float DotAvx2(const float* a, const float* b, int d) {
  __m256 acc = _mm256_setzero_ps();
  const int d8 = d / 8 * 8;
  for (int i = 0; i < d8; i += 8) {
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  }
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  float s = _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 0x55)));
  for (int i = d8; i < d; ++i) s = std::fma(a[i], b[i], s);
  return s;
}

KVASIR_AVX2 void ScoreAvx2(const float* q, const float* const* k, int count, int d, float scale,
                           float* scores) {
  for (int i = 0; i < count; ++i) scores[i] = DotAvx2(q, k[i], d) * scale;
}

KVASIR_AVX2 void AccumulateAvx2(float* acc, const float* const* v, const float* w, int count,
                                int d, float alpha) {
  const int d8 = d / 8 * 8;
  for (int j = 0; j < d8; j += 8) {
    __m256 a = _mm256_loadu_ps(acc + j);
    if (alpha != 1.0f) a = _mm256_mul_ps(a, _mm256_set1_ps(alpha));
    for (int i = 0; i < count; ++i) {
      a = _mm256_fmadd_ps(_mm256_set1_ps(w[i]), _mm256_loadu_ps(v[i] + j), a);
    }
    _mm256_storeu_ps(acc + j, a);
  }
  for (int j = d8; j < d; ++j) {
    float a = alpha != 1.0f ? acc[j] * alpha : acc[j];
    for (int i = 0; i < count; ++i) a = std::fma(w[i], v[i][j], a);
    acc[j] = a;
  }
}
#endif  // KVASIR_HAVE_X86

struct Kernels {
  ScoreFn score;
  AccumulateFn accumulate;
};

Kernels ChooseKernels() {
#ifdef KVASIR_HAVE_X86
  if (UseAvx2()) return {&ScoreAvx2, &AccumulateAvx2};
#endif
  return {&ScoreScalar, &AccumulateScalar};
}

// Address of position p's row for kv head kvh in one sequence's paged cache.
inline const float* CacheRow(const float* cache, const PagedAttentionArgs& a, const int32_t* blocks,
                             int p, int kvh) {
  const int64_t block = blocks[p / a.block_size];
  const int64_t slot = block * a.block_size + p % a.block_size;
  return cache + (slot * a.num_kv_heads + kvh) * a.head_dim;
}

// Attends one query head at absolute position pos to positions [0, pos] of its sequence.
void AttendOne(const PagedAttentionArgs& a, const Kernels& kern, const float* q,
               const int32_t* blocks, int pos, int kvh, float* out) {
  const int d = a.head_dim;
  alignas(32) float acc[kMaxHeadDim] = {};
  float scores[kTile];
  const float* k_rows[kTile];
  const float* v_rows[kTile];
  float m = -std::numeric_limits<float>::infinity();
  float l = 0.0f;
  for (int p0 = 0; p0 <= pos; p0 += kTile) {
    const int count = std::min(kTile, pos + 1 - p0);
    for (int i = 0; i < count; ++i) {
      k_rows[i] = CacheRow(a.k_cache, a, blocks, p0 + i, kvh);
      v_rows[i] = CacheRow(a.v_cache, a, blocks, p0 + i, kvh);
    }
    kern.score(q, k_rows, count, d, a.scale, scores);
    float tile_max = scores[0];
    for (int i = 1; i < count; ++i) tile_max = std::fmax(tile_max, scores[i]);
    const float m_new = std::fmax(m, tile_max);
    const float alpha = m_new == m ? 1.0f : std::exp(m - m_new);
    l *= alpha;
    for (int i = 0; i < count; ++i) {
      scores[i] = std::exp(scores[i] - m_new);
      l += scores[i];
    }
    kern.accumulate(acc, v_rows, scores, count, d, alpha);
    m = m_new;
  }
  const float inv_l = 1.0f / l;
  for (int j = 0; j < d; ++j) out[j] = acc[j] * inv_l;
}

}  // namespace

void PagedAttention(const PagedAttentionArgs& a, ThreadPool* pool) {
  const int64_t num_tokens = a.query_start[a.num_seqs];
  std::vector<int32_t> token_seq(num_tokens);
  for (int s = 0; s < a.num_seqs; ++s) {
    for (int32_t t = a.query_start[s]; t < a.query_start[s + 1]; ++t) token_seq[t] = s;
  }
  const Kernels kern = ChooseKernels();
  const int group = a.num_heads / a.num_kv_heads;
  auto task = [&](int64_t item) {
    const int64_t t = item / a.num_heads;
    const int h = static_cast<int>(item % a.num_heads);
    const int s = token_seq[t];
    const int q_len = a.query_start[s + 1] - a.query_start[s];
    const int pos = a.seq_lens[s] - q_len + static_cast<int>(t - a.query_start[s]);
    const int64_t offset = (t * a.num_heads + h) * a.head_dim;
    AttendOne(a, kern, a.q + offset, a.block_table + a.block_table_indptr[s], pos, h / group,
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
