#include "engine/model_config.h"

#include <cmath>

#include "engine/weights/gguf.h"
#include "gtest/gtest.h"
#include "tests/weights/test_files.h"

namespace kvasir {
namespace {

using testing::GgufWriter;

absl::StatusOr<ModelConfig> ParseJson(const std::string& text) {
  const auto path = testing::TestDir() / "config.json";
  testing::WriteFile(path, text);
  return ParseHfConfig(path.string());
}

constexpr char kLlamaJson[] = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
  "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
  "max_position_embeddings": 8192, "rms_norm_eps": 1e-05, "rope_theta": 100000,
  "rope_scaling": null, "tie_word_embeddings": true, "bos_token_id": 1,
  "eos_token_id": 2, "torch_dtype": "bfloat16"})";

TEST(HfConfigTest, ParsesLlama) {
  auto c = ParseJson(kLlamaJson);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->vocab_size, 49152);
  EXPECT_EQ(c->hidden_size, 576);
  EXPECT_EQ(c->intermediate_size, 1536);
  EXPECT_EQ(c->num_layers, 30);
  EXPECT_EQ(c->num_heads, 9);
  EXPECT_EQ(c->num_kv_heads, 3);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->rotary_dim, 64);
  EXPECT_EQ(c->max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c->rope_theta, 100000);
  EXPECT_EQ(c->rope_scaling.type, "");
  EXPECT_EQ(c->rope_layout, RopeLayout::kNeox);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{2}));
  EXPECT_EQ(c->torch_dtype, "bfloat16");
}

TEST(HfConfigTest, AppliesTransformersDefaults) {
  auto c = ParseJson(R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "eos_token_id": [5, 7]})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->bos_token_id.has_value());
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{5, 7}));
}

TEST(HfConfigTest, Qwen2AlwaysHasQkvBias) {
  auto c = ParseJson(R"({"architectures": ["Qwen2ForCausalLM"], "vocab_size": 10,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "attention_bias": false})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->attention_bias);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_EQ(c->max_position_embeddings, 32768);
}

TEST(HfConfigTest, Qwen3HasQkNormAndExplicitHeadDim) {
  auto c = ParseJson(R"({"architectures": ["Qwen3ForCausalLM"], "vocab_size": 10,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
    "rope_theta": 1000000, "tie_word_embeddings": true})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->qk_norm);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->rotary_dim, 32);
}

TEST(HfConfigTest, MixtralRoutesTopTwoOfEightRenormalised) {
  auto c = ParseJson(R"({"architectures": ["MixtralForCausalLM"], "vocab_size": 32000,
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8,
    "num_experts_per_tok": 2, "output_router_logits": false, "router_aux_loss_coef": 0.02,
    "sliding_window": null})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_EQ(c->max_position_embeddings, 131072);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_EQ(c->moe.routing.num_experts, 8);
  EXPECT_EQ(c->moe.routing.top_k, 2);
  EXPECT_EQ(c->moe.routing.scoring, MoeScoring::kSoftmax);
  EXPECT_TRUE(c->moe.routing.renormalize);
  EXPECT_EQ(c->moe.routing.num_groups, 1);
  EXPECT_FLOAT_EQ(c->moe.routing.scaling, 1.0f);
  EXPECT_EQ(c->moe.expert_intermediate_size, 14336);
  for (int64_t i = 0; i < 32; ++i) EXPECT_TRUE(IsMoeLayer(*c, i));
}

TEST(HfConfigTest, Qwen3MoeSparseLayersAndDefaults) {
  auto c = ParseJson(R"({"architectures": ["Qwen3MoeForCausalLM"], "vocab_size": 151936,
    "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 6,
    "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128,
    "moe_intermediate_size": 768, "norm_topk_prob": true, "decoder_sparse_step": 2,
    "mlp_only_layers": [3]})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->qk_norm);
  EXPECT_EQ(c->moe.routing.num_experts, 128);
  EXPECT_EQ(c->moe.routing.top_k, 8);  // Qwen3MoeConfig's default
  EXPECT_TRUE(c->moe.routing.renormalize);
  EXPECT_EQ(c->moe.expert_intermediate_size, 768);
  // (i + 1) % 2 == 0 and i not in [3]: layers 1 and 5.
  std::vector<int64_t> sparse;
  for (int64_t i = 0; i < 6; ++i) {
    if (IsMoeLayer(*c, i)) sparse.push_back(i);
  }
  EXPECT_EQ(sparse, (std::vector<int64_t>{1, 5}));
  // transformers 5 spells the expert count num_local_experts; head_dim defaults to hidden/heads
  // (not Qwen3's 128) and norm_topk_prob to false.
  auto v5 = ParseJson(R"({"model_type": "qwen3_moe", "vocab_size": 10, "hidden_size": 64,
    "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_local_experts": 6, "num_experts_per_tok": 2})");
  ASSERT_TRUE(v5.ok()) << v5.status();
  EXPECT_EQ(v5->architecture, "Qwen3MoeForCausalLM");
  EXPECT_EQ(v5->head_dim, 16);
  EXPECT_EQ(v5->moe.routing.num_experts, 6);
  EXPECT_FALSE(v5->moe.routing.renormalize);
  EXPECT_EQ(v5->moe.expert_intermediate_size, 768);
}

TEST(HfConfigTest, DenseModelsHaveNoMoeLayers) {
  auto c = ParseJson(kLlamaJson);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->moe.routing.num_experts, 0);
  EXPECT_FALSE(IsMoeLayer(*c, 0));
}

TEST(HfConfigTest, MoeErrorsNameTheKey) {
  const std::string base = R"("vocab_size": 10, "hidden_size": 64, "intermediate_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, )";
  auto too_many = ParseJson(R"({"model_type": "mixtral", )" + base +
                            R"("num_local_experts": 4, "num_experts_per_tok": 5})");
  EXPECT_ERROR_HAS(too_many.status(), "num_experts_per_tok", "[1, 4]", "5");
  auto no_experts = ParseJson(R"({"model_type": "qwen3_moe", )" + base + R"("num_experts": 0})");
  EXPECT_ERROR_HAS(no_experts.status(), "num_experts", "> 0");
  auto bad_layer =
      ParseJson(R"({"model_type": "qwen3_moe", )" + base + R"("mlp_only_layers": [0, 2]})");
  EXPECT_ERROR_HAS(bad_layer.status(), "mlp_only_layers", "[0, 2)");
  auto swa = ParseJson(R"({"model_type": "mixtral", )" + base + R"("sliding_window": 4096})");
  EXPECT_ERROR_HAS(swa.status(), "sliding_window", "not supported");
}

// DeepSeek-V2-Lite's shape: no q_lora_rank (null), softmax greedy routing, a dense first layer;
// DeepseekV2Config's defaults for what is absent.
TEST(HfConfigTest, DeepseekV2WithoutQLoraAndItsDefaults) {
  auto c = ParseJson(R"({"architectures": ["DeepseekV2ForCausalLM"], "vocab_size": 102400,
    "hidden_size": 2048, "intermediate_size": 10944, "num_hidden_layers": 27,
    "num_attention_heads": 16, "num_key_value_heads": 16, "q_lora_rank": null,
    "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
    "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6,
    "moe_intermediate_size": 1408, "first_k_dense_replace": 1, "moe_layer_freq": 1,
    "topk_method": "greedy", "n_group": 1, "topk_group": 1, "routed_scaling_factor": 1.0,
    "rope_scaling": {"type": "yarn", "factor": 40, "mscale": 0.707, "mscale_all_dim": 0.707,
                     "original_max_position_embeddings": 4096, "beta_fast": 32, "beta_slow": 1},
    "max_position_embeddings": 163840})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->mla.q_lora_rank, 0);
  EXPECT_EQ(c->mla.kv_lora_rank, 512);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->rotary_dim, 64);
  EXPECT_EQ(c->num_kv_heads, 16);
  EXPECT_EQ(c->rope_layout, RopeLayout::kInterleaved);
  EXPECT_EQ(c->moe.routing.scoring, MoeScoring::kSoftmax);
  EXPECT_EQ(c->moe.routing.num_groups, 1);
  EXPECT_FALSE(c->moe.routing.renormalize);  // norm_topk_prob defaults to false for V2
  EXPECT_EQ(c->moe.num_shared_experts, 2);
  EXPECT_FALSE(IsMoeLayer(*c, 0));
  EXPECT_TRUE(IsMoeLayer(*c, 1));
  EXPECT_NEAR(c->rope_scaling.attention_factor, 1.0, 1e-12);
  const double m = 0.1 * 0.707 * std::log(40.0) + 1.0;
  EXPECT_NEAR(c->mla.softmax_scale, m * m / std::sqrt(192.0), 1e-12);
}

TEST(HfConfigTest, DeepseekRoutingMethodsAndLayerPattern) {
  const std::string base = R"("vocab_size": 10, "hidden_size": 64, "intermediate_size": 64,
    "num_hidden_layers": 6, "num_attention_heads": 4, "kv_lora_rank": 16, "q_lora_rank": 8,
    "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "n_routed_experts": 8,
    "num_experts_per_tok": 2, )";
  auto v2 = ParseJson(R"({"model_type": "deepseek_v2", )" + base +
                      R"("topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 2,
                         "first_k_dense_replace": 1, "moe_layer_freq": 2})");
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->moe.routing.num_groups, 4);
  EXPECT_EQ(v2->moe.routing.topk_groups, 2);
  EXPECT_EQ(v2->moe.routing.group_score, MoeGroupScore::kMax);
  std::vector<int64_t> sparse;  // >= 1 and even (DeepSeek's reference moe_layer_freq)
  for (int64_t i = 0; i < 6; ++i) {
    if (IsMoeLayer(*v2, i)) sparse.push_back(i);
  }
  EXPECT_EQ(sparse, (std::vector<int64_t>{2, 4}));
  // V3 defaults: sigmoid, noaux_tc (top-2-sum groups), renormalised, scaled by 2.5.
  auto v3 = ParseJson(R"({"model_type": "deepseek_v3", )" + base +
                      R"("n_group": 2, "topk_group": 1, "rope_interleave": false})");
  ASSERT_TRUE(v3.ok()) << v3.status();
  EXPECT_EQ(v3->moe.routing.scoring, MoeScoring::kSigmoid);
  EXPECT_EQ(v3->moe.routing.group_score, MoeGroupScore::kTop2Sum);
  EXPECT_TRUE(v3->moe.routing.renormalize);
  EXPECT_FLOAT_EQ(v3->moe.routing.scaling, 2.5f);
  EXPECT_EQ(v3->rope_layout, RopeLayout::kNeox);
  EXPECT_EQ(v3->moe.first_k_dense_replace, 3);
}

TEST(HfConfigTest, DeepseekErrorsNameTheKey) {
  const std::string base = R"({"model_type": "deepseek_v3", "vocab_size": 10,
    "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "n_routed_experts": 8, "num_experts_per_tok": 2, )";
  EXPECT_ERROR_HAS(ParseJson(base + R"("n_group": 3})").status(), "n_group", "divide");
  EXPECT_ERROR_HAS(
      ParseJson(base + R"("n_group": 4, "topk_group": 1, "num_experts_per_tok": 3})").status(),
      "num_experts_per_tok", "3");
  EXPECT_ERROR_HAS(ParseJson(base + R"("n_group": 1, "topk_method": "random"})").status(),
                   "topk_method", "random");
  EXPECT_ERROR_HAS(ParseJson(base + R"("n_group": 1, "scoring_func": "relu"})").status(),
                   "scoring_func", "relu");
  EXPECT_ERROR_HAS(ParseJson(base + R"("n_group": 1, "kv_lora_rank": 0})").status(),
                   "kv_lora_rank");
  EXPECT_ERROR_HAS(ParseJson(base + R"("n_group": 1, "attention_bias": true})").status(),
                   "attention_bias", "not supported");
  auto v2 = ParseJson(R"({"model_type": "deepseek_v2", "vocab_size": 10, "hidden_size": 64,
    "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4})");
  EXPECT_ERROR_HAS(v2.status(), "num_experts_per_tok", "missing");
}

TEST(HfConfigTest, PartialRotaryFactor) {
  auto c = ParseJson(R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "partial_rotary_factor": 0.5})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rotary_dim, 8);
  EXPECT_EQ(RopeInvFreq(*c).size(), 4u);
}

TEST(HfConfigTest, ErrorsNameKeyAndFile) {
  auto unknown = ParseJson(R"({"architectures": ["MistralForCausalLM"]})");
  EXPECT_ERROR_HAS(unknown.status(), "MistralForCausalLM", "LlamaForCausalLM", "Qwen2ForCausalLM",
                   "Qwen3ForCausalLM", "config.json");
  auto missing = ParseJson(R"({"model_type": "llama", "hidden_size": 64})");
  EXPECT_ERROR_HAS(missing.status(), "vocab_size", "config.json", "missing");
  const std::string base = R"("model_type": "llama", "vocab_size": 10, "intermediate_size": 128,
    "num_hidden_layers": 2, )";
  EXPECT_ERROR_HAS(
      ParseJson("{" + base + R"("hidden_size": 64, "num_attention_heads": 0})").status(),
      "num_attention_heads");
  EXPECT_ERROR_HAS(
      ParseJson("{" + base + R"("hidden_size": 64, "num_attention_heads": 5})").status(),
      "hidden_size 64", "num_attention_heads 5");
  EXPECT_ERROR_HAS(ParseJson("{" + base + R"("hidden_size": 64, "num_attention_heads": 4,
                                "num_key_value_heads": 3})")
                       .status(),
                   "num_key_value_heads 3");
  EXPECT_ERROR_HAS(
      ParseJson("{" + base + R"("hidden_size": "64", "num_attention_heads": 4})").status(),
      "'hidden_size'", "integer");
  EXPECT_ERROR_HAS(ParseJson("{" + base + R"("hidden_size": 64, "num_attention_heads": 4,
                                "rope_scaling": {"rope_type": "dynamic", "factor": 2}})")
                       .status(),
                   "dynamic", "not supported");
  EXPECT_ERROR_HAS(ParseJson("not json").status(), "config.json", "JSON");
  EXPECT_EQ(ParseHfConfig("/nonexistent/config.json").status().code(), absl::StatusCode::kNotFound);
}

TEST(RopeTest, PlainInverseFrequencies) {
  ModelConfig c;
  c.rotary_dim = 64;
  c.rope_theta = 100000;
  const std::vector<float> f = RopeInvFreq(c);
  ASSERT_EQ(f.size(), 32u);
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_FLOAT_EQ(f[1], static_cast<float>(std::pow(100000.0, -2.0 / 64)));
  EXPECT_FLOAT_EQ(f[31], static_cast<float>(std::pow(100000.0, -62.0 / 64)));
  c.rope_scaling.type = "linear";
  c.rope_scaling.factor = 4;
  EXPECT_FLOAT_EQ(RopeInvFreq(c)[5], f[5] / 4);
}

TEST(RopeTest, Llama3ScalingMatchesTransformers) {
  // Llama 3.1 8B; expected values from transformers' _compute_llama3_parameters in float64.
  auto c = ParseJson(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10,
    "hidden_size": 4096, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 32, "num_key_value_heads": 8, "rope_theta": 500000.0,
    "max_position_embeddings": 131072,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, "llama3");
  const std::vector<float> f = RopeInvFreq(*c);
  ASSERT_EQ(f.size(), 64u);
  const std::pair<int, double> expected[] = {
      {0, 1.0},
      {10, 0.12868737343265052},
      {29, 0.002166570763503359},
      {32, 0.0005248461609929547},
      {34, 0.00017850781276799638},
      {40, 3.428102195952591e-05},
      {63, 3.068925988914511e-07},
  };
  for (const auto& [i, v] : expected) EXPECT_FLOAT_EQ(f[i], static_cast<float>(v)) << i;
}

TEST(RopeTest, FreqFactorsDivide) {
  ModelConfig c;
  c.rotary_dim = 4;
  c.rope_theta = 10000;
  c.rope_freq_factors = {1.0f, 8.0f};
  const std::vector<float> f = RopeInvFreq(c);
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_FLOAT_EQ(f[1], 0.01f / 8);
}

// ---- GGUF ----

GgufWriter QwenLikeGguf(const std::string& arch) {
  GgufWriter w;
  w.String("general.architecture", arch);
  w.U32(arch + ".context_length", 4096);
  w.U32(arch + ".embedding_length", 64);
  w.U32(arch + ".block_count", 2);
  w.U32(arch + ".feed_forward_length", 128);
  w.U32(arch + ".attention.head_count", 4);
  w.U32(arch + ".attention.head_count_kv", 2);
  w.F32(arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
  w.F32(arch + ".rope.freq_base", 1000000.0f);
  w.StringArray("tokenizer.ggml.tokens", {"a", "b", "c"});
  w.U32("tokenizer.ggml.bos_token_id", 0);
  w.U32("tokenizer.ggml.eos_token_id", 2);
  w.Tensor("token_embd.weight", 0, {64, 3}, std::string(64 * 3 * 4, '\0'));
  return w;
}

absl::StatusOr<ModelConfig> FromGguf(const GgufWriter& w) {
  const auto path = testing::TestDir() / "m.gguf";
  testing::WriteFile(path, w.Build());
  auto f = GgufFile::Open(path.string());
  if (!f.ok()) return f.status();
  return ConfigFromGguf(**f);
}

TEST(GgufConfigTest, Qwen2) {
  GgufWriter w = QwenLikeGguf("qwen2");
  w.Tensor("blk.0.attn_q.bias", 0, {64}, std::string(256, '\0'));
  w.Tensor("output.weight", 0, {64, 3}, std::string(64 * 3 * 4, '\0'));
  auto c = FromGguf(w);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(c->vocab_size, 3);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->rotary_dim, 16);
  EXPECT_EQ(c->max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c->rope_theta, 1000000);
  EXPECT_EQ(c->rope_layout, RopeLayout::kNeox);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_EQ(c->bos_token_id, 0);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{2}));
}

TEST(GgufConfigTest, Qwen3WithKeyLengthAndQkNorm) {
  GgufWriter w = QwenLikeGguf("qwen3");
  w.U32("qwen3.attention.key_length", 32);
  w.U32("qwen3.vocab_size", 3);
  w.Tensor("blk.0.attn_q_norm.weight", 0, {32}, std::string(128, '\0'));
  auto c = FromGguf(w);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "Qwen3ForCausalLM");
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_TRUE(c->qk_norm);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
}

TEST(GgufConfigTest, LlamaIsInterleavedAndReadsRopeFreqs) {
  GgufWriter w = QwenLikeGguf("llama");
  w.Tensor("rope_freqs.weight", 0, {8}, testing::F32Data(8, 1));
  w.String("llama.rope.scaling.type", "linear");
  w.F32("llama.rope.scaling.factor", 2.0f);
  auto c = FromGguf(w);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_layout, RopeLayout::kInterleaved);
  EXPECT_EQ(c->rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 2.0);
  ASSERT_EQ(c->rope_freq_factors.size(), 8u);
  EXPECT_FLOAT_EQ(c->rope_freq_factors[7], 8.0f);
  EXPECT_FLOAT_EQ(RopeInvFreq(*c)[1], static_cast<float>(std::pow(1e6, -2.0 / 16) / 2 / 2));
}

TEST(GgufConfigTest, Errors) {
  EXPECT_ERROR_HAS(FromGguf(QwenLikeGguf("phi3")).status(), "'phi3'", "llama, qwen2, qwen3",
                   "m.gguf");
  GgufWriter no_heads;
  no_heads.String("general.architecture", "llama");
  no_heads.U32("llama.embedding_length", 64);
  no_heads.U32("llama.block_count", 2);
  no_heads.U32("llama.feed_forward_length", 128);
  EXPECT_ERROR_HAS(FromGguf(no_heads).status(), "llama.attention.head_count", "m.gguf");
  GgufWriter odd = QwenLikeGguf("qwen2");
  odd.U32("qwen2.attention.head_count", 0);  // duplicate key: rejected at open
  EXPECT_ERROR_HAS(FromGguf(odd).status(), "qwen2.attention.head_count");
  GgufWriter bad_type = QwenLikeGguf("qwen2");
  bad_type.String("qwen2.rope.scaling.type", "dynamic");
  EXPECT_ERROR_HAS(FromGguf(bad_type).status(), "dynamic", "not supported");
}

}  // namespace
}  // namespace kvasir
