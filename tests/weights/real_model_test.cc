// The real SmolLM2-135M-Instruct Q4_1 GGUF fetched by tools/setup.sh (or $KVASIR_DEFAULT_MODEL).
#include <cstdlib>
#include <filesystem>

#include "engine/model_config.h"
#include "engine/weights/gguf.h"
#include "gtest/gtest.h"
#include "tests/weights/test_files.h"

namespace kvasir {
namespace {

std::string ModelPath() {
  if (const char* env = std::getenv("KVASIR_DEFAULT_MODEL"); env != nullptr && *env != '\0') {
    return env;
  }
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "") +
         "/.cache/kvasir/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

#define SKIP_WITHOUT_MODEL()                                            \
  if (!std::filesystem::exists(ModelPath())) {                          \
    GTEST_SKIP() << "no model at " << ModelPath()                       \
                 << "; run tools/setup.sh or set KVASIR_DEFAULT_MODEL"; \
  }

TEST(SmolLm2GgufTest, ConfigIsLlama135M) {
  SKIP_WITHOUT_MODEL();
  auto f = GgufFile::Open(ModelPath());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->architecture(), "llama");
  auto c = ConfigFromGguf(**f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->num_layers, 30);
  EXPECT_EQ(c->hidden_size, 576);
  EXPECT_EQ(c->num_heads, 9);
  EXPECT_EQ(c->num_kv_heads, 3);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->rotary_dim, 64);
  EXPECT_EQ(c->intermediate_size, 1536);
  EXPECT_EQ(c->vocab_size, 49152);
  EXPECT_DOUBLE_EQ(c->rope_theta, 100000);
  EXPECT_NEAR(c->rms_norm_eps, 1e-5, 1e-12);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_EQ(c->rope_layout, RopeLayout::kInterleaved);
  EXPECT_EQ(c->rope_scaling.type, "");
  EXPECT_EQ(c->max_position_embeddings, 8192);
}

TEST(SmolLm2GgufTest, TensorsHaveHfNamesTypesAndShapes) {
  SKIP_WITHOUT_MODEL();
  auto f = GgufFile::Open(ModelPath());
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.TensorNames().size(), 2u + 30u * 9u);
  auto e = GetChecked(g, "model.embed_tokens.weight", {49152, 576});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->dtype, DType::kQ8_0);
  EXPECT_EQ(e->nbytes, 49152 * RowBytes(DType::kQ8_0, 576));
  EXPECT_FALSE(g.Has("lm_head.weight"));
  auto norm = GetChecked(g, "model.norm.weight", {576});
  ASSERT_TRUE(norm.ok()) << norm.status();
  EXPECT_EQ(norm->dtype, DType::kF32);
  const std::pair<std::string, std::vector<int64_t>> layer[] = {
      {"input_layernorm.weight", {576}},       {"post_attention_layernorm.weight", {576}},
      {"self_attn.q_proj.weight", {576, 576}}, {"self_attn.k_proj.weight", {192, 576}},
      {"self_attn.v_proj.weight", {192, 576}}, {"self_attn.o_proj.weight", {576, 576}},
      {"mlp.gate_proj.weight", {1536, 576}},   {"mlp.up_proj.weight", {1536, 576}},
      {"mlp.down_proj.weight", {576, 1536}},
  };
  for (int l = 0; l < 30; ++l) {
    for (const auto& [suffix, shape] : layer) {
      const std::string name = "model.layers." + std::to_string(l) + "." + suffix;
      auto t = GetChecked(g, name, shape);
      ASSERT_TRUE(t.ok()) << t.status();
      EXPECT_EQ(t->nbytes, RowBytes(t->dtype, shape.back()) * (t->numel() / shape.back())) << name;
    }
  }
  auto tokens = g.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ(tokens->size(), 49152u);
}

TEST(SmolLm2GgufTest, DamagedCopiesFailCleanlyNamingTheFile) {
  SKIP_WITHOUT_MODEL();
  const auto dir = testing::TestDir();
  std::ifstream in(ModelPath(), std::ios::binary);
  std::string head(10 << 20, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  ASSERT_EQ(in.gcount(), static_cast<std::streamsize>(head.size()));

  struct Case {
    std::string name;
    std::string bytes;
    const char* expect;
  };
  std::string flipped_magic = head.substr(0, 1 << 20);
  flipped_magic[1] ^= 0xff;
  std::string flipped_version = head.substr(0, 1 << 20);
  flipped_version[4] ^= 0xff;
  std::string flipped_count = head.substr(0, 1 << 20);
  flipped_count[15] ^= 0x7f;  // high byte of tensor_count
  const Case cases[] = {
      {"first_1k.gguf", head.substr(0, 1024), "truncated or corrupt"},
      {"first_10m.gguf", head, "truncated"},
      {"magic.gguf", flipped_magic, "not a GGUF file"},
      {"version.gguf", flipped_version, "unsupported GGUF version"},
      {"count.gguf", flipped_count, "tensor_count"},
  };
  for (const Case& c : cases) {
    const std::string path = (dir / c.name).string();
    testing::WriteFile(path, c.bytes);
    auto f = GgufFile::Open(path);
    EXPECT_ERROR_HAS(f.status(), c.expect, path.c_str());
  }
}

}  // namespace
}  // namespace kvasir
