#include "engine/sampler.h"

#include <cmath>
#include <limits>
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

namespace kvasir {
namespace {

// Hostile values a client can send or a model can produce must never crash the sampler or
// yield a token outside the vocabulary.
TEST(SamplerTest, TemperatureSoSmallThatItsInverseOverflowsIsGreedy) {
  Sampler s;
  std::vector<float> logits(1000, 0.0f);
  logits[699] = 1.0f;
  SamplingParams p;
  p.temperature = 1e-45f;  // subnormal: 1 / T is +inf in float
  p.top_p = 0.5f;
  EXPECT_EQ(s.Sample(logits.data(), 1000, p, 1, 0), 699);
  p.top_p = 1.0f;
  EXPECT_EQ(s.Sample(logits.data(), 1000, p, 1, 0), 699);
}

TEST(SamplerTest, NanAndInfiniteLogitsNeverCrashAndNanIsNeverSampled) {
  Sampler s;
  std::vector<float> logits(100, 0.0f);
  for (int i = 0; i < 100; i += 3) logits[i] = std::nanf("");
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  for (uint64_t step = 0; step < 200; ++step) {
    const int32_t t = s.Sample(logits.data(), 100, p, 5, step);
    ASSERT_GE(t, 0);
    ASSERT_LT(t, 100);
    EXPECT_NE(t % 3, 0) << "sampled a NaN logit";
  }
  logits[5] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(s.Sample(logits.data(), 100, p, 5, 0), 5);
  std::vector<float> all_nan(10, std::nanf(""));
  const int32_t t = s.Sample(all_nan.data(), 10, p, 5, 0);
  EXPECT_GE(t, 0);
  EXPECT_LT(t, 10);
}

TEST(SamplerTest, MinPDropsTokensLessLikelyThanMinPTimesTheBest) {
  Sampler s;
  // p proportional to e^l: token 1 has e^-1 = 0.37 and token 2 e^-3 = 0.05 of token 0's mass.
  const std::vector<float> logits = {3.0f, 2.0f, 0.0f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.1f;
  std::set<int32_t> seen;
  for (int i = 0; i < 2000; ++i) seen.insert(s.Sample(logits.data(), 3, p, 9, i));
  EXPECT_EQ(seen, (std::set<int32_t>{0, 1}));
  p.min_p = 0.01f;
  seen.clear();
  for (int i = 0; i < 4000; ++i) seen.insert(s.Sample(logits.data(), 3, p, 9, i));
  EXPECT_EQ(seen, (std::set<int32_t>{0, 1, 2}));
}

TEST(SamplerTest, ProcessorsApplyBiasPenaltiesAndBans) {
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f};
  SamplingParams p;
  p.logit_bias = {{3, 10.0f}};
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  const absl::flat_hash_set<int32_t> prompt = {0, 1};
  const absl::flat_hash_map<int32_t, int32_t> output = {{1, 1}, {2, 3}};
  ASSERT_TRUE(Sampler::NeedsProcessing(p, false));
  const std::vector<int32_t> banned = {4};
  Sampler::ApplyProcessors(logits.data(), 5, p, {&prompt, &output}, banned);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);                     // prompt, positive: / 2
  EXPECT_FLOAT_EQ(logits[1], -4.0f - 0.5f - 0.25f);     // prompt and output: * 2 once, then
  EXPECT_FLOAT_EQ(logits[2], 0.5f - 0.5f - 3 * 0.25f);  // output x3: / 2, presence, 3 x freq
  EXPECT_FLOAT_EQ(logits[3], 10.5f);                    // bias only
  EXPECT_EQ(logits[4], -std::numeric_limits<float>::infinity());  // banned
  EXPECT_FALSE(Sampler::NeedsProcessing(SamplingParams{}, false));
  EXPECT_TRUE(Sampler::NeedsProcessing(SamplingParams{}, true));
}

TEST(SamplerTest, LogprobsAreTheFullSoftmaxOfTheRawLogits) {
  const std::vector<float> logits = {1.0f, 3.0f, -2.0f, 3.0f, 0.0f};
  double z = 0;
  for (float l : logits) z += std::exp(double{l});
  const TokenLogprobs lp = Sampler::Logprobs(logits.data(), 5, 2, 3);
  EXPECT_NEAR(lp.logprob, -2.0 - std::log(z), 1e-6);
  ASSERT_EQ(lp.top.size(), 3u);
  EXPECT_EQ(lp.top[0].first, 1);  // ties: lower id first
  EXPECT_EQ(lp.top[1].first, 3);
  EXPECT_EQ(lp.top[2].first, 0);
  double mass = 0;
  for (int v = 0; v < 5; ++v) mass += std::exp(Sampler::Logprobs(logits.data(), 5, v, 0).logprob);
  EXPECT_NEAR(mass, 1.0, 1e-6);
  EXPECT_NEAR(lp.top[2].second, 1.0 - std::log(z), 1e-6);
}

TEST(SamplerTest, LogprobsStayFiniteWhenALogitIsInfinite) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> logits = {1.0f, inf, 0.0f, inf};
  const TokenLogprobs lp = Sampler::Logprobs(logits.data(), 4, 1, 2);
  EXPECT_FLOAT_EQ(lp.logprob, -std::log(2.0f));  // the two +inf tokens share the mass
  ASSERT_EQ(lp.top.size(), 2u);
  EXPECT_EQ(lp.top[0].first, 1);
  EXPECT_EQ(lp.top[1].first, 3);
  EXPECT_EQ(Sampler::Logprobs(logits.data(), 4, 0, 0).logprob, -inf);
}

}  // namespace
}  // namespace kvasir
