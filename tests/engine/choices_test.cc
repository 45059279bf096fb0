// n > 1 (choices sharing the prompt's KV), stream_interval, and dummy weights, through the engine.
#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/engine.h"
#include "engine/weights/dummy_weights.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixtures.h"

namespace kvasir {
namespace {

using testing::CollectingSink;
using testing::FixturePath;

std::unique_ptr<Engine> TinyEngine(int32_t stream_interval = 1, bool prefix_caching = true,
                                   int32_t max_batched_tokens = 64) {
  EngineOptions o;
  o.model_path = FixturePath("models/llama_tiny");
  o.num_threads = 2;
  o.block_size = 4;
  o.max_batched_tokens = max_batched_tokens;
  o.max_num_seqs = 16;
  o.stream_interval = stream_interval;
  o.enable_prefix_caching = prefix_caching;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

EngineRequest SampledRequest(const std::string& id, int32_t n) {
  EngineRequest r = testing::GreedyRequest(id, {1, 17, 42, 99, 7, 3, 250, 11, 64, 5, 8}, 12);
  r.n = n;
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 1234;
  return r;
}

// Records every output as it arrives, to check the stream's shape.
class RecordingSink : public CollectingSink {
 public:
  void OnOutput(RequestOutput output) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      sizes_.push_back(static_cast<int>(output.token_ids.size()));
      finals_ += output.final_output ? 1 : 0;
    }
    CollectingSink::OnOutput(std::move(output));
  }
  std::vector<int> sizes() {
    std::lock_guard<std::mutex> lock(mu_);
    return sizes_;
  }
  int finals() {
    std::lock_guard<std::mutex> lock(mu_);
    return finals_;
  }

 private:
  std::mutex mu_;
  std::vector<int> sizes_;
  int finals_ = 0;
};

TEST(ChoicesTest, ChoiceZeroMatchesTheSingleRequestAndTheOthersShareThePromptBlocks) {
  auto e = TinyEngine();
  ASSERT_NE(e, nullptr);
  auto single = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Submit(SampledRequest("single", 1), single).ok());
  const RequestOutput alone = single->Wait();

  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(e->Submit(SampledRequest("many", 4), sink).ok());
  const std::vector<RequestOutput> choices = sink->WaitAll();
  ASSERT_EQ(choices.size(), 4u);
  EXPECT_EQ(sink->finals(), 1);
  EXPECT_EQ(choices[0].token_ids, alone.token_ids);
  std::set<std::vector<int32_t>> distinct;
  for (size_t i = 0; i < choices.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(choices[i].index, static_cast<int32_t>(i));
    EXPECT_EQ(choices[i].finish_reason, FinishReason::kLength);
    EXPECT_EQ(choices[i].token_ids.size(), 12u);
    EXPECT_EQ(choices[i].usage.prompt_tokens, 11);
    EXPECT_EQ(choices[i].usage.completion_tokens, 12);
    distinct.insert(choices[i].token_ids);
  }
  EXPECT_EQ(distinct.size(), 4u) << "choices of a sampled request should differ";
  // The prompt (11 tokens, blocks of 4) was computed by the single request and then by nobody:
  // every choice found its two full blocks cached (the third block is partial).
  for (const RequestOutput& c : choices) EXPECT_EQ(c.usage.cached_prompt_tokens, 8);
}

TEST(ChoicesTest, SiblingsReuseTheFirstChoicesPromptBlocksOnAColdCache) {
  auto e = TinyEngine();
  ASSERT_NE(e, nullptr);
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Submit(SampledRequest("cold", 3), sink).ok());
  const std::vector<RequestOutput> choices = sink->WaitAll();
  ASSERT_EQ(choices.size(), 3u);
  EXPECT_EQ(choices[0].usage.cached_prompt_tokens, 0);
  EXPECT_EQ(choices[1].usage.cached_prompt_tokens, 8);
  EXPECT_EQ(choices[2].usage.cached_prompt_tokens, 8);
  const EngineLoads loads = e->GetLoads();
  EXPECT_EQ(loads.prefix_hit_tokens, 16);
}

TEST(ChoicesTest, WithoutPrefixCachingEveryChoiceComputesThePromptAndTheOutputIsTheSame) {
  auto cached = TinyEngine();
  auto uncached = TinyEngine(1, /*prefix_caching=*/false);
  ASSERT_NE(cached, nullptr);
  ASSERT_NE(uncached, nullptr);
  auto a = std::make_shared<CollectingSink>();
  auto b = std::make_shared<CollectingSink>();
  ASSERT_TRUE(cached->Submit(SampledRequest("x", 3), a).ok());
  ASSERT_TRUE(uncached->Submit(SampledRequest("x", 3), b).ok());
  const auto ca = a->WaitAll(), cb = b->WaitAll();
  ASSERT_EQ(ca.size(), cb.size());
  for (size_t i = 0; i < ca.size(); ++i) {
    EXPECT_EQ(ca[i].token_ids, cb[i].token_ids) << "choice " << i;
    EXPECT_EQ(cb[i].usage.cached_prompt_tokens, 0);
  }
}

TEST(ChoicesTest, AbortEndsEveryChoiceIncludingThoseNotStartedWithOneFinalOutput) {
  auto e = TinyEngine();
  ASSERT_NE(e, nullptr);
  EngineRequest r = SampledRequest("long", 5);
  r.prompt_ids.assign(300, 9);  // several steps of prefill: siblings are still held back
  r.max_tokens = 100;
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(e->Submit(std::move(r), sink).ok());
  e->Abort("long");
  const std::vector<RequestOutput> choices = sink->WaitAll();
  EXPECT_EQ(sink->finals(), 1);
  ASSERT_EQ(choices.size(), 5u);
  for (const RequestOutput& c : choices) EXPECT_EQ(c.finish_reason, FinishReason::kAbort);
  // The id is free again and the pool empty.
  auto again = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Submit(SampledRequest("long", 2), again).ok());
  EXPECT_EQ(again->WaitAll().size(), 2u);
  // Loads are published once per loop iteration, after the step that finished it.
  for (int i = 0; i < 10000 && e->GetLoads().num_running > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(e->GetLoads().num_running, 0);
  EXPECT_EQ(e->GetLoads().kv_usage, 0.0);
}

TEST(ChoicesTest, NOutsideOneToSixtyFourIsRejected) {
  auto e = TinyEngine();
  ASSERT_NE(e, nullptr);
  for (int32_t n : {0, -1, 65}) {
    absl::Status s = e->Submit(SampledRequest("bad", n), std::make_shared<CollectingSink>());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << n;
    EXPECT_NE(s.message().find("n must be"), std::string::npos) << s;
  }
}

TEST(StreamIntervalTest, SendsTheFirstTokenAloneThenGroupsOfNWithTheSameTokens) {
  auto every = TinyEngine(1);
  auto grouped = TinyEngine(5);
  ASSERT_NE(every, nullptr);
  ASSERT_NE(grouped, nullptr);
  auto a = std::make_shared<RecordingSink>();
  auto b = std::make_shared<RecordingSink>();
  ASSERT_TRUE(every->Submit(SampledRequest("s", 1), a).ok());
  ASSERT_TRUE(grouped->Submit(SampledRequest("s", 1), b).ok());
  EXPECT_EQ(a->Wait().token_ids, b->Wait().token_ids);
  EXPECT_EQ(a->sizes(), std::vector<int>(12, 1));
  // 12 tokens: the first at once, then 5, 5 and the last one with the final output.
  EXPECT_EQ(b->sizes(), (std::vector<int>{1, 5, 5, 1}));
}

TEST(StreamIntervalTest, AbortDeliversTheTokensHeldBack) {
  auto e = TinyEngine(1000);
  ASSERT_NE(e, nullptr);
  auto sink = std::make_shared<RecordingSink>();
  EngineRequest r = SampledRequest("held", 1);
  r.max_tokens = 400;
  ASSERT_TRUE(e->Submit(std::move(r), sink).ok());
  while (sink->sizes().empty()) std::this_thread::yield();  // the first token went out
  e->Abort("held");
  const RequestOutput out = sink->Wait();
  EXPECT_EQ(out.finish_reason, FinishReason::kAbort);
  EXPECT_EQ(static_cast<int>(out.token_ids.size()), out.usage.completion_tokens);
}

TEST(DummyWeightsTest, MakesTensorsOfTheAskedShapeDeterministicallyAndChecksReuse) {
  DummyWeightSource a("a"), b("b");
  auto x = a.GetWithShape("model.layers.0.mlp.up_proj.weight", {8, 4});
  auto y = b.GetWithShape("model.layers.0.mlp.up_proj.weight", {8, 4});
  ASSERT_TRUE(x.ok() && y.ok());
  EXPECT_EQ(x->shape, (std::vector<int64_t>{8, 4}));
  const float* xv = static_cast<const float*>(x->data);
  EXPECT_TRUE(std::equal(xv, xv + 32, static_cast<const float*>(y->data)));
  EXPECT_TRUE(std::any_of(xv, xv + 32, [](float v) { return v != 0.0f; }));
  EXPECT_TRUE(std::all_of(xv, xv + 32, [](float v) { return std::abs(v) <= 0.035f; }));
  auto norm = a.GetWithShape("model.norm.weight", {4});
  ASSERT_TRUE(norm.ok());
  EXPECT_EQ(static_cast<const float*>(norm->data)[3], 1.0f);
  EXPECT_TRUE(a.Has("model.norm.weight"));
  EXPECT_FALSE(a.Has("lm_head.weight"));
  EXPECT_EQ(a.Get("lm_head.weight").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(a.GetWithShape("model.norm.weight", {5}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.GetWithShape("huge", {int64_t{1} << 40, 1 << 20}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DummyWeightsTest, AnEngineRunsAConfigWithoutItsWeightsAndIsDeterministic) {
  EngineOptions o;
  o.model_path = FixturePath("models/llama_tiny/config.json");
  o.dummy_weights = true;
  o.num_threads = 1;
  o.max_batched_tokens = 64;
  o.max_num_seqs = 8;
  std::vector<std::vector<int32_t>> runs;
  for (int i = 0; i < 2; ++i) {
    auto e = Engine::Create(o);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ((*e)->model_info().format, "dummy");
    EXPECT_EQ((*e)->model_info().name, "dummy:llama_tiny");
    auto sink = std::make_shared<CollectingSink>();
    ASSERT_TRUE((*e)->Submit(testing::GreedyRequest("d", {1, 2, 3}, 8), sink).ok());
    runs.push_back(sink->Wait().token_ids);
    EXPECT_EQ(runs.back().size(), 8u);
  }
  EXPECT_EQ(runs[0], runs[1]);
  o.model_path = FixturePath("models/no_such_model");
  EXPECT_EQ(Engine::Create(o).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvasir

namespace kvasir {
namespace {

TEST(PromptLogprobsTest, EachPositionMatchesTheNextTokenDistributionOfThatPrefixAcrossChunks) {
  // 16 tokens per step: the 40-token prompt is computed in three chunks.
  auto e = TinyEngine(1, true, /*max_batched_tokens=*/16);
  ASSERT_NE(e, nullptr);
  std::vector<int32_t> prompt;
  for (int32_t i = 0; i < 40; ++i) prompt.push_back((i * 37 + 11) % 384);
  // The same prompt first, so that its blocks are cached: prompt logprobs must not use them.
  auto warm = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Submit(testing::GreedyRequest("warm", prompt, 1), warm).ok());
  warm->Wait();

  EngineRequest r = testing::GreedyRequest("p", prompt, 3);
  r.prompt_logprobs = 5;
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Submit(std::move(r), sink).ok());
  const RequestOutput out = sink->Wait();
  EXPECT_EQ(out.usage.cached_prompt_tokens, 0);
  ASSERT_EQ(out.prompt_logprobs.size(), prompt.size() - 1);
  for (size_t p = 0; p + 1 < prompt.size(); p += 7) {
    SCOPED_TRACE(p);
    const TokenLogprob& lp = out.prompt_logprobs[p];
    EXPECT_EQ(lp.token_id, prompt[p + 1]);
    ASSERT_EQ(lp.top.size(), 5u);
    // The distribution after prompt[0..p]: a one-token greedy request on that prefix.
    EngineRequest prefix = testing::GreedyRequest(absl::StrCat("prefix", p),
                                                  {prompt.begin(), prompt.begin() + p + 1}, 1);
    prefix.logprobs = 5;
    auto prefix_sink = std::make_shared<CollectingSink>();
    ASSERT_TRUE(e->Submit(std::move(prefix), prefix_sink).ok());
    const RequestOutput next = prefix_sink->Wait();
    ASSERT_EQ(next.logprobs.size(), 1u);
    for (size_t k = 0; k < 5; ++k) {
      EXPECT_EQ(lp.top[k].first, next.logprobs[0].top[k].first);
      EXPECT_NEAR(lp.top[k].second, next.logprobs[0].top[k].second, 1e-4);
      if (lp.top[k].first == lp.token_id) EXPECT_NEAR(lp.logprob, lp.top[k].second, 1e-6);
    }
  }
}

TEST(PromptLogprobsTest, OutOfRangeIsRejected) {
  auto e = TinyEngine();
  ASSERT_NE(e, nullptr);
  EngineRequest r = testing::GreedyRequest("p", {1, 2, 3}, 1);
  r.prompt_logprobs = 21;
  absl::Status s = e->Submit(std::move(r), std::make_shared<CollectingSink>());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("prompt_logprobs"), std::string::npos);
}

}  // namespace
}  // namespace kvasir
