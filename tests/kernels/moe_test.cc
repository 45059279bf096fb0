// MoE routing, permutation and combine (kernels/cpu/moe.h) against a scalar reference.
#include "kernels/cpu/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/kernels/test_util.h"

namespace kvasir::cpu {
namespace {

using testing::RandomFloats;

struct Routed {
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

// The routing of kernels/moe_routing.h written out directly: sort everything, no partial sorts.
Routed ReferenceRoute(const std::vector<float>& logits, int64_t tokens, const MoeRouting& r,
                      const std::vector<float>& bias) {
  const int32_t n = r.num_experts;
  Routed out;
  for (int64_t t = 0; t < tokens; ++t) {
    const float* l = logits.data() + t * n;
    std::vector<float> s(n), c(n);
    if (r.scoring == MoeScoring::kSigmoid) {
      for (int32_t e = 0; e < n; ++e) s[e] = 1.0f / (1.0f + std::exp(-l[e]));
    } else {
      const float max = *std::max_element(l, l + n);
      float sum = 0.0f;
      for (int32_t e = 0; e < n; ++e) sum += (s[e] = std::exp(l[e] - max));
      for (int32_t e = 0; e < n; ++e) s[e] /= sum;
    }
    for (int32_t e = 0; e < n; ++e) c[e] = s[e] + (bias.empty() ? 0.0f : bias[e]);
    // Sorts indices by value, largest first, lower index first on ties.
    auto ranked = [](const std::vector<float>& v) {
      std::vector<int32_t> idx(v.size());
      std::iota(idx.begin(), idx.end(), 0);
      std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return v[a] > v[b]; });
      return idx;
    };
    std::vector<bool> eligible(n, true);
    if (r.num_groups > 1) {
      const int32_t per = n / r.num_groups;
      std::vector<float> gscore(r.num_groups);
      for (int32_t g = 0; g < r.num_groups; ++g) {
        std::vector<float> members(c.begin() + g * per, c.begin() + (g + 1) * per);
        std::sort(members.rbegin(), members.rend());
        gscore[g] = r.group_score == MoeGroupScore::kMax ? members[0] : members[0] + members[1];
      }
      const std::vector<int32_t> groups = ranked(gscore);
      for (int32_t i = r.topk_groups; i < r.num_groups; ++i) {
        for (int32_t e = 0; e < per; ++e) eligible[groups[i] * per + e] = false;
      }
    }
    std::vector<float> masked = c;
    for (int32_t e = 0; e < n; ++e) {
      if (!eligible[e]) masked[e] = -INFINITY;
    }
    const std::vector<int32_t> order = ranked(masked);
    float sum = 0.0f;
    for (int32_t j = 0; j < r.top_k; ++j) sum += s[order[j]];
    for (int32_t j = 0; j < r.top_k; ++j) {
      out.ids.push_back(order[j]);
      out.weights.push_back((r.renormalize ? s[order[j]] / sum : s[order[j]]) * r.scaling);
    }
  }
  return out;
}

Routed Route(const std::vector<float>& logits, int64_t tokens, const MoeRouting& r,
             const std::vector<float>& bias, ThreadPool* pool) {
  Routed out{std::vector<int32_t>(tokens * r.top_k), std::vector<float>(tokens * r.top_k)};
  MoeRoute(logits.data(), tokens, r, bias.empty() ? nullptr : bias.data(), out.ids.data(),
           out.weights.data(), pool);
  return out;
}

struct RoutingCase {
  const char* name;
  MoeRouting routing;
  bool with_bias;
};

class MoeRoutingTest : public ::testing::TestWithParam<RoutingCase> {};

// Continuous random logits, and logits rounded to a few integers (many exact ties).
TEST_P(MoeRoutingTest, MatchesScalarReferenceIncludingTies) {
  const MoeRouting& r = GetParam().routing;
  const int64_t tokens = 300;  // enough to split across the pool
  ThreadPool pool(2);
  for (bool ties : {false, true}) {
    std::vector<float> logits = RandomFloats(tokens * r.num_experts, 11, -3.0f, 3.0f);
    std::vector<float> bias;
    if (GetParam().with_bias) bias = RandomFloats(r.num_experts, 12, -0.3f, 0.3f);
    if (ties) {
      for (float& v : logits) v = std::round(v / 2.0f);  // integers in [-2, 2]
      for (float& b : bias) b = b > 0 ? 0.25f : 0.0f;
    }
    const Routed want = ReferenceRoute(logits, tokens, r, bias);
    for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
      const Routed got = Route(logits, tokens, r, bias, p);
      ASSERT_EQ(got.ids, want.ids) << (ties ? "tied logits" : "random logits");
      for (size_t i = 0; i < want.weights.size(); ++i) {
        ASSERT_FLOAT_EQ(got.weights[i], want.weights[i]) << "assignment " << i;
      }
    }
  }
}

MoeRouting Routing(int32_t experts, int32_t k, MoeScoring scoring, bool renormalize,
                   float scaling = 1.0f, int32_t groups = 1, int32_t topk_groups = 1,
                   MoeGroupScore gs = MoeGroupScore::kMax) {
  return {experts, k, scoring, groups, topk_groups, gs, renormalize, scaling};
}

INSTANTIATE_TEST_SUITE_P(
    Configs, MoeRoutingTest,
    ::testing::Values(
        RoutingCase{"mixtral", Routing(8, 2, MoeScoring::kSoftmax, true), false},
        RoutingCase{"qwen3_moe", Routing(128, 8, MoeScoring::kSoftmax, false), false},
        RoutingCase{"qwen3_moe_norm", Routing(128, 8, MoeScoring::kSoftmax, true), false},
        RoutingCase{"deepseek_v2_group_max",
                    Routing(64, 6, MoeScoring::kSoftmax, false, 16.0f, 8, 3), false},
        RoutingCase{"deepseek_v3_group_top2_bias",
                    Routing(64, 8, MoeScoring::kSigmoid, true, 2.5f, 8, 4, MoeGroupScore::kTop2Sum),
                    true},
        RoutingCase{"sigmoid_bias_no_groups", Routing(16, 4, MoeScoring::kSigmoid, false), true},
        RoutingCase{"top1", Routing(4, 1, MoeScoring::kSoftmax, false), false}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(MoeRouteTest, BiasChoosesExpertsButDoesNotWeighThem) {
  const MoeRouting r = Routing(4, 2, MoeScoring::kSigmoid, false);
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f, -1.0f};
  const Routed got = Route(logits, 1, r, {0.0f, 0.0f, 0.0f, 10.0f}, nullptr);
  EXPECT_EQ(got.ids, (std::vector<int32_t>{3, 0}));
  EXPECT_FLOAT_EQ(got.weights[0], 1.0f / (1.0f + std::exp(1.0f)));  // sigmoid(-1), no bias
  EXPECT_FLOAT_EQ(got.weights[1], 1.0f / (1.0f + std::exp(-2.0f)));
}

TEST(MoeRouteTest, EqualScoresGoToTheLowerExpertIndex) {
  const std::vector<float> logits(8, 0.5f);
  const Routed plain = Route(logits, 1, Routing(8, 3, MoeScoring::kSoftmax, false), {}, nullptr);
  EXPECT_EQ(plain.ids, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_FLOAT_EQ(plain.weights[0], 0.125f);
  const Routed norm = Route(logits, 1, Routing(8, 3, MoeScoring::kSoftmax, true), {}, nullptr);
  EXPECT_FLOAT_EQ(norm.weights[2], 1.0f / 3.0f);
}

// Groups {0, 1} and {2, 3}, choice scores 0.9, 0.0 | 0.6, 0.5 (sigmoid(0) = 0.5 plus a bias): the
// best single expert is in group 0, the best pair in group 1.
TEST(MoeRouteTest, GroupScoreByMaxOrByTopTwoSumPicksDifferentGroups) {
  const std::vector<float> logits(4, 0.0f);
  const std::vector<float> bias = {0.4f, -0.5f, 0.1f, 0.0f};
  const Routed by_max =
      Route(logits, 1, Routing(4, 1, MoeScoring::kSigmoid, false, 1.0f, 2, 1), bias, nullptr);
  EXPECT_EQ(by_max.ids, (std::vector<int32_t>{0}));
  const Routed by_sum = Route(
      logits, 1, Routing(4, 2, MoeScoring::kSigmoid, false, 1.0f, 2, 1, MoeGroupScore::kTop2Sum),
      bias, nullptr);
  EXPECT_EQ(by_sum.ids, (std::vector<int32_t>{2, 3}));  // expert 0 (0.9) is outside the group
  EXPECT_FLOAT_EQ(by_sum.weights[0], 0.5f);
}

TEST(MoeRouteTest, RenormalisesThenScales) {
  // softmax of (log 4, log 3, log 2, log 1): 0.4, 0.3, 0.2, 0.1.
  const std::vector<float> logits = {std::log(4.0f), std::log(3.0f), std::log(2.0f), 0.0f};
  const Routed plain =
      Route(logits, 1, Routing(4, 2, MoeScoring::kSoftmax, false, 2.0f), {}, nullptr);
  EXPECT_NEAR(plain.weights[0], 0.8f, 1e-6);
  EXPECT_NEAR(plain.weights[1], 0.6f, 1e-6);
  const Routed norm =
      Route(logits, 1, Routing(4, 2, MoeScoring::kSoftmax, true, 2.0f), {}, nullptr);
  EXPECT_NEAR(norm.weights[0], 2.0f * 4.0f / 7.0f, 1e-6);
  EXPECT_NEAR(norm.weights[1], 2.0f * 3.0f / 7.0f, 1e-6);
}

TEST(MoePermuteTest, GroupsAssignmentsByExpertWithTokensAscending) {
  // 5 tokens, top-2 over 6 experts: expert 1 gets every token, 0, 4 and 5 get none.
  const std::vector<int32_t> ids = {1, 3, 2, 1, 1, 3, 1, 2, 3, 1};
  MoePermutation p;
  MoePermute(ids.data(), 5, 2, 6, &p);
  EXPECT_EQ(p.expert_offsets, (std::vector<int32_t>{0, 0, 5, 7, 10, 10, 10}));
  EXPECT_EQ(p.source_token, (std::vector<int32_t>{0, 1, 2, 3, 4, 1, 3, 0, 2, 4}));
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t row = p.row_of[i];
    EXPECT_EQ(p.source_token[row], static_cast<int32_t>(i / 2));
    EXPECT_GE(row, p.expert_offsets[ids[i]]);
    EXPECT_LT(row, p.expert_offsets[ids[i] + 1]);
  }
}

TEST(MoeCombineTest, SumsWeightedExpertRowsInRoutingOrder) {
  const int64_t dim = 3;
  const std::vector<float> ys = {1, 2, 3, 10, 20, 30, 100, 200, 300};
  const std::vector<int32_t> row_of = {2, 0, 1, 2};  // token 0: rows 2, 0; token 1: rows 1, 2
  const std::vector<float> w = {0.5f, 2.0f, 1.0f, -1.0f};
  std::vector<float> out(2 * dim);
  MoeCombine(ys.data(), dim, row_of.data(), w.data(), 2, 2, out.data(), nullptr);
  EXPECT_EQ(out, (std::vector<float>{52, 104, 156, -90, -180, -270}));
}

}  // namespace
}  // namespace kvasir::cpu
