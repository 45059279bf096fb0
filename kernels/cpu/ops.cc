#include "kernels/cpu/ops.h"

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/quant.h"

namespace kvasir::cpu {
namespace {

// Sum of squares with 8 interleaved partial sums and a fixed reduction tree; the explicit lanes
// keep the order the same whether or not the compiler vectorises the loop.
float SumSquares(const float* x, int64_t n) {
  float acc[8] = {};
  const int64_t n8 = n / 8 * 8;
  for (int64_t i = 0; i < n8; i += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += x[i + l] * x[i + l];
  }
  float s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
  for (int64_t i = n8; i < n; ++i) s += x[i] * x[i];
  return s;
}

void RunRows(int64_t rows, int64_t work_per_row, ThreadPool* pool,
             const std::function<void(int64_t, int64_t)>& fn) {
  // Below ~64K elements the pool's hand-off costs more than it saves.
  if (pool == nullptr || pool->num_threads() == 1 || rows * work_per_row < (1 << 16)) {
    fn(0, rows);
  } else {
    pool->ParallelFor(rows, fn);
  }
}

inline float Silu(float g) { return g / (1.0f + std::exp(-g)); }

}  // namespace

void RmsNorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out,
             ThreadPool* pool) {
  RunRows(rows, dim, pool, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * dim;
      float* o = out + r * dim;
      const float inv = 1.0f / std::sqrt(SumSquares(xr, dim) / static_cast<float>(dim) + eps);
      for (int64_t i = 0; i < dim; ++i) o[i] = (xr[i] * inv) * w[i];
    }
  });
}

void AddInPlace(float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) a[i] += b[i];
}

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = Silu(gate[i]) * up[i];
}

void SiluMulFused(const float* gate_up, int64_t rows, int64_t inter, float* out, ThreadPool* pool) {
  if (out == gate_up) pool = nullptr;  // in-place needs rows in order: row r writes over row r/2
  RunRows(rows, inter * 8, pool, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* g = gate_up + r * 2 * inter;
      SiluMul(g, g + inter, inter, out + r * inter);
    }
  });
}

void Rope(float* x, int64_t num_tokens, int num_heads, int head_dim, int rot_dim,
          const int32_t* positions, const float* inv_freq, RopeStyle style) {
  const int half = rot_dim / 2;
  std::vector<float> cos_v(half), sin_v(half);
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(positions[t]) * inv_freq[i];
      cos_v[i] = std::cos(angle);
      sin_v[i] = std::sin(angle);
    }
    for (int h = 0; h < num_heads; ++h) {
      float* v = x + (t * num_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const int i0 = style == RopeStyle::kNeox ? i : 2 * i;
        const int i1 = style == RopeStyle::kNeox ? i + half : 2 * i + 1;
        const float a = v[i0], b = v[i1];
        v[i0] = a * cos_v[i] - b * sin_v[i];
        v[i1] = b * cos_v[i] + a * sin_v[i];
      }
    }
  }
}

void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float max = x[0];
  for (int64_t i = 1; i < n; ++i) max = std::fmax(max, x[i]);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void Embedding(const void* table, DType t, int64_t dim, const int32_t* ids, int64_t n,
               float* out) {
  const uint8_t* base = static_cast<const uint8_t*>(table);
  const int64_t row_bytes = RowBytes(t, dim);
  for (int64_t i = 0; i < n; ++i) DequantizeRow(base + ids[i] * row_bytes, t, dim, out + i * dim);
}

int64_t Argmax(const float* x, int64_t n) {
  int64_t best = 0;
  float best_v = -std::numeric_limits<float>::infinity();
  bool found = false;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isnan(x[i]) && (!found || x[i] > best_v)) {
      best = i;
      best_v = x[i];
      found = true;
    }
  }
  return best;
}

}  // namespace kvasir::cpu
