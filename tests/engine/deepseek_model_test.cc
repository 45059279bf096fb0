// DeepSeek-V3's released config.json (bench/models/deepseek_v3): what it parses to, and the KV
// cache its model asks for (MLA: one latent and one RoPE key per token per layer). And the
// engine path of the absorbed form: a prompt fed one token per step (every step a decode, so
// every step absorbed) gives the logits of the same prompt prefilled at once (expanded).
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>

#include "engine/engine.h"
#include "engine/model_config.h"
#include "engine/model_loader.h"
#include "engine/model_runner.h"
#include "engine/models/model.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixtures.h"

namespace kvasir {
namespace {

using testing::AllLogits;
using testing::FixturePath;

absl::StatusOr<ModelConfig> DeepseekV3Config() {
  return ParseHfConfig(std::string(KVASIR_BENCH_MODELS_DIR) + "/deepseek_v3/config.json");
}

TEST(DeepseekConfigTest, ReleasedV3ConfigParsesToMlaAndGroupLimitedSigmoidRouting) {
  auto c = DeepseekV3Config();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "DeepseekV3ForCausalLM");
  EXPECT_EQ(c->num_layers, 61);  // the MTP layer (num_nextn_predict_layers) is not counted
  EXPECT_EQ(c->mla.q_lora_rank, 1536);
  EXPECT_EQ(c->mla.kv_lora_rank, 512);
  EXPECT_EQ(c->mla.nope_head_dim, 128);
  EXPECT_EQ(c->mla.rope_head_dim, 64);
  EXPECT_EQ(c->mla.v_head_dim, 128);
  EXPECT_EQ(c->rotary_dim, 64);
  EXPECT_EQ(c->rope_layout, RopeLayout::kInterleaved);
  EXPECT_EQ(c->rope_scaling.type, "yarn");
  EXPECT_DOUBLE_EQ(c->rope_scaling.attention_factor, 1.0);  // mscale == mscale_all_dim
  const double mscale = 0.1 * std::log(40.0) + 1.0;
  EXPECT_NEAR(c->mla.softmax_scale, mscale * mscale / std::sqrt(192.0), 1e-12);
  const MoeRouting& r = c->moe.routing;
  EXPECT_EQ(r.num_experts, 256);
  EXPECT_EQ(r.top_k, 8);
  EXPECT_EQ(r.scoring, MoeScoring::kSigmoid);
  EXPECT_EQ(r.num_groups, 8);
  EXPECT_EQ(r.topk_groups, 4);
  EXPECT_EQ(r.group_score, MoeGroupScore::kTop2Sum);
  EXPECT_TRUE(r.renormalize);
  EXPECT_FLOAT_EQ(r.scaling, 2.5f);
  EXPECT_EQ(c->moe.expert_intermediate_size, 2048);
  EXPECT_EQ(c->moe.num_shared_experts, 1);
  EXPECT_FALSE(IsMoeLayer(*c, 2));
  EXPECT_TRUE(IsMoeLayer(*c, 3));
  EXPECT_TRUE(IsMoeLayer(*c, 60));
}

// Counted from the parsed config the way the model loads it: 671B parameters, 37B active per
// token (DeepSeek's published figures; the MTP layer is not among the 61).
TEST(DeepseekConfigTest, ReleasedV3ConfigHasThePublishedParameterCounts) {
  auto c = DeepseekV3Config();
  ASSERT_TRUE(c.ok()) << c.status();
  const int64_t h = c->hidden_size, heads = c->num_heads, qr = c->mla.q_lora_rank;
  const int64_t rank = c->mla.kv_lora_rank, rope = c->mla.rope_head_dim;
  const int64_t qk = c->mla.nope_head_dim + rope, v = c->mla.v_head_dim;
  const int64_t attn = qr * h + qr + heads * qk * qr + (rank + rope) * h + rank +
                       heads * (c->mla.nope_head_dim + v) * rank + h * heads * v + 2 * h;
  const int64_t expert = 3 * c->moe.expert_intermediate_size * h;
  const int64_t experts = c->moe.routing.num_experts, k = c->moe.routing.top_k;
  const int64_t shared = c->moe.num_shared_experts * expert + experts * h + experts;
  int64_t total = 2 * c->vocab_size * h + h, active = total;
  for (int64_t i = 0; i < c->num_layers; ++i) {
    const int64_t mlp = IsMoeLayer(*c, i) ? 0 : 3 * c->intermediate_size * h;
    total += attn + mlp + (mlp == 0 ? shared + experts * expert : 0);
    active += attn + mlp + (mlp == 0 ? shared + k * expert : 0);
  }
  EXPECT_NEAR(static_cast<double>(total) / 1e9, 671, 1);
  EXPECT_NEAR(static_cast<double>(active) / 1e9, 37, 0.6);
}

// The CPU backend's cache is float32: (512 + 64) values x 61 layers x 4 bytes = 140,544 bytes per
// token, against 128 heads x (192 + 128) x 61 x 4 = 9,994,240 for K and V per head.
TEST(DeepseekConfigTest, KvBytesPerTokenAreLatentPlusRopeKeyTimesLayersTimesDtypeSize) {
  auto c = DeepseekV3Config();
  ASSERT_TRUE(c.ok()) << c.status();
  auto model = ModelRegistry::Get().Create(*c);
  ASSERT_TRUE(model.ok()) << model.status();
  KvCacheSpec spec = (*model)->KvSpec();
  EXPECT_EQ(spec.layout, KvLayout::kMlaLatent);
  EXPECT_EQ(spec.dtype, DType::kF32);
  EXPECT_EQ(spec.bytes_per_token(), (512 + 64) * 61 * 4);
  EXPECT_EQ(spec.bytes_per_token(), 140544);
  spec.dtype = DType::kBF16;  // what a GPU cache would hold
  EXPECT_EQ(spec.bytes_per_token(), (512 + 64) * 61 * 2);

  KvCacheSpec mha;
  mha.num_layers = 61;
  mha.num_kv_heads = 128;
  mha.head_dim = 128 + 64;
  mha.v_head_dim = 128;
  EXPECT_EQ(mha.bytes_per_token(), int64_t{128} * (192 + 128) * 61 * 4);
}

// ModelRunner sizes the pool from the model's bytes per token: the same byte budget holds
// (kv_heads x (K + V)) / (latent + rope) times more tokens than a K/V cache would.
TEST(DeepseekConfigTest, RunnerSizesThePoolFromTheLatentBytes) {
  auto model = LoadModel(FixturePath("models/deepseek_v3_tiny"));
  ASSERT_TRUE(model.ok()) << model.status();
  auto runner =
      ModelRunner::Create(model->config, *model->weights,
                          {.num_threads = 1, .block_size = 16, .kv_cache_bytes = 1 << 20});
  ASSERT_TRUE(runner.ok()) << runner.status();
  const KvCacheSpec& spec = (*runner)->kv_spec();
  EXPECT_EQ(spec.bytes_per_token(), (32 + 8) * 3 * 4);  // kv_lora_rank 32, rope 8, 3 layers
  EXPECT_EQ(spec.num_blocks, (1 << 20) / ((32 + 8) * 3 * 4 * 16));
}

// What the engine reports (GetModelInfo): the latent's bytes per token, and the weight type read
// from q_a_proj (there is no q_proj with q_lora_rank).
TEST(DeepseekModelTest, ModelInfoReportsLatentBytesAndWeightType) {
  EngineOptions o;
  o.model_path = FixturePath("models/deepseek_v3_tiny");
  o.num_threads = 1;
  auto e = Engine::Create(o);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)->model_info().kv_bytes_per_token, (32 + 8) * 3 * 4);
  EXPECT_EQ((*e)->model_info().weight_dtype, "F32");
}

// One token per step: every step is a decode (absorbed form) over the latents the earlier steps
// wrote; the whole prompt at once takes the expanded form. Same logits within float rounding.
TEST(DeepseekModelTest, TokenByTokenAbsorbedDecodeMatchesExpandedPrefill) {
  for (const char* dir : {"deepseek_v2_tiny", "deepseek_v2_lite_tiny", "deepseek_v3_tiny"}) {
    auto model = LoadModel(FixturePath(std::string("models/") + dir));
    ASSERT_TRUE(model.ok()) << model.status();
    auto runner =
        ModelRunner::Create(model->config, *model->weights,
                            {.num_threads = 2, .block_size = 4, .kv_cache_bytes = 1 << 20});
    ASSERT_TRUE(runner.ok()) << runner.status();
    const std::vector<int32_t> prompt = {5, 77, 3, 200, 18, 64, 9, 150, 31, 2, 99, 180, 7};
    const int64_t vocab = model->config.vocab_size;
    const std::vector<float> expanded = AllLogits(**runner, prompt);
    const std::vector<float> absorbed = testing::TokenByTokenLogits(**runner, prompt);
    ASSERT_EQ(expanded.size(), absorbed.size());
    double worst = 0;
    for (size_t i = vocab; i < expanded.size(); ++i) {  // row 0: both a single query
      worst = std::max(worst, static_cast<double>(std::abs(expanded[i] - absorbed[i])));
    }
    EXPECT_LE(worst, 1e-4) << dir;
    EXPECT_GT(worst, 0.0) << dir << ": the two forms should not round identically";
    std::printf("%s: absorbed (token by token) vs expanded (prefill): max |dlogit| = %.3g\n", dir,
                worst);
  }
}

// The released config scaled down (hidden 128, 2 layers: one dense, one MoE, vocab 512; still
// 256 experts in 8 groups, top-8 of the best 4 groups, YaRN) runs through the engine with dummy
// weights, and twice the same.
TEST(DeepseekDummyWeightsTest, ScaledDownV3ConfigRunsWithDummyWeights) {
  nlohmann::json cfg =
      testing::ReadJson(std::string(KVASIR_BENCH_MODELS_DIR) + "/deepseek_v3/config.json");
  cfg["hidden_size"] = 128;
  cfg["num_hidden_layers"] = 2;
  cfg["first_k_dense_replace"] = 1;
  cfg["num_attention_heads"] = 4;
  cfg["num_key_value_heads"] = 4;
  cfg["q_lora_rank"] = 96;
  cfg["kv_lora_rank"] = 64;
  cfg["qk_nope_head_dim"] = 32;
  cfg["qk_rope_head_dim"] = 16;
  cfg["v_head_dim"] = 32;
  cfg["vocab_size"] = 512;
  cfg["intermediate_size"] = 256;
  cfg["moe_intermediate_size"] = 32;
  cfg["torch_dtype"] = "float32";
  cfg.erase("quantization_config");
  testing::ExpectDummyModelRunsDeterministically(cfg, "mla_dummy", [](const Engine& e) {
    EXPECT_EQ(e.model_info().kv_bytes_per_token, (64 + 16) * 2 * 4);
  });
}

}  // namespace
}  // namespace kvasir
