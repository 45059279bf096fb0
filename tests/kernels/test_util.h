// Helpers shared by the kernel tests: seeded random data and weight construction.
#ifndef KVASIR_TESTS_KERNELS_TEST_UTIL_H_
#define KVASIR_TESTS_KERNELS_TEST_UTIL_H_

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/quant.h"
#include "kernels/dtype.h"

namespace kvasir::cpu::testing {

inline std::vector<float> RandomFloats(int64_t n, uint32_t seed, float lo = -1.0f,
                                       float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Weights [rows, cols] of type t built from random floats; also returns their decoded values.
struct TestWeights {
  std::vector<uint8_t> bytes;
  std::vector<float> decoded;  // [rows, cols]
};

inline TestWeights MakeWeights(DType t, int64_t rows, int64_t cols, uint32_t seed) {
  const std::vector<float> src = RandomFloats(rows * cols, seed);
  TestWeights w;
  const int64_t row_bytes = RowBytes(t, cols);
  w.bytes.resize(rows * row_bytes);
  w.decoded.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    QuantizeRow(src.data() + r * cols, t, cols, w.bytes.data() + r * row_bytes);
    DequantizeRow(w.bytes.data() + r * row_bytes, t, cols, w.decoded.data() + r * cols);
  }
  return w;
}

// Forces the scalar kernels for its lifetime.
class ScopedForceScalar {
 public:
  ScopedForceScalar() { ForceScalarForTesting(true); }
  ~ScopedForceScalar() { ForceScalarForTesting(false); }
};

inline bool HaveAvx2() {
  const CpuFeatures& f = GetCpuFeatures();
  return f.avx2 && f.fma && f.f16c;
}

}  // namespace kvasir::cpu::testing

#endif  // KVASIR_TESTS_KERNELS_TEST_UTIL_H_
