// Golden tests: token ids identical to HF `tokenizers` over the >= 2,000-string corpus of
// tools/gen_tokenizer_goldens.py, decode round trips, and the incremental detokenizer.
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/tokenizer/tokenizer_fixtures.h"

namespace kvasir::testing {
namespace {

struct Golden {
  std::vector<int32_t> ids;
  bool has_special = false;
  std::vector<int32_t> ids_special;
};

const std::vector<std::string>& Corpus() {
  static const auto* corpus = [] {
    std::ifstream in(FixturesDir() + "/corpus.json");
    std::stringstream ss;
    ss << in.rdbuf();
    return new std::vector<std::string>(
        nlohmann::json::parse(ss.str()).get<std::vector<std::string>>());
  }();
  return *corpus;
}

std::vector<Golden> LoadGoldens(const std::string& name) {
  std::ifstream in(FixturesDir() + "/goldens_" + name + ".jsonl");
  std::vector<Golden> out;
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    Golden g;
    g.ids = j["ids"].get<std::vector<int32_t>>();
    if (j.contains("ids_special")) {
      g.has_special = true;
      g.ids_special = j["ids_special"].get<std::vector<int32_t>>();
    }
    out.push_back(std::move(g));
  }
  return out;
}

struct GoldenCase {
  std::string name;    // test suffix
  std::string golden;  // goldens_<golden>.jsonl
  std::function<const Tokenizer&()> tokenizer;
  bool nfc;  // the normalizer is NFC: decode(encode(x)) == NFC(x)
};

std::string PrintName(const ::testing::TestParamInfo<GoldenCase>& info) { return info.param.name; }

class GoldenTest : public ::testing::TestWithParam<GoldenCase> {};

std::string Escaped(const std::string& s) { return nlohmann::json(s).dump().substr(0, 120); }

TEST_P(GoldenTest, EncodeMatchesHfIdsForWholeCorpus) {
  const Tokenizer& tok = GetParam().tokenizer();
  const auto& corpus = Corpus();
  const auto goldens = LoadGoldens(GetParam().golden);
  ASSERT_EQ(corpus.size(), goldens.size());
  ASSERT_GE(corpus.size(), 2000u);
  int mismatches = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::vector<int32_t> ids = tok.Encode(corpus[i], /*add_special=*/false);
    if (ids != goldens[i].ids && ++mismatches <= 10) {
      ADD_FAILURE() << "corpus[" << i << "] " << Escaped(corpus[i]) << "\n  got      "
                    << ::testing::PrintToString(ids) << "\n  expected "
                    << ::testing::PrintToString(goldens[i].ids);
    }
  }
  EXPECT_EQ(mismatches, 0) << "of " << corpus.size() << " strings";
}

TEST_P(GoldenTest, EncodeWithAddSpecialMatchesHfIds) {
  const Tokenizer& tok = GetParam().tokenizer();
  const auto& corpus = Corpus();
  const auto goldens = LoadGoldens(GetParam().golden);
  int checked = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    if (!goldens[i].has_special) continue;
    ++checked;
    EXPECT_EQ(tok.Encode(corpus[i], /*add_special=*/true), goldens[i].ids_special)
        << "corpus[" << i << "] " << Escaped(corpus[i]);
  }
  EXPECT_GE(checked, 200);
}

TEST_P(GoldenTest, DecodeOfEncodeReturnsTheText) {
  const Tokenizer& tok = GetParam().tokenizer();
  int mismatches = 0;
  for (const std::string& text : Corpus()) {
    const std::string expected =
        GetParam().nfc ? tokenizer_internal::Normalize(text, tokenizer_internal::NormalForm::kNfc)
                       : text;
    const std::string got = tok.Decode(tok.Encode(text, false), /*skip_special=*/false);
    if (got != expected && ++mismatches <= 10) {
      ADD_FAILURE() << Escaped(text) << " decoded as " << Escaped(got);
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST_P(GoldenTest, IncrementalDetokenizerConcatenationEqualsDecodeAndNeverSplitsUtf8) {
  const Tokenizer& tok = GetParam().tokenizer();
  int split_tokens = 0;  // tokens whose bytes are not valid UTF-8 on their own
  for (const std::string& text : Corpus()) {
    const std::vector<int32_t> ids = tok.Encode(text, false);
    IncrementalDetokenizer detok(tok, /*skip_special=*/true);
    std::string streamed;
    for (int32_t id : ids) {
      if (!IsValidUtf8(tok.TokenBytes(id))) ++split_tokens;
      const std::string delta = detok.Push(id);
      ASSERT_TRUE(IsValidUtf8(delta)) << Escaped(text);
      streamed += delta;
    }
    streamed += detok.Flush();
    const std::string decoded = tok.Decode(ids, /*skip_special=*/true);
    ASSERT_EQ(streamed, decoded) << Escaped(text);
    // The corpus is valid text, so no replacement character may appear from splitting.
    EXPECT_EQ(streamed.find("\xEF\xBF\xBD"), decoded.find("\xEF\xBF\xBD")) << Escaped(text);
  }
  EXPECT_GT(split_tokens, 0) << "the corpus should exercise UTF-8 sequences split across tokens";
}

INSTANTIATE_TEST_SUITE_P(
    Tokenizers, GoldenTest,
    ::testing::Values(GoldenCase{"SmolLm2Gguf", "smollm2", SmolLm2FromGguf, false},
                      GoldenCase{"SmolLm2Json", "smollm2", SmolLm2FromJson, false},
                      GoldenCase{"Qwen3", "qwen3", Qwen3, true},
                      GoldenCase{"DeepSeekV3", "deepseek_v3", DeepSeekV3, false}),
    PrintName);

}  // namespace
}  // namespace kvasir::testing
