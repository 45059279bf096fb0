// Internal interface between the portable MatMul driver and its per-ISA micro-kernels. Not part
// of the public API.
//
// The reduction order every kernel follows for one output y[i][j] (what makes results bitwise
// independent of tiling, batch size, thread count and ISA):
//   float acc[8] = 0;  lane l owns the elements with (kk % 8) == l (float weights) or the 4-element
//                      group l of each 32-block (quantized weights: lane l = elements 4l..4l+3);
//   quantized:   per block b in order: isum_l = exact int dot of lane l's group,
//                acc[l] = fma(float(wd) * xd, float(isum_l), acc[l]);  Q4_1 also
//                msum = fma(float(wm), xs, msum) in block order;
//   float types: per 8-chunk c in order: acc[l] = fma(x[8c+l], w[8c+l], acc[l]);
//   y = ((acc0+acc4) + (acc2+acc6)) + ((acc1+acc5) + (acc3+acc7)), then the k % 8 tail as
//   y = fma(x, w, y) in order, then y += msum (Q4_1), then y += bias[j].
#ifndef KVASIR_KERNELS_CPU_SIMD_INTERNAL_H_
#define KVASIR_KERNELS_CPU_SIMD_INTERNAL_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/quant.h"
#include "kernels/dtype.h"

namespace kvasir::cpu::internal {

struct GemmArgs {
  const float* x = nullptr;        // [m, k] activations, used with float weights
  const BlockQ8Act* xq = nullptr;  // [m, k/32] quantized activations, used with quantized weights
  const uint8_t* w = nullptr;      // [n rows, w_row_bytes]
  int64_t w_row_bytes = 0;
  int64_t k = 0;
  int64_t n = 0;                // row stride of y
  const float* bias = nullptr;  // [n] or null
  float* y = nullptr;           // [m, n]
};

constexpr int kMaxTileRows = 4;  // activation rows per micro-tile
constexpr int kMaxTileCols = 4;  // weight rows per micro-tile

// Computes y[i][j] for i in [i0, i0 + mr), j in [j0, j0 + nr); 1 <= mr, nr <= 4.
using TileFn = void (*)(const GemmArgs& a, int64_t i0, int mr, int64_t j0, int nr);

TileFn GetScalarTile(DType wt);
TileFn GetAvx2Tile(DType wt);  // null when the AVX2 kernels are not compiled in

// The fixed 8-lane reduction tree above.
// Hot functions whose results are defined by an exact operation order (fma, fixed lanes) are
// compiled twice: an FMA clone (FMA + AVX: std::fma becomes one vfmadd; chosen by CPU feature,
// not model, so AMD and Intel both get it)
// and a portable one; the loader picks by CPU. fma is exactly rounded either way, so both
// clones give the same bits.
#define KVASIR_FMA_CLONES __attribute__((target_clones("fma", "default")))

inline float ReduceLanes(const float* acc) {
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

inline float AsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint32_t AsBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// exp(x) with the numerics of ggml's vectorised x86 (AVX2+FMA) expf, which llama.cpp uses in
// softmax and SiLU: the Arm optimized-routines algorithm (x = n*ln2 + b with n = round(x/ln2),
// a degree-5 polynomial in b, scaled by 2^n; max error ~1.5 ulp). Written per element with
// explicit fma so the scalar and SIMD builds agree bit for bit with each other and with ggml.
inline float ExpfGgml(float x) {
  const float shift = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, shift);
  const float n = z - shift;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  const uint32_t e = AsBits(z) << 23;
  const float k = AsFloat(e + AsBits(1.0f));
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                                    std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                           u, 0x1.ffffecp-1f * b);
  if (!(std::fabs(n) > 126.0f)) return std::fma(j, k, k);
  // Large |n|: scale in two steps (or flush to 0 / inf beyond |n| > 192).
  const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
  const float s1 = AsFloat(g + 0x7f000000u);
  if (std::fabs(n) > 192.0f) return s1 * s1;
  const float s2 = AsFloat(e - g);
  return std::fma(s2, j, s2) * s1;
}

void QuantizeActivationRowScalar(const float* x, int64_t n, BlockQ8Act* out);
void QuantizeActivationRowAvx2(const float* x, int64_t n, BlockQ8Act* out);

}  // namespace kvasir::cpu::internal

#endif  // KVASIR_KERNELS_CPU_SIMD_INTERNAL_H_
