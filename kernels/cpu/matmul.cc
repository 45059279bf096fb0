#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/simd_internal.h"

namespace kvasir::cpu {
namespace internal {
namespace {

// Exact int dot of lane l's 4-element group of one 32-block (weights already decoded to ints).
inline int LaneDot(const int* wq, const int8_t* xq, int lane) {
  int s = 0;
  for (int e = 4 * lane; e < 4 * lane + 4; ++e) s += wq[e] * xq[e];
  return s;
}

// Decodes block b of a weight row to integer levels (Q4_0 already shifted by -8), scale, offset.
void DecodeBlock(DType wt, const uint8_t* row, int64_t b, int* q, float* d, float* m) {
  *m = 0.0f;
  if (wt == DType::kQ8_0) {
    const BlockQ8_0& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
    *d = Fp16ToFp32(blk.d);
    for (int e = 0; e < 32; ++e) q[e] = blk.qs[e];
    return;
  }
  const uint8_t* qs;
  int offset = 0;
  if (wt == DType::kQ4_0) {
    const BlockQ4_0& blk = reinterpret_cast<const BlockQ4_0*>(row)[b];
    *d = Fp16ToFp32(blk.d);
    qs = blk.qs;
    offset = -8;
  } else {
    const BlockQ4_1& blk = reinterpret_cast<const BlockQ4_1*>(row)[b];
    *d = Fp16ToFp32(blk.d);
    *m = Fp16ToFp32(blk.m);
    qs = blk.qs;
  }
  for (int e = 0; e < 16; ++e) {
    q[e] = (qs[e] & 0x0f) + offset;
    q[e + 16] = (qs[e] >> 4) + offset;
  }
}

float QuantDotScalar(DType wt, const uint8_t* wrow, const BlockQ8Act* xrow, int64_t k) {
  float acc[8] = {};
  float msum = 0.0f;
  int q[32];
  for (int64_t b = 0; b < k / 32; ++b) {
    float d, m;
    DecodeBlock(wt, wrow, b, q, &d, &m);
    const float dd = d * xrow[b].d;
    for (int l = 0; l < 8; ++l) {
      acc[l] = std::fma(dd, static_cast<float>(LaneDot(q, xrow[b].qs, l)), acc[l]);
    }
    if (wt == DType::kQ4_1) msum = std::fma(m, xrow[b].s, msum);
  }
  float v = ReduceLanes(acc);
  if (wt == DType::kQ4_1) v += msum;
  return v;
}

float LoadWeight(DType wt, const uint8_t* row, int64_t kk) {
  if (wt == DType::kF32) return reinterpret_cast<const float*>(row)[kk];
  const uint16_t h = reinterpret_cast<const uint16_t*>(row)[kk];
  return wt == DType::kF16 ? Fp16ToFp32(h) : Bf16ToFp32(h);
}

float FloatDotScalar(DType wt, const uint8_t* wrow, const float* x, int64_t k) {
  float acc[8] = {};
  const int64_t k8 = k / 8 * 8;
  for (int64_t kk = 0; kk < k8; kk += 8) {
    for (int l = 0; l < 8; ++l) acc[l] = std::fma(x[kk + l], LoadWeight(wt, wrow, kk + l), acc[l]);
  }
  float v = ReduceLanes(acc);
  for (int64_t kk = k8; kk < k; ++kk) v = std::fma(x[kk], LoadWeight(wt, wrow, kk), v);
  return v;
}

template <DType WT>
void ScalarTile(const GemmArgs& a, int64_t i0, int mr, int64_t j0, int nr) {
  for (int i = 0; i < mr; ++i) {
    for (int j = 0; j < nr; ++j) {
      const uint8_t* wrow = a.w + (j0 + j) * a.w_row_bytes;
      float v = IsQuantized(WT) ? QuantDotScalar(WT, wrow, a.xq + (i0 + i) * (a.k / 32), a.k)
                                : FloatDotScalar(WT, wrow, a.x + (i0 + i) * a.k, a.k);
      if (a.bias != nullptr) v += a.bias[j0 + j];
      a.y[(i0 + i) * a.n + j0 + j] = v;
    }
  }
}

}  // namespace

TileFn GetScalarTile(DType wt) {
  switch (wt) {
    case DType::kF32:
      return &ScalarTile<DType::kF32>;
    case DType::kF16:
      return &ScalarTile<DType::kF16>;
    case DType::kBF16:
      return &ScalarTile<DType::kBF16>;
    case DType::kQ8_0:
      return &ScalarTile<DType::kQ8_0>;
    case DType::kQ4_0:
      return &ScalarTile<DType::kQ4_0>;
    case DType::kQ4_1:
      return &ScalarTile<DType::kQ4_1>;
  }
  return nullptr;
}

}  // namespace internal

namespace {

using internal::GemmArgs;
using internal::TileFn;

// Columns are handed to threads in units of 12 so that both the 4-wide and 3-wide tiles fit.
constexpr int64_t kColumnUnit = 12;
// Weight rows per cache block: the block is reused across all activation rows, so keep it in L1/L2.
constexpr int64_t kWeightBlockBytes = 24 * 1024;

// Runs all m rows against weight rows [j_begin, j_end): for each cache block of weight rows, sweep
// the activation rows in tiles of up to 4, each against tiles of 4 (few rows) or 3 weight rows.
void RunColumns(const GemmArgs& a, int64_t m, int64_t j_begin, int64_t j_end, TileFn tile) {
  const int64_t block_rows =
      std::max<int64_t>(kColumnUnit, kWeightBlockBytes / a.w_row_bytes / kColumnUnit * kColumnUnit);
  for (int64_t jb = j_begin; jb < j_end; jb += block_rows) {
    const int64_t je = std::min(jb + block_rows, j_end);
    for (int64_t i0 = 0; i0 < m; i0 += internal::kMaxTileRows) {
      const int mr = static_cast<int>(std::min<int64_t>(internal::kMaxTileRows, m - i0));
      const int nr_main = mr <= 2 ? 4 : 3;  // keeps mr * nr accumulators within 12 registers
      for (int64_t j0 = jb; j0 < je; j0 += nr_main) {
        tile(a, i0, mr, j0, static_cast<int>(std::min<int64_t>(nr_main, je - j0)));
      }
    }
  }
}

// Reused across calls so decode does not allocate; MatMul runs on one thread at a time per pool.
thread_local std::vector<BlockQ8Act> t_quantized_x;

const BlockQ8Act* QuantizeActivations(const float* x, int64_t m, int64_t k, ThreadPool* pool) {
  const int64_t nb = k / 32;
  if (static_cast<int64_t>(t_quantized_x.size()) < m * nb) t_quantized_x.resize(m * nb);
  BlockQ8Act* xq = t_quantized_x.data();
  auto rows = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) QuantizeActivationRow(x + i * k, k, xq + i * nb);
  };
  if (pool != nullptr && m >= 16) {
    pool->ParallelFor(m, rows);
  } else {
    rows(0, m);
  }
  return xq;
}

}  // namespace

void MatMul(const float* x, int64_t m, int64_t k, const void* w, DType wt, int64_t n,
            const float* bias, float* y, ThreadPool* pool) {
  if (m <= 0 || n <= 0) return;
  GemmArgs a;
  a.w = static_cast<const uint8_t*>(w);
  a.w_row_bytes = RowBytes(wt, k);
  a.k = k;
  a.n = n;
  a.bias = bias;
  a.y = y;
  if (IsQuantized(wt)) {
    a.xq = QuantizeActivations(x, m, k, pool);
  } else {
    a.x = x;
  }
  TileFn avx2 = UseAvx2() ? internal::GetAvx2Tile(wt) : nullptr;
  const TileFn tile = avx2 != nullptr ? avx2 : internal::GetScalarTile(wt);
  const int64_t units = (n + kColumnUnit - 1) / kColumnUnit;
  auto columns = [&](int64_t begin, int64_t end) {
    RunColumns(a, m, begin * kColumnUnit, std::min(end * kColumnUnit, n), tile);
  };
  if (pool != nullptr) {
    pool->ParallelFor(units, columns);
  } else {
    columns(0, units);
  }
}

}  // namespace kvasir::cpu
