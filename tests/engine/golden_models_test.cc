// Tiny random-weight Llama, Qwen2, Qwen3, Mixtral, Qwen3-MoE, DeepSeek-V2 and DeepSeek-V3 models
// made with Hugging Face transformers
// (tools/gen_golden_models.py): our logits and greedy continuations against theirs.
#include <cmath>
#include <memory>

#include "engine/engine.h"
#include "engine/model_loader.h"
#include "engine/model_runner.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixtures.h"

namespace kvasir {
namespace {

using testing::AllLogits;
using testing::FixturePath;
using testing::ReadJson;

struct GoldenCase {
  std::string model_dir;  // under tests/fixtures/models
  std::string reference;  // reference.json of the same weights
  friend void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.model_dir; }
};

class GoldenModelTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenModelTest, LogitsMatchTransformersWithin1e3) {
  auto model = LoadModel(FixturePath("models/" + GetParam().model_dir));
  ASSERT_TRUE(model.ok()) << model.status();
  auto runner =
      ModelRunner::Create(model->config, *model->weights,
                          {.num_threads = 2, .block_size = 16, .kv_cache_bytes = 8 << 20});
  ASSERT_TRUE(runner.ok()) << runner.status();
  const nlohmann::json ref = ReadJson(FixturePath("models/" + GetParam().reference));
  const int64_t vocab = ref["vocab_size"];
  ASSERT_EQ(vocab, model->config.vocab_size);
  for (const auto& c : ref["cases"]) {
    const std::vector<int32_t> prompt = c["prompt_ids"];
    const std::vector<float> logits = AllLogits(**runner, prompt);
    ASSERT_EQ(logits.size(), prompt.size() * vocab);
    double max_diff = 0.0;
    for (size_t t = 0; t < prompt.size(); ++t) {
      for (int64_t v = 0; v < vocab; ++v) {
        const double expected = c["logits"][t][v];
        max_diff = std::max(max_diff, std::abs(expected - logits[t * vocab + v]));
      }
    }
    EXPECT_LE(max_diff, 1e-3) << "prompt of " << prompt.size() << " tokens";
    std::printf("%s: prompt of %zu tokens: max |dlogit| = %.3g\n", GetParam().model_dir.c_str(),
                prompt.size(), max_diff);
  }
}

// Every prompt at once through the engine loop (batched, paged, chunked): each continuation must
// equal transformers' greedy one. Then all of them again, now starting from their cached
// prefixes (prefix caching is on by default).
TEST_P(GoldenModelTest, GreedyContinuationsThroughTheEngineMatchTransformers) {
  EngineOptions options;
  options.model_path = FixturePath("models/" + GetParam().model_dir);
  options.num_threads = 2;
  options.max_batched_tokens = 24;  // forces the 33-token prompt into chunks
  options.max_num_seqs = 8;
  options.block_size = 4;
  auto engine = Engine::Create(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  const nlohmann::json ref = ReadJson(FixturePath("models/" + GetParam().reference));
  for (int round = 0; round < 2; ++round) {
    const std::vector<RequestOutput> outs =
        testing::RunGoldenCases(**engine, ref, "golden-" + std::to_string(round));
    ASSERT_EQ(outs.size(), ref["cases"].size());
    for (size_t i = 0; i < outs.size(); ++i) {
      const auto& c = ref["cases"][i];
      EXPECT_EQ(outs[i].finish_reason, FinishReason::kLength);
      EXPECT_EQ(outs[i].token_ids, c["greedy_ids"].get<std::vector<int32_t>>())
          << "prompt of " << c["prompt_ids"].size() << " tokens, round " << round;
    }
  }
  // The second round reused the first one's blocks: the 7-, 16- and 33-token prompts have
  // 1 + 3 + 8 full blocks of 4 before their last token.
  EXPECT_GE((*engine)->GetLoads().prefix_hit_tokens, 4 * (1 + 3 + 8));
}

INSTANTIATE_TEST_SUITE_P(
    Architectures, GoldenModelTest,
    ::testing::Values(GoldenCase{"llama_tiny", "llama_tiny/reference.json"},
                      GoldenCase{"qwen2_tiny", "qwen2_tiny/reference.json"},
                      GoldenCase{"qwen3_tiny", "qwen3_tiny/reference.json"},
                      GoldenCase{"qwen3_tiny_sharded", "qwen3_tiny/reference.json"},
                      GoldenCase{"mixtral_tiny", "mixtral_tiny/reference.json"},
                      GoldenCase{"qwen3_moe_tiny", "qwen3_moe_tiny/reference.json"},
                      GoldenCase{"deepseek_v2_tiny", "deepseek_v2_tiny/reference.json"},
                      GoldenCase{"deepseek_v2_lite_tiny", "deepseek_v2_lite_tiny/reference.json"},
                      GoldenCase{"deepseek_v3_tiny", "deepseek_v3_tiny/reference.json"}),
    [](const auto& info) { return info.param.model_dir; });

}  // namespace
}  // namespace kvasir
