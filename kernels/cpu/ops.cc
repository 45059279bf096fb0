#include "kernels/cpu/ops.h"

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/quant.h"
#include "kernels/cpu/simd_internal.h"

namespace kvasir::cpu {
namespace {

// Sum of squares as ggml's CPU rms_norm computes it: each product rounded to float, then summed
// in order in double (ggml_float). Matching it bit for bit lets GGUF models reproduce llama.cpp.
double SumSquares(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i] * x[i]);
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

inline float Silu(float g) { return g / (1.0f + internal::ExpfGgml(-g)); }

}  // namespace

void RmsNorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out,
             ThreadPool* pool) {
  RunRows(rows, dim, pool, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * dim;
      float* o = out + r * dim;
      // ggml: mean = float(sum / n) (double division), scale = 1 / sqrtf(mean + eps), then x *
      // scale and, as a separate op, * w.
      const float mean = static_cast<float>(SumSquares(xr, dim) / static_cast<double>(dim));
      const float inv = 1.0f / std::sqrt(mean + eps);
      for (int64_t i = 0; i < dim; ++i) o[i] = (xr[i] * inv) * w[i];
    }
  });
}

void AddInPlace(float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) a[i] += b[i];
}

KVASIR_FMA_CLONES void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
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

void RopeCosSin(const int32_t* positions, int64_t num_tokens, const float* inv_freq, int rot_dim,
                RopeAngles angles, float* cos_sin) {
  const int half = rot_dim / 2;
  for (int64_t t = 0; t < num_tokens; ++t) {
    float* c = cos_sin + t * rot_dim;
    float theta = static_cast<float>(positions[t]);
    for (int i = 0; i < half; ++i) {
      const float angle = angles == RopeAngles::kGgmlRecurrence
                              ? theta
                              : static_cast<float>(positions[t]) * inv_freq[i];
      c[i] = std::cos(angle);
      c[half + i] = std::sin(angle);
      if (half > 1) theta *= inv_freq[1];
    }
  }
}

KVASIR_FMA_CLONES void RopeApply(float* x, int64_t num_tokens, int num_heads, int head_dim,
                                 int rot_dim, const float* cos_sin, RopeStyle style) {
  const int half = rot_dim / 2;
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* cos_v = cos_sin + t * rot_dim;
    const float* sin_v = cos_v + half;
    for (int h = 0; h < num_heads; ++h) {
      float* v = x + (t * num_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const int i0 = style == RopeStyle::kNeox ? i : 2 * i;
        const int i1 = style == RopeStyle::kNeox ? i + half : 2 * i + 1;
        const float a = v[i0], b = v[i1];
        // The x86 build of ggml contracts x0*cos - x1*sin and x0*sin + x1*cos into one FMA
        // each (the x0 product fused); we do the same explicitly.
        v[i0] = std::fma(a, cos_v[i], -(b * sin_v[i]));
        v[i1] = std::fma(a, sin_v[i], b * cos_v[i]);
      }
    }
  }
}

void Rope(float* x, int64_t num_tokens, int num_heads, int head_dim, int rot_dim,
          const int32_t* positions, const float* inv_freq, RopeStyle style, RopeAngles angles) {
  std::vector<float> cos_sin(num_tokens * rot_dim);
  RopeCosSin(positions, num_tokens, inv_freq, rot_dim, angles, cos_sin.data());
  RopeApply(x, num_tokens, num_heads, head_dim, rot_dim, cos_sin.data(), style);
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

void Embedding(const void* table, DType t, int64_t dim, const int32_t* ids, int64_t n, float* out) {
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
