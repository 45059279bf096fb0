// The engine on the CUDA backend (label gpu): the tiny Hugging Face models of every architecture
// (tools/gen_golden_models.py) against transformers' float32 logits and greedy continuations, and
// against the CPU backend; the memory planner; CUDA graphs against eager decode. Without a usable
// CUDA device (or in a build without the CUDA backend) every test is skipped, visibly.
//
// bf16 tolerances (device/METHOD.md): a relative error ||got - ref|| / ||ref|| of the logits under
// 3e-2 (bf16 storage through every layer of a 2-layer model), and greedy continuations compared
// as vLLM's check_logprobs_close does: equal until a position where the two choices differ, where
// each must be the other's near-tie (inside the other's top 5 and within 0.1 nats of its best);
// the rest of that continuation is not compared, because it continues from another token.
#include <algorithm>
#include <cmath>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/model_loader.h"
#include "engine/model_runner.h"
#include "engine/ops.h"
#include "engine/weights/dummy_weights.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixtures.h"

namespace kvasir {
namespace {

using testing::AllLogits;
using testing::CollectingSink;
using testing::FixturePath;
using testing::ReadJson;

constexpr double kLogitsRelTol = 3e-2;
constexpr float kNearTieNats = 0.1f;

// Empty when the CUDA backend can run here; otherwise why not.
std::string CudaUnavailable() {
  static const std::string why = [] {
    auto ops = MakeCudaOps({.max_num_seqs = 1, .max_batched_tokens = 1, .max_model_len = 1});
    return ops.ok() ? std::string() : "no CUDA device: " + std::string(ops.status().message());
  }();
  return why;
}

#define SKIP_WITHOUT_CUDA() \
  if (const std::string why = CudaUnavailable(); !why.empty()) GTEST_SKIP() << why

double RelError(const std::vector<float>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(got[i]) - ref[i];
    if (std::isnan(got[i])) return INFINITY;
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

struct GoldenCase {
  std::string model_dir;
  std::string reference;
  friend void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.model_dir; }
};

RunnerOptions CudaRunner() {
  RunnerOptions o;
  o.device = Device::kCuda;
  o.max_num_seqs = 8;
  o.max_batched_tokens = 256;
  o.max_model_len = 256;
  o.block_size = 16;
  o.kv_cache_bytes = 16 << 20;
  return o;
}

class CudaGoldenTest : public ::testing::TestWithParam<GoldenCase> {};

// Every prompt in one step, logits for every position: against transformers (float32) and
// against the CPU backend on the same weights.
TEST_P(CudaGoldenTest, LogitsMatchTransformersAndTheCpuBackend) {
  SKIP_WITHOUT_CUDA();
  auto model = LoadModel(FixturePath("models/" + GetParam().model_dir));
  ASSERT_TRUE(model.ok()) << model.status();
  auto gpu = ModelRunner::Create(model->config, *model->weights, CudaRunner());
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_NE((*gpu)->Describe().find("cuda"), std::string::npos) << (*gpu)->Describe();
  auto cpu = ModelRunner::Create(model->config, *model->weights,
                                 {.num_threads = 2, .block_size = 16, .kv_cache_bytes = 8 << 20});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  const nlohmann::json ref = ReadJson(FixturePath("models/" + GetParam().reference));
  const int64_t vocab = ref["vocab_size"];
  for (const auto& c : ref["cases"]) {
    const std::vector<int32_t> prompt = c["prompt_ids"];
    const std::vector<float> got = AllLogits(**gpu, prompt);
    ASSERT_EQ(got.size(), prompt.size() * vocab);
    std::vector<double> expected;
    for (const auto& row : c["logits"]) {
      for (double v : row) expected.push_back(v);
    }
    const std::vector<float> on_cpu = AllLogits(**cpu, prompt);
    const std::vector<double> cpu_ref(on_cpu.begin(), on_cpu.end());
    const double vs_hf = RelError(got, expected), vs_cpu = RelError(got, cpu_ref);
    EXPECT_LE(vs_hf, kLogitsRelTol) << "prompt of " << prompt.size() << " tokens";
    EXPECT_LE(vs_cpu, kLogitsRelTol) << "prompt of " << prompt.size() << " tokens";
    std::printf("%s: prompt of %zu tokens: rel. error %.2e vs transformers, %.2e vs CPU\n",
                GetParam().model_dir.c_str(), prompt.size(), vs_hf, vs_cpu);
  }
}

// Where the GPU's greedy continuation first differs from transformers', the two tokens must be
// near-ties in the GPU's own distribution. Returns the number of tokens that matched.
int CompareGreedy(const RequestOutput& out, const std::vector<int32_t>& expected,
                  const std::string& what) {
  EXPECT_EQ(out.token_ids.size(), expected.size()) << what;
  EXPECT_EQ(out.logprobs.size(), out.token_ids.size()) << what;
  const size_t n = std::min({out.token_ids.size(), expected.size(), out.logprobs.size()});
  for (size_t i = 0; i < n; ++i) {
    if (out.token_ids[i] == expected[i]) continue;
    const TokenLogprob& lp = out.logprobs[i];
    bool found = false;
    for (const auto& [id, logprob] : lp.top) {
      if (id != expected[i]) continue;
      found = true;
      EXPECT_LE(lp.logprob - logprob, kNearTieNats)
          << what << ": token " << i << " is " << out.token_ids[i] << ", transformers chose "
          << expected[i] << ", which is not a near-tie here";
    }
    EXPECT_TRUE(found) << what << ": token " << i << " is " << out.token_ids[i]
                       << ", transformers chose " << expected[i] << ", not in our top 5";
    return static_cast<int>(i);
  }
  return static_cast<int>(n);
}

// Every prompt at once through the engine loop (batched, paged, chunked, prefix-cached, decode
// steps replayed from CUDA graphs or run eagerly), twice (the second round starts from cached
// prefixes).
void RunGreedyThroughEngine(const GoldenCase& param, bool cuda_graphs) {
  EngineOptions options;
  options.model_path = FixturePath("models/" + param.model_dir);
  options.device = Device::kCuda;
  options.cuda_graphs = cuda_graphs;
  options.max_batched_tokens = 24;  // forces the 33-token prompt into chunks
  options.max_num_seqs = 8;
  options.block_size = 4;
  options.kv_cache_bytes = 16 << 20;
  auto engine = Engine::Create(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  const nlohmann::json ref = ReadJson(FixturePath("models/" + param.reference));
  int matched = 0, total = 0;
  for (int round = 0; round < 2; ++round) {
    const std::vector<RequestOutput> outs =
        testing::RunGoldenCases(**engine, ref, "golden-" + std::to_string(round), 5);
    ASSERT_EQ(outs.size(), ref["cases"].size());
    for (size_t i = 0; i < outs.size(); ++i) {
      const auto& c = ref["cases"][i];
      EXPECT_EQ(outs[i].finish_reason, FinishReason::kLength);
      const auto expected = c["greedy_ids"].get<std::vector<int32_t>>();
      matched +=
          CompareGreedy(outs[i], expected,
                        param.model_dir + ", prompt of " + std::to_string(c["prompt_ids"].size()) +
                            " tokens, round " + std::to_string(round));
      total += static_cast<int>(expected.size());
    }
  }
  std::printf("%s (graphs %s): %d of %d greedy tokens equal to transformers' before a near-tie\n",
              param.model_dir.c_str(), cuda_graphs ? "on" : "off", matched, total);
}

TEST_P(CudaGoldenTest, GreedyContinuationsWithCudaGraphs) {
  SKIP_WITHOUT_CUDA();
  RunGreedyThroughEngine(GetParam(), true);
}

TEST_P(CudaGoldenTest, GreedyContinuationsEager) {
  SKIP_WITHOUT_CUDA();
  RunGreedyThroughEngine(GetParam(), false);
}

INSTANTIATE_TEST_SUITE_P(
    Architectures, CudaGoldenTest,
    ::testing::Values(GoldenCase{"llama_tiny", "llama_tiny/reference.json"},
                      GoldenCase{"qwen2_tiny", "qwen2_tiny/reference.json"},
                      GoldenCase{"qwen3_tiny", "qwen3_tiny/reference.json"},
                      GoldenCase{"mixtral_tiny", "mixtral_tiny/reference.json"},
                      GoldenCase{"qwen3_moe_tiny", "qwen3_moe_tiny/reference.json"},
                      GoldenCase{"deepseek_v2_tiny", "deepseek_v2_tiny/reference.json"},
                      GoldenCase{"deepseek_v2_lite_tiny", "deepseek_v2_lite_tiny/reference.json"},
                      GoldenCase{"deepseek_v3_tiny", "deepseek_v3_tiny/reference.json"}),
    [](const auto& info) { return info.param.model_dir; });

// A prompt prefilled alone in chunks that sample nothing (no logits rows): each chunk's step must
// finish before the next one's metadata replaces it.
TEST(CudaEngine, LongPromptAloneInChunksMatchesTransformers) {
  SKIP_WITHOUT_CUDA();
  for (const std::string name : {"llama_tiny", "deepseek_v3_tiny"}) {
    EngineOptions options;
    options.model_path = FixturePath("models/" + name);
    options.device = Device::kCuda;
    options.max_batched_tokens = 8;  // the 33-token prompt takes five steps
    options.max_num_seqs = 8;
    options.block_size = 4;
    options.kv_cache_bytes = 16 << 20;
    auto engine = Engine::Create(options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    const nlohmann::json ref = ReadJson(FixturePath("models/" + name + "/reference.json"));
    const nlohmann::json* longest = nullptr;
    for (const auto& c : ref["cases"]) {
      if (longest == nullptr || c["prompt_ids"].size() > (*longest)["prompt_ids"].size()) {
        longest = &c;
      }
    }
    ASSERT_NE(longest, nullptr);
    ASSERT_GT((*longest)["prompt_ids"].size(), 3u * options.max_batched_tokens);
    EngineRequest r;
    r.id = "alone";
    r.prompt_ids = (*longest)["prompt_ids"].get<std::vector<int32_t>>();
    r.max_tokens = static_cast<int32_t>((*longest)["greedy_ids"].size());
    r.ignore_eos = true;
    r.logprobs = 5;
    auto sink = std::make_shared<CollectingSink>();
    ASSERT_TRUE((*engine)->Submit(r, sink).ok());
    const RequestOutput out = sink->Wait();
    CompareGreedy(out, (*longest)["greedy_ids"].get<std::vector<int32_t>>(), name + ", alone");
  }
}

// A decode step replayed from its CUDA graph computes what the eager run of the same padded step
// computed, bit for bit (same kernels, shapes, plans and addresses); and the eager backend (its
// decode planned for the batch's own contexts) agrees to bf16 accuracy.
TEST(CudaGraphs, ReplaysEqualTheEagerRunOfTheSameStep) {
  SKIP_WITHOUT_CUDA();
  auto model = LoadModel(FixturePath("models/qwen3_moe_tiny"));
  ASSERT_TRUE(model.ok()) << model.status();
  RunnerOptions with = CudaRunner(), without = CudaRunner();
  without.cuda_graphs = false;
  auto graphs = ModelRunner::Create(model->config, *model->weights, with);
  auto eager = ModelRunner::Create(model->config, *model->weights, without);
  ASSERT_TRUE(graphs.ok()) << graphs.status();
  ASSERT_TRUE(eager.ok()) << eager.status();
  // Three sequences (padded to a bucket of 4) decode their 20th, 9th and 1st token over
  // contexts prefilled token by token on both runners.
  const std::vector<std::vector<int32_t>> prompts = {
      {3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26, 43, 38, 32, 79, 50, 28, 84, 19},
      {27, 18, 28, 18, 28, 45, 90, 45, 23},
      {101}};
  const int32_t bs = with.block_size;
  StepBatch decode;
  decode.query_start.push_back(0);
  decode.block_table_indptr.push_back(0);
  int32_t next_block = 0;
  for (size_t s = 0; s < prompts.size(); ++s) {
    const int32_t n = static_cast<int32_t>(prompts[s].size());
    const int32_t pages = (n + bs - 1) / bs;
    std::vector<int32_t> blocks;
    for (int32_t p = 0; p < pages; ++p) blocks.push_back(next_block++);
    // Prefill the first n - 1 tokens one at a time (those steps are single-sequence decodes).
    for (auto* runner : {&**graphs, &**eager}) {
      StepBatch one;
      one.seqs.resize(1);
      one.query_start = {0, 1};
      one.block_table_indptr = {0, pages};
      one.block_table = blocks;
      one.logits_indices = {0};
      for (int32_t i = 0; i + 1 < n; ++i) {
        one.seqs[0] = {.uid = s + 1, .start_position = i, .num_new_tokens = 1, .samples = true};
        one.token_ids = {prompts[s][i]};
        one.positions = {i};
        one.slot_mapping = {int64_t{blocks[i / bs]} * bs + i % bs};
        one.seq_lens = {i + 1};
        runner->Execute(one);
      }
    }
    const int32_t i = n - 1;
    decode.seqs.push_back(
        {.uid = s + 1, .start_position = i, .num_new_tokens = 1, .samples = true});
    decode.token_ids.push_back(prompts[s][i]);
    decode.positions.push_back(i);
    decode.slot_mapping.push_back(int64_t{blocks[i / bs]} * bs + i % bs);
    decode.query_start.push_back(static_cast<int32_t>(s) + 1);
    decode.seq_lens.push_back(n);
    decode.block_table.insert(decode.block_table.end(), blocks.begin(), blocks.end());
    decode.block_table_indptr.push_back(static_cast<int32_t>(decode.block_table.size()));
    decode.logits_indices.push_back(static_cast<int32_t>(s));
  }
  // The step rewrites each sequence's last slot with the same K/V, so reruns see the same cache.
  std::vector<std::vector<float>> runs;
  for (int run = 0; run < 4; ++run) {  // eager, record + replay, replay, replay
    const std::span<const float> l = (*graphs)->Execute(decode);
    runs.emplace_back(l.begin(), l.end());
  }
  ASSERT_EQ(runs[0].size(), prompts.size() * model->config.vocab_size);
  for (int run = 1; run < 4; ++run) EXPECT_EQ(runs[run], runs[0]) << "run " << run;
  const std::span<const float> e = (*eager)->Execute(decode);
  EXPECT_LE(RelError(runs[3], std::vector<double>(e.begin(), e.end())), 1e-2);
}

// The logit processors reach the device sampler (as lists): a bias makes a token win every step;
// presence and frequency penalties, or a repetition penalty, then push it back; a stop token
// banned before min_tokens is never sampled early.
TEST(CudaEngine, LogitProcessorsApplyOnTheDevice) {
  SKIP_WITHOUT_CUDA();
  EngineOptions options;
  options.model_path = FixturePath("models/llama_tiny");
  options.device = Device::kCuda;
  options.max_batched_tokens = 64;
  options.max_num_seqs = 8;
  options.kv_cache_bytes = 16 << 20;
  auto engine = Engine::Create(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto run = [&](EngineRequest r) {
    auto sink = std::make_shared<CollectingSink>();
    EXPECT_TRUE((*engine)->Submit(r, sink).ok());
    return sink->Wait();
  };
  auto count77 = [](const RequestOutput& o) {
    return std::count(o.token_ids.begin(), o.token_ids.end(), 77);
  };
  EngineRequest pushed = testing::GreedyRequest("pushed", {9, 9, 9}, 6);
  pushed.sampling.logit_bias = {{77, 100.0f}};
  EXPECT_EQ(count77(run(pushed)), 6);
  EngineRequest freq = pushed;
  freq.id = "freq";
  freq.sampling.logit_bias = {{77, 12.0f}};
  freq.sampling.frequency_penalty = 2.0f;
  freq.sampling.presence_penalty = 2.0f;
  const RequestOutput with_freq = run(freq);
  EXPECT_LT(count77(with_freq), 6);
  EngineRequest rep = pushed;
  rep.id = "rep";
  rep.sampling.logit_bias = {{77, 12.0f}};
  rep.sampling.repetition_penalty = 50.0f;
  EXPECT_LE(count77(run(rep)), 1);
  // 77 as a stop token that the bias would pick at once: banned until min_tokens.
  EngineRequest banned = pushed;
  banned.id = "banned";
  banned.ignore_eos = false;
  banned.stop_token_ids = {77};
  banned.min_tokens = 4;
  const RequestOutput out = run(banned);
  ASSERT_EQ(out.token_ids.size(), 5u);
  EXPECT_EQ(count77(out), 1);
  EXPECT_EQ(out.token_ids.back(), 77);
  EXPECT_EQ(out.finish_reason, FinishReason::kStop);
}

// The KV pool takes what the utilization limit leaves: a larger limit, a larger pool.
TEST(CudaMemoryPlanner, KvPoolGrowsWithTheUtilizationLimit) {
  SKIP_WITHOUT_CUDA();
  auto model = LoadModel(FixturePath("models/llama_tiny"));
  ASSERT_TRUE(model.ok()) << model.status();
  std::vector<int64_t> blocks;
  for (double utilization : {0.02, 0.04}) {
    RunnerOptions o = CudaRunner();
    o.kv_cache_bytes = 0;
    o.block_size = 256;  // keeps the block count of a tiny model's pool small
    o.gpu_memory_utilization = utilization;
    auto runner = ModelRunner::Create(model->config, *model->weights, o);
    ASSERT_TRUE(runner.ok()) << runner.status();
    blocks.push_back((*runner)->kv_spec().num_blocks);
    EXPECT_EQ((*runner)->kv_spec().dtype, DType::kBF16);
  }
  EXPECT_GT(blocks[0], 0);
  // Doubling the share adds the same again (what is in use does not change between the two).
  EXPECT_GT(blocks[1], blocks[0] * 3 / 2) << blocks[0] << " then " << blocks[1];
}

// A limit under what the weights and activations already use leaves no room for a block.
TEST(CudaMemoryPlanner, TooSmallALimitIsAClearError) {
  SKIP_WITHOUT_CUDA();
  auto model = LoadModel(FixturePath("models/llama_tiny"));
  ASSERT_TRUE(model.ok()) << model.status();
  RunnerOptions o = CudaRunner();
  o.kv_cache_bytes = 0;
  o.gpu_memory_utilization = 1e-6;
  auto runner = ModelRunner::Create(model->config, *model->weights, o);
  ASSERT_FALSE(runner.ok());
  EXPECT_NE(runner.status().message().find("KV cache"), std::string::npos) << runner.status();
}

// Dummy weights made on the device are the host's (bf16) values: the same model on both backends
// gives the same logits to bf16 accuracy (different weights would give unrelated logits).
TEST(CudaDummyWeights, MadeOnTheDeviceTheyAreTheHostsValues) {
  SKIP_WITHOUT_CUDA();
  const std::string config = FixturePath("models/qwen3_tiny/config.json");
  auto on_device = LoadModel(config, {.dummy_weights = true, .dummy_on_device = true});
  ASSERT_TRUE(on_device.ok()) << on_device.status();
  auto gpu = ModelRunner::Create(on_device->config, *on_device->weights, CudaRunner());
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  DummyWeightSource host("host dummy weights", DType::kBF16);
  auto cpu = ModelRunner::Create(on_device->config, host,
                                 {.num_threads = 2, .block_size = 16, .kv_cache_bytes = 8 << 20});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  const std::vector<int32_t> prompt = {1, 7, 42, 99, 3, 250, 17, 8, 64, 5};
  const std::vector<float> got = AllLogits(**gpu, prompt);
  const std::vector<float> want = AllLogits(**cpu, prompt);
  const double err = RelError(got, std::vector<double>(want.begin(), want.end()));
  EXPECT_LE(err, kLogitsRelTol);
  std::printf("dummy qwen3_tiny: rel. error %.2e between device-made and host-made weights\n", err);
}

}  // namespace
}  // namespace kvasir
