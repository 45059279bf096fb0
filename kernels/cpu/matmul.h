// Matrix multiplication against a linear layer's weights: the hot path of CPU decode (m = 1) and
// prefill (m up to a few thousand).
#ifndef KVASIR_KERNELS_CPU_MATMUL_H_
#define KVASIR_KERNELS_CPU_MATMUL_H_

#include <cstdint>

#include "kernels/cpu/thread_pool.h"
#include "kernels/dtype.h"

namespace kvasir::cpu {

// y[i*n + j] = sum_kk x[i*k + kk] * W[j][kk] (+ bias[j] when bias is not null), for i < m, j < n.
//
// W is row-major [n rows, k columns] of type wt, row j at byte offset j * RowBytes(wt, k) (the
// GGUF / HF layout of linear layers). k must be a multiple of 32 for quantized wt. x and y must not
// overlap. pool may be null (runs on the calling thread).
//
// Quantized weights: each row of x is first quantized to int8 blocks (BlockQ8Act, see quant.h) and
// dot products run in integers per block, as llama.cpp does; the result therefore carries the
// activation quantization error (~0.5% of a row's block amax per element).
//
// Determinism: y[i][j] depends only on row i of x, row j of W and bias[j] — bitwise the same for
// any m, any other rows, any thread count, and for the scalar and AVX2 kernels (they share one
// fixed reduction order, documented in simd_internal.h).
void MatMul(const float* x, int64_t m, int64_t k, const void* w, DType wt, int64_t n,
            const float* bias, float* y, ThreadPool* pool);

}  // namespace kvasir::cpu

#endif  // KVASIR_KERNELS_CPU_MATMUL_H_
