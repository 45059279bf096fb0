// Random byte mutations of small valid files: each must open or fail with a Status, never crash.
// Run under -fsanitize=address,undefined to make "never crash" mean "no UB" too.
#include <random>

#include "engine/model_config.h"
#include "engine/weights/gguf.h"
#include "engine/weights/safetensors.h"
#include "gtest/gtest.h"
#include "tests/weights/test_files.h"

namespace kvasir {
namespace {

constexpr int kMutations = 2000;

std::string Mutate(const std::string& in, std::mt19937& rng) {
  std::string s = in;
  const int kind = static_cast<int>(rng() % 4);
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < edits && !s.empty(); ++i) {
    const size_t pos = rng() % s.size();
    switch (kind) {
      case 0:
        s[pos] = static_cast<char>(rng());
        break;  // random byte
      case 1:
        s[pos] ^= static_cast<char>(1u << (rng() % 8));
        break;  // bit flip
      case 2:
        s[pos] = static_cast<char>((rng() & 1) ? 0xff : 0);
        break;
      case 3:
        s.resize(pos);
        break;  // truncate
    }
  }
  return s;
}

// Touches everything a loader would: every tensor's bytes and every metadata key.
void Exercise(const WeightSource& w) {
  volatile uint8_t sink = 0;
  for (const std::string& name : w.TensorNames()) {
    auto t = w.Get(name);
    if (!t.ok() || t->nbytes == 0) continue;
    const auto* p = static_cast<const uint8_t*>(t->data);
    sink = sink + p[0] + p[t->nbytes - 1];
  }
}

void ExerciseGguf(const GgufFile& g) {
  Exercise(g);
  for (const std::string& key : g.Keys()) {
    (void)g.GetString(key);
    (void)g.GetInt(key);
    (void)g.GetFloat(key);
    (void)g.GetBool(key);
    (void)g.GetStringArray(key);
    (void)g.GetIntArray(key);
    (void)g.GetFloatArray(key);
  }
  (void)ConfigFromGguf(g);
}

TEST(WeightsFuzzTest, MutatedGgufNeverCrashes) {
  testing::GgufWriter w;
  w.String("general.architecture", "llama");
  w.U32("llama.context_length", 64);
  w.U32("llama.embedding_length", 32);
  w.U32("llama.block_count", 1);
  w.U32("llama.feed_forward_length", 64);
  w.U32("llama.attention.head_count", 2);
  w.F32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.StringArray("tokenizer.ggml.tokens", {"a", "bb", "ccc", "dddd"});
  w.Array<int32_t>("tokenizer.ggml.token_type", GgufType::kI32, {1, 1, 3, 1});
  w.Tensor("token_embd.weight", 8, {32, 4}, std::string(4 * 34, '\x11'));
  w.Tensor("blk.0.attn_q.weight", 1, {32, 32}, std::string(32 * 32 * 2, '\x22'));
  w.Tensor("output_norm.weight", 0, {32}, testing::F32Data(32));
  const std::string valid = w.Build();
  const std::string path = (testing::TestDir() / "f.gguf").string();
  std::mt19937 rng(12345);
  int opened = 0;
  for (int i = 0; i < kMutations; ++i) {
    testing::WriteFile(path, Mutate(valid, rng));
    auto f = GgufFile::Open(path);
    if (f.ok()) {
      ++opened;
      ExerciseGguf(**f);
    } else {
      EXPECT_FALSE(f.status().message().empty());
    }
  }
  RecordProperty("opened", opened);
  EXPECT_GT(opened, 0);
  EXPECT_LT(opened, kMutations);
}

TEST(WeightsFuzzTest, MutatedSafetensorsNeverCrashes) {
  const std::string valid = testing::SafetensorsFile({{"a", "F32", {2, 3}, testing::F32Data(6)},
                                                      {"b", "BF16", {4}, testing::U16Data(4)},
                                                      {"c", "I64", {1}, std::string(8, '\0')}});
  const std::string path = (testing::TestDir() / "f.safetensors").string();
  std::mt19937 rng(6789);
  int opened = 0;
  for (int i = 0; i < kMutations; ++i) {
    testing::WriteFile(path, Mutate(valid, rng));
    auto s = OpenSafetensors(path);
    if (s.ok()) {
      ++opened;
      Exercise(**s);
    } else {
      EXPECT_FALSE(s.status().message().empty());
    }
  }
  RecordProperty("opened", opened);
  EXPECT_GT(opened, 0);
  EXPECT_LT(opened, kMutations);
}

}  // namespace
}  // namespace kvasir
