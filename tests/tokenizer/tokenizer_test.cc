// Unit tests: UTF-8 helpers, special tokens, add_special, stop ids, the incremental detokenizer on
// split sequences, loader error messages, thread safety and speed.
#include "engine/tokenizer/tokenizer.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/tokenizer/tokenizer_fixtures.h"

namespace kvasir::testing {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kFffd[] = "\xEF\xBF\xBD";

std::unique_ptr<Tokenizer> Tiny(const nlohmann::json& config = nullptr) {
  const std::string path = WriteTemp(TinyTokenizerJson(), config);
  const std::string dir = path.substr(0, path.rfind('/'));
  auto tok = Tokenizer::FromDirectory(dir);  // tokenizer_config.json only when `config` is set
  EXPECT_TRUE(tok.ok()) << tok.status();
  return *std::move(tok);
}

// Ids of the single-byte tokens of the tiny tokenizer are the byte values.
std::vector<int32_t> ByteIds(std::string_view bytes) {
  std::vector<int32_t> ids;
  for (unsigned char c : bytes) ids.push_back(c);
  return ids;
}

TEST(Utf8Test, IsValidUtf8AcceptsWellFormedAndRejectsIllFormed) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("héllo 你好 😀"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xF0\x9F\x98"));      // truncated
  EXPECT_FALSE(IsValidUtf8("\x80"));
}

TEST(TinyTokenizerTest, MergesApplyByRankAndDecodeInverts) {
  auto tok = Tiny();
  EXPECT_THAT(tok->Encode(" the", false), ElementsAre(258));
  EXPECT_THAT(tok->Encode("a the", false), ElementsAre('a', 258));
  EXPECT_EQ(tok->Decode(tok->Encode("a the x", false), false), "a the x");
  EXPECT_EQ(tok->TokenText(258), "Ġthe");
  EXPECT_EQ(tok->TokenBytes(258), " the");
  EXPECT_EQ(tok->TokenId("Ġth"), 257);
  EXPECT_EQ(tok->vocab_size(), 261);
}

TEST(TinyTokenizerTest, DecodeReplacesEachMaximalInvalidSubpartWithOneReplacementChar) {
  auto tok = Tiny();
  // F0 9F 98 is a truncated 4-byte sequence followed by 'a': one U+FFFD, then 'a'.
  EXPECT_EQ(tok->Decode(ByteIds("\xF0\x9F\x98"
                                "a"),
                        false),
            std::string(kFffd) + "a");
  EXPECT_EQ(tok->Decode(ByteIds("\xFF\xFE"), false), std::string(kFffd) + kFffd);
  EXPECT_EQ(tok->Decode({-1, 'o', 100000, 'k'}, false), "ok");  // out-of-range ids skipped
}

TEST(TinyTokenizerTest, EncodeReplacesInvalidUtf8InInputWithReplacementChar) {
  auto tok = Tiny();
  EXPECT_EQ(tok->Decode(tok->Encode("a\xFF"
                                    "b",
                                    false),
                        false),
            std::string("a") + kFffd + "b");
}

TEST(TinyTokenizerTest, AddedTokensAreMatchedInTextAndSpecialOnesSkippedOnDecode) {
  auto tok = Tiny();
  EXPECT_THAT(tok->Encode("a<|eot|><x>b", false), ElementsAre('a', 259, 260, 'b'));
  EXPECT_EQ(tok->Decode({'a', 259, 260}, /*skip_special=*/true), "a<x>");
  EXPECT_EQ(tok->Decode({'a', 259, 260}, /*skip_special=*/false), "a<|eot|><x>");
  EXPECT_TRUE(tok->IsSpecial(259));
  EXPECT_FALSE(tok->IsSpecial(260));
  EXPECT_FALSE(tok->IsSpecial(-5));
}

TEST(TinyTokenizerTest, LstripAndRstripSwallowAdjacentWhitespace) {
  nlohmann::json j = TinyTokenizerJson();
  j["added_tokens"][0]["lstrip"] = true;
  j["added_tokens"][0]["rstrip"] = true;
  auto tok = Tokenizer::FromTokenizerJson(WriteTemp(j), "");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_THAT((*tok)->Encode("a  <|eot|> \nb", false), ElementsAre('a', 259, 'b'));
}

TEST(TinyTokenizerTest, SingleWordTokenIsNotMatchedInsideAWord) {
  nlohmann::json j = TinyTokenizerJson();
  j["added_tokens"][1]["single_word"] = true;
  auto tok = Tokenizer::FromTokenizerJson(WriteTemp(j), "");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_THAT((*tok)->Encode("a <x> b", false), Contains(260));
  EXPECT_THAT((*tok)->Encode("a<x>b", false), ::testing::Not(Contains(260)));
}

TEST(TinyTokenizerTest, TokenizerConfigAddBosTokenPrependsBos) {
  auto tok = Tiny({{"bos_token", "<|eot|>"}, {"add_bos_token", true}});
  EXPECT_THAT(tok->Encode("a", /*add_special=*/true), ElementsAre(259, 'a'));
  EXPECT_THAT(tok->Encode("a", /*add_special=*/false), ElementsAre('a'));
  EXPECT_EQ(tok->bos_id(), 259);
}

TEST(TinyTokenizerTest, TemplateProcessingDecidesBosAndEos) {
  nlohmann::json j = TinyTokenizerJson();
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single",
                          {{{"SpecialToken", {{"id", "<x>"}, {"type_id", 0}}}},
                           {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                           {{"SpecialToken", {{"id", "<|eot|>"}, {"type_id", 0}}}}}},
                         {"special_tokens",
                          {{"<x>", {{"id", "<x>"}, {"ids", {260}}}},
                           {"<|eot|>", {{"id", "<|eot|>"}, {"ids", {259}}}}}}};
  auto tok = Tokenizer::FromTokenizerJson(WriteTemp(j), "");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_THAT((*tok)->Encode("a", true), ElementsAre(260, 'a', 259));
}

TEST(IncrementalDetokenizerTest, HoldsBackEmojiSplitAcrossByteTokens) {
  auto tok = Tiny();
  IncrementalDetokenizer detok(*tok);
  const std::string emoji = "😀";  // F0 9F 98 80
  EXPECT_EQ(detok.Push(static_cast<unsigned char>(emoji[0])), "");
  EXPECT_EQ(detok.Push(static_cast<unsigned char>(emoji[1])), "");
  EXPECT_EQ(detok.Push(static_cast<unsigned char>(emoji[2])), "");
  EXPECT_EQ(detok.Push(static_cast<unsigned char>(emoji[3])), emoji);
  EXPECT_EQ(detok.Push('!'), "!");
  EXPECT_EQ(detok.Flush(), "");
}

TEST(IncrementalDetokenizerTest, EmitsReplacementOnlyOnceASequenceCannotBecomeValid) {
  auto tok = Tiny();
  IncrementalDetokenizer detok(*tok);
  EXPECT_EQ(detok.Push(0xE4), "");                       // could still become 你
  EXPECT_EQ(detok.Push('a'), std::string(kFffd) + "a");  // now it cannot
  EXPECT_EQ(detok.Push(0xFF), kFffd);                    // never valid
  EXPECT_EQ(detok.Push(0xF0), "");
  EXPECT_EQ(detok.Flush(), kFffd);  // incomplete tail
}

TEST(IncrementalDetokenizerTest, SkipsSpecialTokensByDefault) {
  auto tok = Tiny();
  IncrementalDetokenizer skip(*tok);
  IncrementalDetokenizer keep(*tok, /*skip_special=*/false);
  EXPECT_EQ(skip.Push(259), "");
  EXPECT_EQ(keep.Push(259), "<|eot|>");
}

TEST(IncrementalDetokenizerTest, CjkAndEmojiStreamWithoutBrokenSequences) {
  const Tokenizer& tok = Qwen3();
  const std::string text = "你好😀👨‍👩‍👧‍👦 日本語のテキスト 🇯🇵";
  IncrementalDetokenizer detok(tok);
  std::string streamed;
  for (int32_t id : tok.Encode(text, false)) {
    const std::string delta = detok.Push(id);
    ASSERT_TRUE(IsValidUtf8(delta));
    streamed += delta;
  }
  EXPECT_EQ(streamed + detok.Flush(), text);
}

TEST(RealTokenizerTest, ChatSpecialTokensInTextEncodeAsSingleIds) {
  EXPECT_THAT(Qwen3().Encode("<|im_start|>user", false),
              ElementsAre(151644, *Qwen3().TokenId("user")));
  EXPECT_THAT(DeepSeekV3().Encode("<｜begin▁of▁sentence｜>", false), ElementsAre(0));
  EXPECT_THAT(SmolLm2FromGguf().Encode("<|im_end|>", false), ElementsAre(2));
  EXPECT_THAT(Qwen3().Encode("<think>", false), ElementsAre(*Qwen3().TokenId("<think>")));
}

TEST(RealTokenizerTest, AddSpecialPrependsBosOnlyForDeepSeekV3) {
  EXPECT_EQ(DeepSeekV3().Encode("Hi", true)[0], 0);
  EXPECT_EQ(DeepSeekV3().bos_id(), 0);
  EXPECT_EQ(Qwen3().Encode("Hi", true), Qwen3().Encode("Hi", false));
  EXPECT_EQ(SmolLm2FromGguf().Encode("Hi", true), SmolLm2FromGguf().Encode("Hi", false));
  EXPECT_EQ(SmolLm2FromJson().Encode("Hi", true), SmolLm2FromJson().Encode("Hi", false));
}

TEST(RealTokenizerTest, GgufAddBosPrependsBos) {
  GgufVocab v = LoadSmolLm2Vocab();
  v.add_bos = true;
  auto tok = Tokenizer::FromGgufVocab(v);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("Hi", true)[0], *v.bos_id);
}

TEST(RealTokenizerTest, StopIdsIncludeEosAndEndOfTurnTokens) {
  EXPECT_THAT(Qwen3().stop_ids(), Contains(151645));  // <|im_end|>
  EXPECT_THAT(Qwen3().stop_ids(), Contains(151643));  // <|endoftext|>
  EXPECT_THAT(DeepSeekV3().stop_ids(), Contains(1));  // <｜end▁of▁sentence｜>
  EXPECT_THAT(SmolLm2FromGguf().stop_ids(), Contains(2));
  EXPECT_EQ(Qwen3().eos_id(), 151645);
}

TEST(RealTokenizerTest, EncodesTenThousandTokenPromptWellUnder100Ms) {
  const Tokenizer& tok = Qwen3();
  std::string text;
  for (int i = 0; text.size() < 60000; ++i) {
    text += "Paragraph " + std::to_string(i * 7919) + ": the quick brown fox_" + std::to_string(i) +
            " jumps over 你好世界 😀 lazy dogs; def f(x): return x**2\n";
  }
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok.Encode(text, false);
  const auto ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(ids.size(), 10000u);
  EXPECT_LT(ms, 100.0) << ids.size() << " tokens";
  std::printf("encoded %zu tokens in %.2f ms\n", ids.size(), ms);
}

TEST(RealTokenizerTest, LongSingleWordIsNotQuadratic) {
  const Tokenizer& tok = DeepSeekV3();  // loaded outside the timed region
  std::string word;
  for (int i = 0; i < 100000; ++i) word.push_back(static_cast<char>('a' + (i * 7) % 26));
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok.Encode(word, false);  // one 100 KB piece: ~25 ms
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(tok.Decode(ids, false), word);
  EXPECT_LT(ms, 500.0);  // quadratic merging would take minutes
}

TEST(RealTokenizerTest, ConcurrentEncodesAgree) {
  const Tokenizer& tok = SmolLm2FromGguf();
  const std::string text = "Concurrent encoding of the same text 123 😀 should agree.";
  const std::vector<int32_t> expected = tok.Encode(text, false);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i)
        ok[t] += tok.Encode(text + std::to_string(i % 7), false).size() > 0;
      ok[t] += tok.Encode(text, false) == expected;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(ok[t], 201);
}

// --- Errors name what is wrong. ---

absl::Status LoadError(const nlohmann::json& j) {
  auto tok = Tokenizer::FromTokenizerJson(WriteTemp(j), "");
  return tok.ok() ? absl::OkStatus() : tok.status();
}

TEST(TokenizerErrorTest, MissingModelIsNamed) {
  nlohmann::json j = TinyTokenizerJson();
  j.erase("model");
  const absl::Status s = LoadError(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("missing \"model\""));
  EXPECT_THAT(std::string(s.message()), HasSubstr("tokenizer.json"));
}

TEST(TokenizerErrorTest, MalformedMergeStringIsNamedWithItsIndex) {
  nlohmann::json j = TinyTokenizerJson();
  j["model"]["merges"][1] = "Ġth";
  EXPECT_THAT(std::string(LoadError(j).message()), HasSubstr("merges[1] = \"Ġth\""));
}

TEST(TokenizerErrorTest, MergeOfUnknownTokenIsNamed) {
  nlohmann::json j = TinyTokenizerJson();
  j["model"]["merges"].push_back("Ġthe zzz");
  EXPECT_THAT(std::string(LoadError(j).message()), HasSubstr("\"zzz\", which is not in the vocab"));
}

TEST(TokenizerErrorTest, UnsupportedNormalizerTypeIsNamed) {
  nlohmann::json j = TinyTokenizerJson();
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Precompiled"}}}}};
  const absl::Status s = LoadError(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(s.message()), HasSubstr("normalizer type \"Precompiled\""));
  EXPECT_THAT(std::string(s.message()), HasSubstr("normalizers[0]"));
}

TEST(TokenizerErrorTest, UnsupportedModelAndPreTokenizerTypesAreNamed) {
  nlohmann::json j = TinyTokenizerJson();
  j["model"]["type"] = "Unigram";
  EXPECT_THAT(std::string(LoadError(j).message()), HasSubstr("model type \"Unigram\""));
  j = TinyTokenizerJson();
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  EXPECT_THAT(std::string(LoadError(j).message()), HasSubstr("pre_tokenizer type \"Metaspace\""));
}

TEST(TokenizerErrorTest, BadRegexIsNamed) {
  nlohmann::json j = TinyTokenizerJson();
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  EXPECT_THAT(std::string(LoadError(j).message()), HasSubstr("(unclosed"));
}

TEST(TokenizerErrorTest, InvalidJsonAndMissingFileAreReported) {
  const std::string path = WriteTemp(nullptr);
  std::ofstream(path) << "{not json";
  auto bad = Tokenizer::FromTokenizerJson(path, "");
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("not valid JSON"));
  auto missing = Tokenizer::FromDirectory("/nonexistent/dir");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/dir"));
}

TEST(TokenizerErrorTest, UnknownGgufPreNameIsNamed) {
  GgufVocab v;
  v.model = "gpt2";
  v.pre = "mystery-pre";
  v.tokens = {"a", "b", "ab"};
  v.merges = {"a b"};
  const absl::Status s = Tokenizer::FromGgufVocab(v).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(s.message()), HasSubstr("\"mystery-pre\""));
  v.pre = "gpt2";
  v.model = "llama";
  EXPECT_THAT(std::string(Tokenizer::FromGgufVocab(v).status().message()), HasSubstr("\"llama\""));
}

TEST(TokenizerErrorTest, GgufMergeWithUnknownTokenIsNamed) {
  GgufVocab v;
  v.model = "gpt2";
  v.pre = "gpt2";
  v.tokens = {"a", "b"};
  v.merges = {"a b"};
  EXPECT_THAT(std::string(Tokenizer::FromGgufVocab(v).status().message()),
              HasSubstr("\"ab\", which is not in the vocab"));
}

}  // namespace
}  // namespace kvasir::testing
