#include "kernels/cpu/quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/fp16.h"
#include "tests/kernels/test_util.h"

namespace kvasir::cpu {
namespace {

using testing::RandomFloats;

TEST(QuantTest, Q8_0RoundTripWithinHalfStep) {
  const std::vector<float> x = RandomFloats(256, 1, -3.0f, 3.0f);
  std::vector<BlockQ8_0> q(8);
  QuantizeRowQ8_0(x.data(), 256, q.data());
  std::vector<float> y(256);
  DequantizeRow(q.data(), DType::kQ8_0, 256, y.data());
  for (int i = 0; i < 256; ++i) {
    const float d = Fp16ToFp32(q[i / 32].d);
    // Half a step, plus the fp16 rounding of d times the level (<= 127 * 2^-11 * d).
    EXPECT_LE(std::fabs(x[i] - y[i]), 0.5f * d + 127.0f * d * 0x1p-11f + 1e-7f) << i;
  }
}

TEST(QuantTest, Q4_0RoundTripWithinOneStep) {
  const std::vector<float> x = RandomFloats(256, 2);
  std::vector<BlockQ4_0> q(8);
  QuantizeRowQ4_0(x.data(), 256, q.data());
  std::vector<float> y(256);
  DequantizeRow(q.data(), DType::kQ4_0, 256, y.data());
  for (int i = 0; i < 256; ++i) {
    const float d = std::fabs(Fp16ToFp32(q[i / 32].d));
    // The largest |x| maps to -8 exactly; the opposite end may clamp at +7 (one step).
    EXPECT_LE(std::fabs(x[i] - y[i]), 1.0f * d + 8.0f * d * 0x1p-11f + 1e-7f) << i;
  }
}

TEST(QuantTest, Q4_1RoundTripWithinHalfStep) {
  const std::vector<float> x = RandomFloats(256, 3, -0.5f, 2.0f);
  std::vector<BlockQ4_1> q(8);
  QuantizeRowQ4_1(x.data(), 256, q.data());
  std::vector<float> y(256);
  DequantizeRow(q.data(), DType::kQ4_1, 256, y.data());
  for (int i = 0; i < 256; ++i) {
    const float d = Fp16ToFp32(q[i / 32].d);
    const float m = std::fabs(Fp16ToFp32(q[i / 32].m));
    EXPECT_LE(std::fabs(x[i] - y[i]), 0.5f * d + (15.0f * d + m) * 0x1p-11f + 1e-6f) << i;
  }
}

TEST(QuantTest, Q4NibbleLayoutPutsElementJPlus16InHighNibble) {
  std::vector<float> x(32, 0.0f);
  x[0] = 1.0f;   // largest magnitude -> q = 0 under d = -1/8
  x[16] = 0.0f;  // q = 8
  BlockQ4_0 b;
  QuantizeRowQ4_0(x.data(), 32, &b);
  EXPECT_EQ(b.qs[0] & 0x0f, 0);
  EXPECT_EQ(b.qs[0] >> 4, 8);
}

TEST(QuantTest, ActivationQuantizationRoundsHalfToEven) {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;  // amax 127 -> d = 1
  x[1] = 2.5f;
  x[2] = 3.5f;
  x[3] = -2.5f;
  std::vector<BlockQ8Act> q(1);
  {
    testing::ScopedForceScalar scalar;
    QuantizeActivationRow(x.data(), 32, q.data());
  }
  EXPECT_EQ(q[0].d, 1.0f);
  EXPECT_EQ(q[0].qs[1], 2);
  EXPECT_EQ(q[0].qs[2], 4);
  EXPECT_EQ(q[0].qs[3], -2);
  EXPECT_EQ(q[0].s, 127.0f + 2 + 4 - 2);
}

TEST(QuantTest, ActivationQuantizationScalarAndAvx2AreBitwiseEqual) {
  if (!testing::HaveAvx2()) GTEST_SKIP() << "no AVX2";
  std::vector<float> x = RandomFloats(32 * 64, 4, -5.0f, 5.0f);
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i - 16) * 0.5f;  // many exact ties
  for (int i = 32; i < 64; ++i) x[i] = 0.0f;                              // all-zero block
  std::vector<BlockQ8Act> a(64), b(64);
  QuantizeActivationRow(x.data(), x.size(), a.data());
  {
    testing::ScopedForceScalar scalar;
    QuantizeActivationRow(x.data(), x.size(), b.data());
  }
  ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(BlockQ8Act)), 0);
}

TEST(QuantTest, ActivationQuantizationErrorWithinHalfStep) {
  const std::vector<float> x = RandomFloats(128, 5, -2.0f, 2.0f);
  std::vector<BlockQ8Act> q(4);
  QuantizeActivationRow(x.data(), 128, q.data());
  for (int i = 0; i < 128; ++i) {
    const BlockQ8Act& b = q[i / 32];
    // Half a step, plus the fp16 rounding of d (ggml's Q8_0/Q8_1 store d in fp16 but quantize
    // with the unrounded 127/amax): |q| <= 127 steps of up to 2^-11 relative error each.
    EXPECT_LE(std::fabs(x[i] - b.d * b.qs[i % 32]), (0.5001f + 127.0f / 2048.0f) * b.d) << i;
  }
}

}  // namespace
}  // namespace kvasir::cpu
