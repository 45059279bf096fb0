// AVX2+FMA+F16C micro-kernels for MatMul. They follow the reduction order documented in
// simd_internal.h exactly, so they agree bit for bit with the scalar kernels in matmul.cc.
#include "kernels/cpu/simd_internal.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include <array>
#include <cmath>
#include <utility>

#define KVASIR_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace kvasir::cpu::internal {
namespace {

KVASIR_AVX2 inline float ReduceLanesAvx2(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));         // (0+2), (1+3)
  const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 0x55));  // (0+2) + (1+3)
  return _mm_cvtss_f32(s1);
}

// Element e of a Q4 block lands in byte e: low nibbles (0..15) in the low 128 bits.
KVASIR_AVX2 inline __m256i UnpackNibbles(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

// Block b of a weight row: its quants (element e in byte e) and the address of its fp16 scale d
// (followed by m for Q4_1).
template <DType WT>
KVASIR_AVX2 inline __m256i LoadQuants(const uint8_t* row, int64_t b) {
  if constexpr (WT == DType::kQ8_0) {
    const BlockQ8_0* blk = reinterpret_cast<const BlockQ8_0*>(row) + b;
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs));
  } else if constexpr (WT == DType::kQ4_0) {
    return UnpackNibbles((reinterpret_cast<const BlockQ4_0*>(row) + b)->qs);
  } else {
    return UnpackNibbles((reinterpret_cast<const BlockQ4_1*>(row) + b)->qs);
  }
}

template <DType WT>
inline const uint16_t* BlockHeader(const uint8_t* row, int64_t b) {
  return reinterpret_cast<const uint16_t*>(row + b * static_cast<int64_t>(BlockBytes(WT)));
}

// Converts field f (0 = d, 1 = m) of block b of NR weight rows to floats, in one vcvtph2ps. The
// halves are gathered in a register: gathering them through memory stalls store forwarding.
template <DType WT, int NR>
KVASIR_AVX2 inline __m128 LoadHalves(const uint8_t* const* rows, int64_t b, int f) {
  __m128i h = _mm_cvtsi32_si128(BlockHeader<WT>(rows[0], b)[f]);
  if constexpr (NR > 1) h = _mm_insert_epi16(h, BlockHeader<WT>(rows[1], b)[f], 1);
  if constexpr (NR > 2) h = _mm_insert_epi16(h, BlockHeader<WT>(rows[2], b)[f], 2);
  if constexpr (NR > 3) h = _mm_insert_epi16(h, BlockHeader<WT>(rows[3], b)[f], 3);
  return _mm_cvtph_ps(h);
}

// Exact per-lane int32 dot products of one weight block with one activation block.
// Q8_0: signed weights via |w| * sign(x, w). Q4_0: q * x - 8 * x (x lane sums given).
// Q4_1: q * x. No int16 saturation is possible: |pair sums| <= 2 * 128 * 127.
template <DType WT>
KVASIR_AVX2 inline __m256i LaneDot(__m256i w, __m256i w_abs, __m256i x, __m256i x_lane8) {
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (WT == DType::kQ8_0) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(x, w)), ones);
  } else if constexpr (WT == DType::kQ4_0) {
    return _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones), x_lane8);
  } else {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
  }
}

template <DType WT, int MR, int NR>
KVASIR_AVX2 void QuantTile(const GemmArgs& a, int64_t i0, int64_t j0) {
  const int64_t nb = a.k / 32;
  const BlockQ8Act* xr[MR];
  const uint8_t* wr[NR];
  for (int i = 0; i < MR; ++i) xr[i] = a.xq + (i0 + i) * nb;
  for (int j = 0; j < NR; ++j) wr[j] = a.w + (j0 + j) * a.w_row_bytes;
  __m256 acc[MR][NR];
  __m128 msum[MR];  // lane j: the Q4_1 offset term of weight row j
  for (int i = 0; i < MR; ++i) {
    msum[i] = _mm_setzero_ps();
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    __m256i wq[NR], wabs[NR];
    for (int j = 0; j < NR; ++j) {
      wq[j] = LoadQuants<WT>(wr[j], b);
      if constexpr (WT == DType::kQ8_0) wabs[j] = _mm256_abs_epi8(wq[j]);
    }
    const __m128 wd = LoadHalves<WT, NR>(wr, b, 0);
    __m128 wm = _mm_setzero_ps();
    if constexpr (WT == DType::kQ4_1) wm = LoadHalves<WT, NR>(wr, b, 1);
    for (int i = 0; i < MR; ++i) {
      const BlockQ8Act& xb = xr[i][b];
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
      __m256i x_lane8 = _mm256_setzero_si256();
      if constexpr (WT == DType::kQ4_0) {
        const __m256i sums =
            _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), xv), _mm256_set1_epi16(1));
        x_lane8 = _mm256_slli_epi32(sums, 3);
      }
      // dd[j] = wd[j] * xd, broadcast from memory (a plain load uop) per weight row.
      alignas(16) float dd[4];
      _mm_store_ps(dd, _mm_mul_ps(wd, _mm_set1_ps(xb.d)));
      if constexpr (WT == DType::kQ4_1) msum[i] = _mm_fmadd_ps(wm, _mm_set1_ps(xb.s), msum[i]);
      for (int j = 0; j < NR; ++j) {
        const __m256i isum = LaneDot<WT>(wq[j], wabs[j], xv, x_lane8);
        acc[i][j] =
            _mm256_fmadd_ps(_mm256_broadcast_ss(dd + j), _mm256_cvtepi32_ps(isum), acc[i][j]);
      }
    }
  }
  for (int i = 0; i < MR; ++i) {
    alignas(16) float m[4];
    _mm_store_ps(m, msum[i]);
    for (int j = 0; j < NR; ++j) {
      float v = ReduceLanesAvx2(acc[i][j]);
      if constexpr (WT == DType::kQ4_1) v += m[j];
      if (a.bias != nullptr) v += a.bias[j0 + j];
      a.y[(i0 + i) * a.n + j0 + j] = v;
    }
  }
}

template <DType WT>
KVASIR_AVX2 inline __m256 LoadWeights8(const uint8_t* row, int64_t kk) {
  if constexpr (WT == DType::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + kk);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * kk));
    if constexpr (WT == DType::kF16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

template <DType WT>
KVASIR_AVX2 inline float LoadWeight1(const uint8_t* row, int64_t kk) {
  if constexpr (WT == DType::kF32) return reinterpret_cast<const float*>(row)[kk];
  const uint16_t h = reinterpret_cast<const uint16_t*>(row)[kk];
  if constexpr (WT == DType::kF16) return _cvtsh_ss(h);
  return __builtin_bit_cast(float, static_cast<uint32_t>(h) << 16);
}

template <DType WT, int MR, int NR>
KVASIR_AVX2 void FloatTile(const GemmArgs& a, int64_t i0, int64_t j0) {
  const int64_t k = a.k;
  const int64_t k8 = k / 8 * 8;
  const float* xr[MR];
  const uint8_t* wr[NR];
  for (int i = 0; i < MR; ++i) xr[i] = a.x + (i0 + i) * k;
  for (int j = 0; j < NR; ++j) wr[j] = a.w + (j0 + j) * a.w_row_bytes;
  __m256 acc[MR][NR];
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  for (int64_t kk = 0; kk < k8; kk += 8) {
    __m256 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = LoadWeights8<WT>(wr[j], kk);
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_loadu_ps(xr[i] + kk);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      float v = ReduceLanesAvx2(acc[i][j]);
      for (int64_t kk = k8; kk < k; ++kk) v = std::fma(xr[i][kk], LoadWeight1<WT>(wr[j], kk), v);
      if (a.bias != nullptr) v += a.bias[j0 + j];
      a.y[(i0 + i) * a.n + j0 + j] = v;
    }
  }
}

template <DType WT, int MR, int NR>
void TileEntry(const GemmArgs& a, int64_t i0, int64_t j0) {
  if constexpr (IsQuantized(WT)) {
    QuantTile<WT, MR, NR>(a, i0, j0);
  } else {
    FloatTile<WT, MR, NR>(a, i0, j0);
  }
}

using FixedTile = void (*)(const GemmArgs&, int64_t, int64_t);

template <DType WT>
struct TileTable {
  template <int... I>
  static constexpr auto Make(std::integer_sequence<int, I...>) {
    return std::array<FixedTile, sizeof...(I)>{&TileEntry<WT, I / 4 + 1, I % 4 + 1>...};
  }
  static constexpr std::array<FixedTile, 16> kTiles = Make(std::make_integer_sequence<int, 16>());
  static void Run(const GemmArgs& a, int64_t i0, int mr, int64_t j0, int nr) {
    kTiles[(mr - 1) * 4 + (nr - 1)](a, i0, j0);
  }
};

}  // namespace

TileFn GetAvx2Tile(DType wt) {
  switch (wt) {
    case DType::kF32:
      return &TileTable<DType::kF32>::Run;
    case DType::kF16:
      return &TileTable<DType::kF16>::Run;
    case DType::kBF16:
      return &TileTable<DType::kBF16>::Run;
    case DType::kQ8_0:
      return &TileTable<DType::kQ8_0>::Run;
    case DType::kQ4_0:
      return &TileTable<DType::kQ4_0>::Run;
    case DType::kQ4_1:
      return &TileTable<DType::kQ4_1>::Run;
  }
  return nullptr;
}

KVASIR_AVX2 void QuantizeActivationRowAvx2(const float* x, int64_t n, BlockQ8Act* out) {
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int c = 0; c < 4; ++c) {
      v[c] = _mm256_loadu_ps(x + 8 * c);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_mask, v[c]));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 0x55));
    const float amax_s = _mm_cvtss_f32(m4);
    const float d = amax_s / 127.0f;
    const float id = amax_s != 0.0f ? 127.0f / amax_s : 0.0f;
    const __m256 idv = _mm256_set1_ps(id);
    __m256i q[4];
    for (int c = 0; c < 4; ++c) {
      const __m256 r =
          _mm256_round_ps(_mm256_mul_ps(v[c], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q[c] = _mm256_cvtps_epi32(r);
    }
    // Pack 4 x 8 int32 to 32 int8 in element order (packs interleave 128-bit lanes; permute back).
    const __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
    const __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
    __m256i bytes = _mm256_packs_epi16(p01, p23);
    bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[i].qs), bytes);
    const __m256i sum8 =
        _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum8), _mm256_extracti128_si256(sum8, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    out[i].d = RoundToFp16(d);
    out[i].s = RoundToFp16(d * static_cast<float>(_mm_cvtsi128_si32(s4)));
  }
}

}  // namespace kvasir::cpu::internal

#else  // not x86

namespace kvasir::cpu::internal {
TileFn GetAvx2Tile(DType) { return nullptr; }
void QuantizeActivationRowAvx2(const float* x, int64_t n, BlockQ8Act* out) {
  QuantizeActivationRowScalar(x, n, out);
}
}  // namespace kvasir::cpu::internal

#endif
