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

#include <cstdint>

#include "kernels/cpu/quant.h"
#include "kernels/dtype.h"

namespace kvasir::cpu::internal {

struct GemmArgs {
  const float* x = nullptr;        // [m, k] activations, used with float weights
  const BlockQ8Act* xq = nullptr;  // [m, k/32] quantized activations, used with quantized weights
  const uint8_t* w = nullptr;      // [n rows, w_row_bytes]
  int64_t w_row_bytes = 0;
  int64_t k = 0;
  int64_t n = 0;                   // row stride of y
  const float* bias = nullptr;     // [n] or null
  float* y = nullptr;              // [m, n]
};

constexpr int kMaxTileRows = 4;  // activation rows per micro-tile
constexpr int kMaxTileCols = 4;  // weight rows per micro-tile

// Computes y[i][j] for i in [i0, i0 + mr), j in [j0, j0 + nr); 1 <= mr, nr <= 4.
using TileFn = void (*)(const GemmArgs& a, int64_t i0, int mr, int64_t j0, int nr);

TileFn GetScalarTile(DType wt);
TileFn GetAvx2Tile(DType wt);  // null when the AVX2 kernels are not compiled in

// The fixed 8-lane reduction tree above.
inline float ReduceLanes(const float* acc) {
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

void QuantizeActivationRowScalar(const float* x, int64_t n, BlockQ8Act* out);
void QuantizeActivationRowAvx2(const float* x, int64_t n, BlockQ8Act* out);

}  // namespace kvasir::cpu::internal

#endif  // KVASIR_KERNELS_CPU_SIMD_INTERNAL_H_
