#include "kernels/cpu/matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "tests/kernels/test_util.h"

namespace kvasir::cpu {
namespace {

using testing::MakeWeights;
using testing::RandomFloats;
using testing::TestWeights;

// x as the quantized kernels see it: each row quantized to BlockQ8Act and decoded in double.
std::vector<double> EffectiveActivations(const std::vector<float>& x, int64_t m, int64_t k,
                                         DType wt) {
  std::vector<double> out(x.begin(), x.end());
  if (!IsQuantized(wt)) return out;
  std::vector<BlockQ8Act> q(k / 32);
  for (int64_t i = 0; i < m; ++i) {
    QuantizeActivationRow(x.data() + i * k, k, q.data());
    for (int64_t kk = 0; kk < k; ++kk) {
      out[i * k + kk] = static_cast<double>(q[kk / 32].d) * q[kk / 32].qs[kk % 32];
    }
  }
  return out;
}

struct Shape {
  int64_t m, k, n;
};

class MatMulDTypeTest : public ::testing::TestWithParam<DType> {};

TEST_P(MatMulDTypeTest, MatchesDoubleReferenceOnDecodedWeights) {
  const DType wt = GetParam();
  for (const Shape& s : {Shape{1, 64, 5}, Shape{7, 96, 37}, Shape{13, 576, 29}}) {
    const TestWeights w = MakeWeights(wt, s.n, s.k, 11);
    const std::vector<float> x = RandomFloats(s.m * s.k, 12, -2.0f, 2.0f);
    const std::vector<float> bias = RandomFloats(s.n, 13);
    std::vector<float> y(s.m * s.n);
    ThreadPool pool(2);
    MatMul(x.data(), s.m, s.k, w.bytes.data(), wt, s.n, bias.data(), y.data(), &pool);
    const std::vector<double> xe = EffectiveActivations(x, s.m, s.k, wt);
    for (int64_t i = 0; i < s.m; ++i) {
      for (int64_t j = 0; j < s.n; ++j) {
        double ref = bias[j], mag = std::fabs(bias[j]);
        for (int64_t kk = 0; kk < s.k; ++kk) {
          const double t = xe[i * s.k + kk] * w.decoded[j * s.k + kk];
          ref += t;
          mag += std::fabs(t);
        }
        // Float accumulation of k terms: a few ulps of the magnitude sum. Q4_1 also uses the
        // block sum s = d * sum(q) rounded to fp16 (ggml's Q8_1), times the weight block's
        // min m (|m| <= the block's largest decoded |w|): up to 2^-11 * |s| * |m| per block.
        double s_err = 0.0;
        if (wt == DType::kQ4_1) {
          std::vector<BlockQ8Act> qb(s.k / 32);
          QuantizeActivationRow(x.data() + i * s.k, s.k, qb.data());
          for (int64_t b = 0; b < s.k / 32; ++b) {
            double wmax = 0.0;
            for (int64_t kk = b * 32; kk < b * 32 + 32; ++kk) {
              wmax = std::max(wmax, std::fabs(static_cast<double>(w.decoded[j * s.k + kk])));
            }
            s_err += std::ldexp(std::fabs(static_cast<double>(qb[b].s)), -11) * wmax;
          }
        }
        ASSERT_NEAR(y[i * s.n + j], ref, 2e-6 * mag + 1e-6 + s_err)
            << DTypeName(wt) << " m=" << s.m << " k=" << s.k << " i=" << i << " j=" << j;
      }
    }
  }
}

TEST_P(MatMulDTypeTest, QuantizedErrorBoundedByActivationQuantization) {
  const DType wt = GetParam();
  const int64_t m = 3, k = 256, n = 17;
  const TestWeights w = MakeWeights(wt, n, k, 21);
  const std::vector<float> x = RandomFloats(m * k, 22, -2.0f, 2.0f);
  std::vector<float> y(m * n);
  MatMul(x.data(), m, k, w.bytes.data(), wt, n, nullptr, y.data(), nullptr);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double ref = 0, bound = 1e-5;
      for (int64_t kk = 0; kk < k; ++kk) {
        ref += static_cast<double>(x[i * k + kk]) * w.decoded[j * k + kk];
        if (IsQuantized(wt)) {
          double amax = 0;  // |x - xq| <= d/2 = amax/254 per element of the block
          const float* blk = &x[i * k + kk / 32 * 32];
          for (int e = 0; e < 32; ++e) amax = std::fmax(amax, std::fabs(blk[e]));
          bound += std::fabs(w.decoded[j * k + kk]) * amax / 254.0 * 1.001;
        }
      }
      ASSERT_NEAR(y[i * n + j], ref, bound + 1e-5 * std::fabs(ref)) << i << " " << j;
    }
  }
}

TEST_P(MatMulDTypeTest, ResultIsBitwiseIndependentOfBatchAndThreads) {
  const DType wt = GetParam();
  const int64_t k = 160, n = 41;
  const TestWeights w = MakeWeights(wt, n, k, 31);
  const std::vector<float> bias = RandomFloats(n, 32);
  const std::vector<float> x = RandomFloats(64 * k, 33, -3.0f, 3.0f);
  ThreadPool pool1(1), pool2(2), pool3(3);
  // Reference: row 5 alone, single thread.
  std::vector<float> alone(n);
  MatMul(x.data() + 5 * k, 1, k, w.bytes.data(), wt, n, bias.data(), alone.data(), &pool1);
  for (int64_t m : {7, 64}) {
    for (ThreadPool* pool : {&pool1, &pool2, &pool3}) {
      std::vector<float> y(m * n);
      MatMul(x.data(), m, k, w.bytes.data(), wt, n, bias.data(), y.data(), pool);
      ASSERT_EQ(std::memcmp(y.data() + 5 * n, alone.data(), n * sizeof(float)), 0)
          << DTypeName(wt) << " m=" << m << " threads=" << pool->num_threads();
    }
  }
}

TEST_P(MatMulDTypeTest, ScalarAndAvx2KernelsAreBitwiseEqual) {
  if (!testing::HaveAvx2()) GTEST_SKIP() << "no AVX2";
  const DType wt = GetParam();
  // k = 200 exercises the k % 8 tail of float kernels (quantized need a multiple of 32).
  const int64_t m = 6, k = IsQuantized(wt) ? 192 : 203, n = 23;
  const TestWeights w = MakeWeights(wt, n, k, 41);
  const std::vector<float> x = RandomFloats(m * k, 42, -4.0f, 4.0f);
  const std::vector<float> bias = RandomFloats(n, 43);
  std::vector<float> simd(m * n), scalar(m * n);
  MatMul(x.data(), m, k, w.bytes.data(), wt, n, bias.data(), simd.data(), nullptr);
  {
    testing::ScopedForceScalar force;
    MatMul(x.data(), m, k, w.bytes.data(), wt, n, bias.data(), scalar.data(), nullptr);
  }
  ASSERT_EQ(std::memcmp(simd.data(), scalar.data(), simd.size() * sizeof(float)), 0)
      << DTypeName(wt);
}

INSTANTIATE_TEST_SUITE_P(AllDTypes, MatMulDTypeTest,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0,
                                           DType::kQ4_0, DType::kQ4_1),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

TEST(MatMulTest, NullBiasAddsNothing) {
  const int64_t k = 64, n = 3;
  const TestWeights w = MakeWeights(DType::kF32, n, k, 51);
  const std::vector<float> x = RandomFloats(k, 52);
  const std::vector<float> zeros(n, 0.0f);
  std::vector<float> a(n), b(n);
  MatMul(x.data(), 1, k, w.bytes.data(), DType::kF32, n, nullptr, a.data(), nullptr);
  MatMul(x.data(), 1, k, w.bytes.data(), DType::kF32, n, zeros.data(), b.data(), nullptr);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace kvasir::cpu
