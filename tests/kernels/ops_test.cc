#include "kernels/cpu/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/kernels/test_util.h"

namespace kvasir::cpu {
namespace {

using testing::RandomFloats;

TEST(RmsNormTest, MatchesDoubleReferenceAndWorksInPlace) {
  const int64_t rows = 5, dim = 100;
  std::vector<float> x = RandomFloats(rows * dim, 1, -3.0f, 3.0f);
  const std::vector<float> w = RandomFloats(dim, 2);
  std::vector<float> out(rows * dim);
  RmsNorm(x.data(), w.data(), rows, dim, 1e-5f, out.data(), nullptr);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[r * dim + i]) * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(ss / dim + 1e-5);
    for (int64_t i = 0; i < dim; ++i) {
      const double ref = x[r * dim + i] * inv * w[i];
      ASSERT_NEAR(out[r * dim + i], ref, 1e-5 * std::fabs(ref) + 1e-7) << r << " " << i;
    }
  }
  RmsNorm(x.data(), w.data(), rows, dim, 1e-5f, x.data(), nullptr);
  EXPECT_EQ(x, out);
}

TEST(RmsNormTest, RowResultIndependentOfBatchAndThreads) {
  const int64_t dim = 576;
  const std::vector<float> x = RandomFloats(300 * dim, 3);
  const std::vector<float> w = RandomFloats(dim, 4);
  std::vector<float> alone(dim), batch(300 * dim);
  RmsNorm(x.data() + 200 * dim, w.data(), 1, dim, 1e-6f, alone.data(), nullptr);
  ThreadPool pool(2);
  RmsNorm(x.data(), w.data(), 300, dim, 1e-6f, batch.data(), &pool);
  EXPECT_EQ(std::vector<float>(batch.begin() + 200 * dim, batch.begin() + 201 * dim), alone);
}

TEST(SiluMulTest, MatchesDoubleReference) {
  const std::vector<float> g = RandomFloats(1000, 5, -10.0f, 10.0f);
  const std::vector<float> u = RandomFloats(1000, 6);
  std::vector<float> out(1000);
  SiluMul(g.data(), u.data(), 1000, out.data());
  for (int i = 0; i < 1000; ++i) {
    const double ref = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
    ASSERT_NEAR(out[i], ref, 1e-6 * std::fabs(ref) + 1e-7) << i;
  }
}

TEST(SiluMulTest, FusedGateUpMatchesSeparateAndAllowsAliasing) {
  const int64_t rows = 40, inter = 48;
  std::vector<float> gu = RandomFloats(rows * 2 * inter, 7, -4.0f, 4.0f);
  std::vector<float> expected(rows * inter), fused(rows * inter);
  for (int64_t r = 0; r < rows; ++r) {
    SiluMul(&gu[r * 2 * inter], &gu[r * 2 * inter + inter], inter, &expected[r * inter]);
  }
  ThreadPool pool(2);
  SiluMulFused(gu.data(), rows, inter, fused.data(), &pool);
  EXPECT_EQ(fused, expected);
  SiluMulFused(gu.data(), rows, inter, gu.data(), &pool);
  EXPECT_EQ(std::vector<float>(gu.begin(), gu.begin() + rows * inter), expected);
}

// Naive rope: explicit pair lists, angle in float, cos/sin in double.
void NaiveRope(std::vector<float>& x, int tokens, int heads, int hd, int rot,
               const std::vector<int32_t>& pos, const std::vector<float>& inv_freq, RopeStyle style,
               RopeAngles angles) {
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      float* v = &x[(t * heads + h) * hd];
      for (int i = 0; i < rot / 2; ++i) {
        const int a = style == RopeStyle::kNeox ? i : 2 * i;
        const int b = style == RopeStyle::kNeox ? i + rot / 2 : 2 * i + 1;
        // kGgmlRecurrence: theta_0 = p, theta_{i+1} = theta_i * inv_freq[1] in float (ggml's
        // rope cache); kProduct: float(p) * inv_freq[i].
        float theta = static_cast<float>(pos[t]);
        for (int e = 0; e < i; ++e) theta *= inv_freq[1];
        const double angle = angles == RopeAngles::kGgmlRecurrence
                                 ? theta
                                 : static_cast<float>(pos[t]) * inv_freq[i];
        const double c = std::cos(angle), s = std::sin(angle);
        const double va = v[a], vb = v[b];
        v[a] = static_cast<float>(va * c - vb * s);
        v[b] = static_cast<float>(vb * c + va * s);
      }
    }
  }
}

class RopeTest : public ::testing::TestWithParam<RopeStyle> {};

TEST_P(RopeTest, MatchesNaiveReferenceWithFullAndPartialRotation) {
  const int tokens = 3, heads = 2, hd = 16;
  const std::vector<int32_t> pos = {0, 7, 1000};
  for (int rot : {16, 8}) {
    std::vector<float> inv_freq(rot / 2);
    for (int i = 0; i < rot / 2; ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / rot);
    const std::vector<float> x = RandomFloats(tokens * heads * hd, 8);
    for (RopeAngles angles : {RopeAngles::kProduct, RopeAngles::kGgmlRecurrence}) {
      std::vector<float> got = x, want = x;
      Rope(got.data(), tokens, heads, hd, rot, pos.data(), inv_freq.data(), GetParam(), angles);
      NaiveRope(want, tokens, heads, hd, rot, pos, inv_freq, GetParam(), angles);
      for (size_t i = 0; i < x.size(); ++i) {
        if (static_cast<int>(i % hd) >= rot) {
          ASSERT_EQ(got[i], x[i]) << "dims past rot_dim must not change, i=" << i;
        } else {
          ASSERT_NEAR(got[i], want[i], 2e-6) << "rot=" << rot << " i=" << i;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(BothStyles, RopeTest,
                         ::testing::Values(RopeStyle::kNeox, RopeStyle::kInterleaved));

TEST(RopeTest, StylesPairDifferentDims) {
  std::vector<float> a(4, 0.0f), b(4, 0.0f);
  a[0] = b[0] = 1.0f;
  const int32_t pos = 1;
  const float inv_freq[2] = {1.5707964f, 0.0f};  // ~90 degrees for pair 0
  Rope(a.data(), 1, 1, 4, 4, &pos, inv_freq, RopeStyle::kNeox, RopeAngles::kProduct);
  Rope(b.data(), 1, 1, 4, 4, &pos, inv_freq, RopeStyle::kInterleaved, RopeAngles::kProduct);
  EXPECT_NEAR(a[2], 1.0f, 1e-6);  // neox pairs (0, 2)
  EXPECT_NEAR(b[1], 1.0f, 1e-6);  // interleaved pairs (0, 1)
}

TEST(SoftmaxTest, StableForLargeInputsAndSumsToOne) {
  std::vector<float> x = {1000.0f, 1001.0f, 999.0f, -1e30f};
  Softmax(x.data(), 4);
  const double e0 = std::exp(-1.0), e2 = std::exp(-2.0), z = e0 + 1 + e2;
  EXPECT_NEAR(x[0], e0 / z, 1e-6);
  EXPECT_NEAR(x[1], 1 / z, 1e-6);
  EXPECT_NEAR(x[2], e2 / z, 1e-6);
  EXPECT_EQ(x[3], 0.0f);
}

TEST(ArgmaxTest, ReturnsLowestIndexOnTies) {
  const std::vector<float> x = {1.0f, 3.0f, -2.0f, 3.0f};
  EXPECT_EQ(Argmax(x.data(), 4), 1);
  const std::vector<float> y = {NAN, 0.5f, 2.0f};
  EXPECT_EQ(Argmax(y.data(), 3), 2);
}

TEST(AddInPlaceTest, AddsElementwise) {
  std::vector<float> a = {1, 2, 3}, b = {0.5f, -2, 10};
  AddInPlace(a.data(), b.data(), 3);
  EXPECT_EQ(a, (std::vector<float>{1.5f, 0, 13}));
}

TEST(EmbeddingTest, GathersDecodedRowsForEveryDType) {
  for (DType t :
       {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    const testing::TestWeights table = testing::MakeWeights(t, 10, 64, 9);
    const std::vector<int32_t> ids = {3, 0, 9, 3};
    std::vector<float> out(4 * 64);
    Embedding(table.bytes.data(), t, 64, ids.data(), 4, out.data());
    for (int i = 0; i < 4; ++i) {
      for (int d = 0; d < 64; ++d) {
        ASSERT_EQ(out[i * 64 + d], table.decoded[ids[i] * 64 + d]) << DTypeName(t);
      }
    }
  }
}

}  // namespace
}  // namespace kvasir::cpu
