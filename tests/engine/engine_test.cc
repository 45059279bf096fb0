// The engine loop's contract: validation, abort, shutdown, batch invariance, seeded sampling.
#include "engine/engine.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "engine/model_config.h"
#include "engine/model_loader.h"
#include "engine/model_runner.h"
#include "engine/weights/dummy_weights.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixtures.h"

namespace kvasir {
namespace {

using testing::CollectingSink;
using testing::FixturePath;

std::unique_ptr<Engine> TinyEngine(int32_t max_batched_tokens = 64) {
  EngineOptions o;
  o.model_path = FixturePath("models/llama_tiny");
  o.num_threads = 2;
  o.block_size = 4;
  o.max_batched_tokens = max_batched_tokens;
  o.max_num_seqs = std::min(64, max_batched_tokens);
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

RequestOutput RunAlone(Engine& e, EngineRequest r) {
  auto sink = std::make_shared<CollectingSink>();
  EXPECT_TRUE(e.Submit(std::move(r), sink).ok());
  return sink->Wait();
}

TEST(EngineTest, SubmitRejectsInvalidRequestsWithMessagesNamingTheField) {
  auto e = TinyEngine();
  ASSERT_NE(e, nullptr);
  auto sink = std::make_shared<CollectingSink>();
  struct Bad {
    EngineRequest r;
    std::string needle;
  };
  std::vector<Bad> bad;
  bad.push_back({testing::GreedyRequest("a", {}, 4), "prompt is empty"});
  bad.push_back({testing::GreedyRequest("b", {1, 100000}, 4), "100000"});
  bad.push_back({testing::GreedyRequest("c", {1, -3}, 4), "-3"});
  bad.push_back({testing::GreedyRequest("d", {1, 2}, 0), "max_tokens"});
  bad.push_back({testing::GreedyRequest("e", {1, 2}, 1000000000), "context length"});
  bad.push_back({testing::GreedyRequest("f", std::vector<int32_t>(600, 5), 1), "context length"});
  Bad nan_t{testing::GreedyRequest("g", {1, 2}, 4), "temperature"};
  nan_t.r.sampling.temperature = std::nanf("");
  bad.push_back(nan_t);
  Bad neg_t{testing::GreedyRequest("h", {1, 2}, 4), "temperature"};
  neg_t.r.sampling.temperature = -1.0f;
  bad.push_back(neg_t);
  Bad top_p{testing::GreedyRequest("i", {1, 2}, 4), "top_p"};
  top_p.r.sampling.top_p = 0.0f;
  bad.push_back(top_p);
  Bad top_k{testing::GreedyRequest("j", {1, 2}, 4), "top_k"};
  top_k.r.sampling.top_k = -2;
  bad.push_back(top_k);
  for (Bad& b : bad) {
    absl::Status s = e->Submit(b.r, sink);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.needle << ": " << s;
    EXPECT_NE(s.message().find(b.needle), std::string::npos) << s;
  }
  EXPECT_EQ(sink->num_outputs(), 0);
  // The engine still serves.
  RequestOutput ok = RunAlone(*e, testing::GreedyRequest("ok", {1, 2, 3}, 3));
  EXPECT_EQ(ok.token_ids.size(), 3u);
}

// A request that could never fit the KV pool, even alone, is refused at Submit with a message
// naming the pool; a request that fits only after others finish is queued and served.
TEST(EngineTest, RequestLargerThanTheWholeKvPoolIsRejectedAndOthersAreServed) {
  EngineOptions o;
  o.model_path = FixturePath("models/llama_tiny");
  o.num_threads = 2;
  o.block_size = 4;
  auto probe = Engine::Create(o);
  ASSERT_TRUE(probe.ok()) << probe.status();
  o.kv_cache_bytes = (*probe)->model_info().kv_bytes_per_token * 64;  // 16 blocks of 4
  auto e = Engine::Create(o);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)->model_info().kv_num_blocks, 16);
  auto sink = std::make_shared<CollectingSink>();
  absl::Status s =
      (*e)->Submit(testing::GreedyRequest("huge", std::vector<int32_t>(60, 5), 8), sink);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("can never fit the KV cache of 64 tokens"), std::string::npos) << s;
  // Three requests of 40 tokens each fit only one at a time: they queue (and preempt), all end.
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 3; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    std::vector<int32_t> prompt(30, 7 + i);
    ASSERT_TRUE(
        (*e)->Submit(testing::GreedyRequest("fits" + std::to_string(i), prompt, 10), sinks.back())
            .ok());
  }
  for (auto& k : sinks) EXPECT_EQ(k->Wait().token_ids.size(), 10u);
}

TEST(EngineTest, DuplicateLiveRequestIdIsRejected) {
  auto e = TinyEngine();
  ASSERT_NE(e, nullptr);
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Submit(testing::GreedyRequest("same", {1, 2}, 200), sink).ok());
  absl::Status dup =
      e->Submit(testing::GreedyRequest("same", {1, 2}, 2), std::make_shared<CollectingSink>());
  EXPECT_EQ(dup.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(dup.message().find("same"), std::string::npos);
  e->Abort("same");
  sink->Wait();
}

TEST(EngineTest, AbortEndsTheRequestWithAbortAndUsage) {
  auto e = TinyEngine();
  ASSERT_NE(e, nullptr);
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Submit(testing::GreedyRequest("long", {1, 2, 3}, 400), sink).ok());
  e->Abort("long");
  RequestOutput out = sink->Wait();
  EXPECT_EQ(out.finish_reason, FinishReason::kAbort);
  EXPECT_LT(out.token_ids.size(), 400u);
  EXPECT_EQ(out.usage.prompt_tokens, 3);
  e->Abort("long");     // finished: ignored
  e->Abort("unknown");  // never existed: ignored
}

TEST(EngineTest, ShutdownGivesEveryLiveRequestAFinalOutput) {
  auto e = TinyEngine();
  ASSERT_NE(e, nullptr);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 5; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(
        e->Submit(testing::GreedyRequest("s" + std::to_string(i), {1, 2, 3}, 400), sinks.back())
            .ok());
  }
  e->Shutdown();
  for (auto& s : sinks) EXPECT_EQ(s->Wait().finish_reason, FinishReason::kAbort);
  EXPECT_EQ(e->Submit(testing::GreedyRequest("late", {1}, 1), sinks[0]).code(),
            absl::StatusCode::kFailedPrecondition);
}

// Batch invariance: a request's greedy output does not depend on what else runs with it or how
// its prompt is chunked.
TEST(EngineTest, GreedyOutputIsTheSameAloneAndInAMixedChunkedBatch) {
  auto alone = TinyEngine(/*max_batched_tokens=*/512);
  auto mixed = TinyEngine(/*max_batched_tokens=*/7);
  ASSERT_NE(alone, nullptr);
  ASSERT_NE(mixed, nullptr);
  std::mt19937 rng(7);
  std::vector<EngineRequest> reqs;
  for (int i = 0; i < 12; ++i) {
    std::vector<int32_t> prompt(1 + rng() % 40);
    for (auto& t : prompt) t = rng() % 384;
    reqs.push_back(testing::GreedyRequest("m" + std::to_string(i), prompt, 1 + rng() % 20));
  }
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (const auto& r : reqs) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(mixed->Submit(r, sinks.back()).ok());
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(sinks[i]->Wait().token_ids, RunAlone(*alone, reqs[i]).token_ids) << "request " << i;
  }
}

TEST(EngineTest, SeededSamplingIsReproducibleWhateverElseIsInTheBatch) {
  auto e = TinyEngine();
  ASSERT_NE(e, nullptr);
  EngineRequest r = testing::GreedyRequest("seeded", {5, 6, 7}, 24);
  r.sampling.temperature = 1.0f;
  r.sampling.top_p = 0.9f;
  r.sampling.seed = 1234;
  const RequestOutput first = RunAlone(*e, r);
  // Again, with other requests around it.
  std::vector<std::shared_ptr<CollectingSink>> others;
  for (int i = 0; i < 4; ++i) {
    EngineRequest o = testing::GreedyRequest("other" + std::to_string(i), {9, 8, 7, 6}, 30);
    o.sampling.temperature = 0.8f;
    others.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(e->Submit(o, others.back()).ok());
  }
  r.id = "seeded-again";
  EXPECT_EQ(RunAlone(*e, r).token_ids, first.token_ids);
  r.id = "seeded-other-seed";
  r.sampling.seed = 99;
  EXPECT_NE(RunAlone(*e, r).token_ids, first.token_ids);
  for (auto& o : others) o->Wait();
}

TEST(EngineTest, MinTokensKeepsStopTokensAwayUntilReached) {
  auto e = TinyEngine();
  ASSERT_NE(e, nullptr);
  const std::vector<int32_t> prompt = {5, 6, 7, 8};
  const RequestOutput greedy = RunAlone(*e, testing::GreedyRequest("g", prompt, 8));
  ASSERT_EQ(greedy.token_ids.size(), 8u);
  // Make the third greedy token a stop token: without min_tokens it ends the request there.
  EngineRequest r = testing::GreedyRequest("stop", prompt, 8);
  r.stop_token_ids = {greedy.token_ids[2]};
  const RequestOutput stopped = RunAlone(*e, r);
  EXPECT_EQ(stopped.finish_reason, FinishReason::kStop);
  EXPECT_EQ(stopped.stop_token, greedy.token_ids[2]);
  EXPECT_LE(stopped.token_ids.size(), 3u);
  // With min_tokens 6 the stop token cannot be sampled before the 7th token.
  r.id = "min";
  r.min_tokens = 6;
  const RequestOutput held = RunAlone(*e, r);
  ASSERT_GE(held.token_ids.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_NE(held.token_ids[i], greedy.token_ids[2]) << i;
}

TEST(EngineTest, LogprobsMatchAFullSoftmaxAndGreedyPicksTheTopOne) {
  auto e = TinyEngine();
  ASSERT_NE(e, nullptr);
  EngineRequest r = testing::GreedyRequest("lp", {3, 4, 5}, 6);
  r.logprobs = 5;
  const RequestOutput out = RunAlone(*e, r);
  ASSERT_EQ(out.logprobs.size(), out.token_ids.size());
  for (size_t i = 0; i < out.token_ids.size(); ++i) {
    const TokenLogprob& lp = out.logprobs[i];
    ASSERT_EQ(lp.top.size(), 5u);
    EXPECT_EQ(lp.top[0].first, out.token_ids[i]);  // greedy = the most likely
    EXPECT_FLOAT_EQ(lp.top[0].second, lp.logprob);
    double mass = 0;
    for (size_t k = 0; k < lp.top.size(); ++k) {
      EXPECT_LE(lp.top[k].second, 0.0f);
      if (k > 0) EXPECT_LE(lp.top[k].second, lp.top[k - 1].second);
      mass += std::exp(lp.top[k].second);
    }
    EXPECT_LE(mass, 1.0 + 1e-5);
  }
  // The same request without logprobs generates the same tokens.
  r.id = "nolp";
  r.logprobs.reset();
  EXPECT_EQ(RunAlone(*e, r).token_ids, out.token_ids);
}

TEST(EngineTest, PenaltiesAndBiasChangeGreedyOutputAndAreValidated) {
  auto e = TinyEngine();
  ASSERT_NE(e, nullptr);
  const std::vector<int32_t> prompt = {9, 9, 9};
  // A bias that makes 77 win every step; penalties on the output then push it back.
  auto count77 = [](const RequestOutput& o) {
    return std::count(o.token_ids.begin(), o.token_ids.end(), 77);
  };
  EngineRequest pushed = testing::GreedyRequest("pushed", prompt, 6);
  pushed.sampling.logit_bias = {{77, 12.0f}};
  ASSERT_EQ(count77(RunAlone(*e, pushed)), 6);
  EngineRequest freq = pushed;
  freq.id = "freq";
  freq.sampling.frequency_penalty = 2.0f;
  freq.sampling.presence_penalty = 2.0f;
  const int64_t with_freq = count77(RunAlone(*e, freq));
  EXPECT_LT(with_freq, 6);
  EXPECT_GE(with_freq, 1);
  EngineRequest rep = pushed;
  rep.id = "rep";
  rep.sampling.repetition_penalty = 50.0f;
  EXPECT_EQ(count77(RunAlone(*e, rep)), 1);  // its (positive) logit / 50 after the first time

  auto sink = std::make_shared<CollectingSink>();
  struct Bad {
    std::function<void(EngineRequest&)> set;
    std::string needle;
  };
  const std::vector<Bad> bad = {
      {[](EngineRequest& r) { r.sampling.min_p = 1.5f; }, "min_p"},
      {[](EngineRequest& r) { r.sampling.repetition_penalty = 0.0f; }, "repetition_penalty"},
      {[](EngineRequest& r) { r.sampling.presence_penalty = 3.0f; }, "presence_penalty"},
      {[](EngineRequest& r) { r.sampling.frequency_penalty = std::nanf(""); }, "frequency_penalty"},
      {[](EngineRequest& r) {
         r.sampling.logit_bias = {{100000, 1.0f}};
       },
       "logit_bias"},
      {[](EngineRequest& r) {
         r.sampling.logit_bias = {{1, 1000.0f}};
       },
       "logit_bias"},
      {[](EngineRequest& r) { r.min_tokens = 7; }, "min_tokens"},
      {[](EngineRequest& r) { r.logprobs = 21; }, "logprobs"},
      {[](EngineRequest& r) { r.stop_token_ids = std::vector<int32_t>(129, 1); }, "stop_token_ids"},
      {[](EngineRequest& r) { r.stop = {"x"}; }, "tokenizer"},  // the tiny model has none
  };
  for (const Bad& b : bad) {
    EngineRequest r = testing::GreedyRequest("bad", prompt, 6);
    b.set(r);
    absl::Status s = e->Submit(r, sink);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.needle;
    EXPECT_NE(s.message().find(b.needle), std::string::npos) << s;
  }
}

TEST(ModelLoaderTest, MissingTruncatedAndCorruptFilesGiveErrorsNamingTheFile) {
  const std::string dir = ::testing::TempDir() + "/kvasir_bad_models";
  std::filesystem::create_directories(dir);
  auto missing = LoadModel(dir + "/nope.gguf");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope.gguf"), std::string::npos);

  const std::string corrupt = dir + "/corrupt.gguf";
  {
    std::ofstream out(corrupt, std::ios::binary);
    out << "GGUF";
    std::mt19937 rng(3);
    for (int i = 0; i < 4096; ++i) out.put(static_cast<char>(rng()));
  }
  auto c = LoadModel(corrupt);
  EXPECT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("corrupt.gguf"), std::string::npos) << c.status();

  const std::string not_gguf = dir + "/text.bin";
  std::ofstream(not_gguf) << "hello, not a model";
  auto t = LoadModel(not_gguf);
  EXPECT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("text.bin"), std::string::npos) << t.status();

  auto empty_dir = LoadModel(dir);
  EXPECT_FALSE(empty_dir.ok());
  EXPECT_NE(empty_dir.status().message().find("config.json"), std::string::npos)
      << empty_dir.status();

  const std::string model = testing::DefaultModelPath();
  if (model.empty()) GTEST_SKIP() << "default model not fetched (run tools/setup.sh)";
  const std::string truncated = dir + "/truncated.gguf";
  {
    std::ifstream in(model, std::ios::binary);
    std::vector<char> head(1 << 20);
    in.read(head.data(), head.size());
    std::ofstream(truncated, std::ios::binary).write(head.data(), in.gcount());
  }
  auto tr = LoadModel(truncated);
  EXPECT_FALSE(tr.ok());
  EXPECT_NE(tr.status().message().find("truncated.gguf"), std::string::npos) << tr.status();
}

// A bf16 checkpoint on the CPU: its vectors (norm weights, biases) are read as what they are. The
// same made-up weights in float32 and in bf16 (rounded from the same values) give logits within
// bf16 rounding of each other; misread norm weights would give unrelated ones.
TEST(EngineTest, Bf16WeightsIncludingNormsGiveTheFloat32ModelsLogits) {
  auto config = ParseHfConfig(testing::FixturePath("models/qwen2_tiny/config.json"));
  ASSERT_TRUE(config.ok()) << config.status();
  std::vector<std::vector<float>> logits;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    DummyWeightSource weights("dummy", dtype);
    auto runner = ModelRunner::Create(
        *config, weights, {.num_threads = 2, .block_size = 16, .kv_cache_bytes = 1 << 20});
    ASSERT_TRUE(runner.ok()) << runner.status();
    logits.push_back(testing::AllLogits(**runner, {1, 5, 9, 200, 3, 77}));
  }
  ASSERT_EQ(logits[0].size(), logits[1].size());
  double num = 0, den = 0;
  for (size_t i = 0; i < logits[0].size(); ++i) {
    num += (logits[0][i] - logits[1][i]) * (logits[0][i] - logits[1][i]);
    den += logits[0][i] * logits[0][i];
  }
  EXPECT_GT(den, 0.0);
  EXPECT_LE(std::sqrt(num / den), 2e-2);
}

}  // namespace
}  // namespace kvasir
