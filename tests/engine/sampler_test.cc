#include "engine/sampler.h"

#include <cmath>
#include <map>
#include <set>

#include "gtest/gtest.h"

namespace kvasir {
namespace {

TEST(SamplerTest, GreedyPicksTheLowestIdAmongTiedMaxima) {
  Sampler s;
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(s.Sample(logits.data(), 4, {}, 1, 0), 1);
  SamplingParams top1;
  top1.temperature = 1.0f;
  top1.top_k = 1;
  EXPECT_EQ(s.Sample(logits.data(), 4, top1, 1, 0), 1);
}

TEST(SamplerTest, SameSeedAndStepGiveTheSameTokenOtherStepsVary) {
  Sampler s;
  std::vector<float> logits(100, 0.0f);  // uniform
  SamplingParams p;
  p.temperature = 1.0f;
  std::set<int32_t> seen;
  for (uint64_t step = 0; step < 50; ++step) {
    const int32_t a = s.Sample(logits.data(), 100, p, 42, step);
    EXPECT_EQ(a, s.Sample(logits.data(), 100, p, 42, step));
    seen.insert(a);
  }
  EXPECT_GT(seen.size(), 20u);
}

TEST(SamplerTest, FrequenciesFollowTheSoftmaxOfLogitsOverTemperature) {
  Sampler s;
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f, 0.0f};
  SamplingParams p;
  p.temperature = 2.0f;
  std::vector<int> counts(4, 0);
  const int n = 40000;
  for (int i = 0; i < n; ++i) ++counts[s.Sample(logits.data(), 4, p, 7, i)];
  double z = 0;
  for (float l : logits) z += std::exp(l / 2.0);
  for (int v = 0; v < 4; ++v) {
    const double expected = std::exp(logits[v] / 2.0) / z;
    EXPECT_NEAR(counts[v] / double(n), expected, 0.01) << "token " << v;
  }
}

TEST(SamplerTest, TopKAndTopPRestrictTheSupport) {
  Sampler s;
  const std::vector<float> logits = {5.0f, 4.0f, 3.0f, 2.0f, 1.0f, 0.0f};
  SamplingParams k2;
  k2.temperature = 1.0f;
  k2.top_k = 2;
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.7f;  // softmax: 0.636, 0.234, ... -> the first two reach 0.7
  std::map<int32_t, int> k_seen, p_seen;
  for (int i = 0; i < 5000; ++i) {
    ++k_seen[s.Sample(logits.data(), 6, k2, 3, i)];
    ++p_seen[s.Sample(logits.data(), 6, p, 3, i)];
  }
  EXPECT_EQ(k_seen.size(), 2u);
  EXPECT_TRUE(k_seen.count(0) && k_seen.count(1));
  EXPECT_EQ(p_seen.size(), 2u);
  EXPECT_TRUE(p_seen.count(0) && p_seen.count(1));
}

TEST(SamplerTest, UniformDrawsLieInTheUnitInterval) {
  double sum = 0;
  for (uint64_t i = 0; i < 10000; ++i) {
    const double u = Sampler::Uniform(5, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.02);
}

}  // namespace
}  // namespace kvasir
