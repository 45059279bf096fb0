#include "kernels/cpu/fp16.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "tests/kernels/test_util.h"

namespace kvasir::cpu {
namespace {

TEST(Fp16Test, ExactValuesRoundTrip) {
  for (float f : {0.0f, 1.0f, -2.0f, 0.5f, 65504.0f, 0x1p-14f, 0x1p-24f, 1.0f + 0x1p-10f}) {
    EXPECT_EQ(Fp16ToFp32(Fp32ToFp16(f)), f) << f;
  }
  EXPECT_EQ(Fp32ToFp16(-0.0f), 0x8000);
}

TEST(Fp16Test, RoundsToNearestEven) {
  EXPECT_EQ(Fp32ToFp16(1.0f + 0x1p-11f), 0x3c00);             // tie -> even (down)
  EXPECT_EQ(Fp32ToFp16(1.0f + 3 * 0x1p-11f), 0x3c02);         // tie -> even (up)
  EXPECT_EQ(Fp32ToFp16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);  // above tie
  EXPECT_EQ(Fp32ToFp16(0x1p-25f), 0x0000);                    // subnormal tie -> 0
  EXPECT_EQ(Fp32ToFp16(3 * 0x1p-25f), 0x0002);                // subnormal tie -> even
  EXPECT_EQ(Fp32ToFp16(0x1p-25f + 0x1p-35f), 0x0001);
  EXPECT_EQ(Fp32ToFp16(65519.0f), 0x7bff);
}

TEST(Fp16Test, OverflowInfinityAndNan) {
  EXPECT_EQ(Fp32ToFp16(65520.0f), 0x7c00);
  EXPECT_EQ(Fp32ToFp16(1e10f), 0x7c00);
  EXPECT_EQ(Fp32ToFp16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_TRUE(std::isnan(Fp16ToFp32(Fp32ToFp16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isinf(Fp16ToFp32(0x7c00)));
  EXPECT_TRUE(std::isnan(Fp16ToFp32(0x7c01)));
  EXPECT_EQ(Fp16ToFp32(0x0001), 0x1p-24f);
  EXPECT_EQ(Fp16ToFp32(0x03ff), 1023 * 0x1p-24f);
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) uint16_t HardwareToHalf(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) float HardwareToFloat(uint16_t h) { return _cvtsh_ss(h); }

TEST(Fp16Test, MatchesF16cOnAllHalvesAndRandomFloats) {
  if (!testing::HaveAvx2()) GTEST_SKIP() << "no F16C";
  for (uint32_t h = 0; h < 65536; ++h) {
    const float a = Fp16ToFp32(static_cast<uint16_t>(h));
    const float b = HardwareToFloat(static_cast<uint16_t>(h));
    ASSERT_EQ(std::bit_cast<uint32_t>(a), std::bit_cast<uint32_t>(b)) << h;
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    // Random bit patterns weighted towards the half range.
    uint32_t bits = rng();
    if (i % 2) bits = (bits & 0x807fffffu) | ((100u + bits % 50u) << 23);
    const float f = std::bit_cast<float>(bits);
    ASSERT_EQ(Fp32ToFp16(f), HardwareToHalf(f)) << std::hex << bits;
  }
}
#endif

TEST(Bf16Test, RoundsToNearestEvenAndKeepsSpecials) {
  EXPECT_EQ(Fp32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Fp32ToBf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie -> even
  EXPECT_EQ(Fp32ToBf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(Fp32ToBf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_EQ(Fp32ToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(Fp32ToBf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to inf
  EXPECT_TRUE(std::isnan(Bf16ToFp32(Fp32ToBf16(std::bit_cast<float>(0x7f800001u)))));
  EXPECT_EQ(Bf16ToFp32(0xc040), -3.0f);
}

}  // namespace
}  // namespace kvasir::cpu
