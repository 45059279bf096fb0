// Block quantization in GGML's layouts (see kernels/dtype.h) and the int8 activation format used
// by the quantized MatMul.
#ifndef KVASIR_KERNELS_CPU_QUANT_H_
#define KVASIR_KERNELS_CPU_QUANT_H_

#include <cstdint>

#include "kernels/cpu/fp16.h"
#include "kernels/dtype.h"

namespace kvasir::cpu {

// Writes n floats decoded from src, a row of n elements of type t (n a multiple of
// BlockElems(t)). Q4_0: d*(q-8); Q4_1: d*q+m; Q8_0: d*q; all computed in float.
void DequantizeRow(const void* src, DType t, int64_t n, float* dst);

// GGML reference quantizers (llama.cpp's quantize_row_*_ref rounding); n a multiple of 32.
// Q8_0: d = amax/127, q = roundf(x/d). Q4_0: d = max/-8 where max has the largest |x|.
// Q4_1: d = (max-min)/15, m = min.
void QuantizeRowQ8_0(const float* x, int64_t n, BlockQ8_0* out);
void QuantizeRowQ4_0(const float* x, int64_t n, BlockQ4_0* out);
void QuantizeRowQ4_1(const float* x, int64_t n, BlockQ4_1* out);

// Quantizes a row of n floats (n a multiple of 32) to any type t; out holds RowBytes(t, n).
void QuantizeRow(const float* x, DType t, int64_t n, void* out);

// An activation block as MatMul quantizes it, with the numerics of ggml's x86 Q8_0/Q8_1
// activation blocks, so that quantized models give llama.cpp's results: qs = round-to-nearest-
// even(x * 127 / amax), d = amax / 127 and s = d * sum(qs) (the term Q4_1's offset m multiplies),
// both rounded to fp16 precision as ggml stores them (held here as floats).
inline float RoundToFp16(float x) { return Fp16ToFp32(Fp32ToFp16(x)); }

struct BlockQ8Act {
  float d;
  float s;
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8Act) == 40);

// Quantizes n activations (n a multiple of 32) into n/32 blocks. The scalar and AVX2 versions
// give identical bits; this picks one by UseAvx2().
void QuantizeActivationRow(const float* x, int64_t n, BlockQ8Act* out);

}  // namespace kvasir::cpu

#endif  // KVASIR_KERNELS_CPU_QUANT_H_
