// Chat templates against transformers' apply_chat_template (goldens and Jinja cases from
// tools/gen_chat_template_goldens.py), plus errors, limits and the tokenizers' template sources.
#include "engine/tokenizer/chat_template.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/model_loader.h"
#include "engine/tokenizer/jinja_parser.h"
#include "engine/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kvasir {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;

std::string FixtureDir() { return std::string(KVASIR_FIXTURES_DIR) + "/chat_templates"; }
std::string SharedTokenizerDir(const std::string& model) {
  return std::string(KVASIR_SHARED_FIXTURES_DIR) + "/tokenizers/" + model;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<std::string> OptionalString(const Json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_string()) return std::nullopt;
  return j[key].get<std::string>();
}

ChatTemplateInput InputFromGolden(const Json& line, const SpecialTokenTexts& special) {
  ChatTemplateInput in;
  for (const Json& m : line["messages"]) {
    ChatMessage msg{m["role"], m["content"], OptionalString(m, "reasoning_content")};
    in.messages.push_back(std::move(msg));
  }
  in.add_generation_prompt = line["add_generation_prompt"];
  in.bos_token = special.bos;
  in.eos_token = special.eos;
  in.unk_token = special.unk;
  in.pad_token = special.pad;
  for (const auto& [k, v] : line["kwargs"].items()) {
    if (v.is_boolean()) in.kwargs.emplace_back(k, v.get<bool>());
    if (v.is_string()) in.kwargs.emplace_back(k, v.get<std::string>());
  }
  return in;
}

// Renders every conversation of <model>.jsonl; returns how many match byte for byte.
int RenderGoldens(const std::string& model, const std::string& source,
                  const SpecialTokenTexts& special) {
  auto tmpl = ChatTemplate::Parse(source);
  EXPECT_TRUE(tmpl.ok()) << tmpl.status();
  if (!tmpl.ok()) return 0;
  std::ifstream in(FixtureDir() + "/" + model + ".jsonl");
  std::string text;
  int total = 0, passed = 0;
  while (std::getline(in, text)) {
    const Json line = Json::parse(text);
    ++total;
    absl::StatusOr<std::string> out = tmpl->Render(InputFromGolden(line, special));
    if (!out.ok()) {
      ADD_FAILURE() << model << " golden " << total << ": " << out.status();
      continue;
    }
    const std::string expected = line["expected"];
    if (*out == expected) {
      ++passed;
    } else {
      ADD_FAILURE() << model << " golden " << total << " differs:\n got: " << Json(*out).dump()
                    << "\nwant: " << Json(expected).dump();
    }
  }
  EXPECT_GE(total, 200) << model << ".jsonl has too few conversations";
  EXPECT_EQ(passed, total) << model;
  std::cout << model << ": " << passed << "/" << total << " goldens byte-identical\n";
  return passed;
}

SpecialTokenTexts GoldenSpecialTokens(const std::string& model) {
  std::ifstream in(FixtureDir() + "/" + model + ".jsonl");
  std::string text;
  std::getline(in, text);
  const Json s = Json::parse(text)["special_tokens"];
  return {OptionalString(s, "bos_token"), OptionalString(s, "eos_token"),
          OptionalString(s, "unk_token"), OptionalString(s, "pad_token")};
}

TEST(ChatTemplateGoldenTest, Qwen3MatchesTransformers) {
  auto tok = Tokenizer::FromDirectory(SharedTokenizerDir("qwen3"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  RenderGoldens("qwen3", (*tok)->chat_template(), (*tok)->special_token_texts());
}

TEST(ChatTemplateGoldenTest, DeepSeekV3MatchesTransformers) {
  auto tok = Tokenizer::FromDirectory(SharedTokenizerDir("deepseek_v3"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  RenderGoldens("deepseek_v3", (*tok)->chat_template(), (*tok)->special_token_texts());
}

TEST(ChatTemplateGoldenTest, SmolLm2MatchesTransformers) {
  // The template text as read from the GGUF by the generator (the GGUF test below checks that the
  // product reads the same text); the special tokens are the GGUF's.
  RenderGoldens("smollm2", ReadFile(FixtureDir() + "/smollm2_chat_template.jinja"),
                GoldenSpecialTokens("smollm2"));
}

TEST(ChatTemplateTokenizerTest, JsonTokenizersExposeTemplateAndSpecialTokens) {
  for (const std::string model : {"qwen3", "deepseek_v3"}) {
    auto tok = Tokenizer::FromDirectory(SharedTokenizerDir(model));
    ASSERT_TRUE(tok.ok()) << tok.status();
    const Json config = Json::parse(ReadFile(SharedTokenizerDir(model) + "/tokenizer_config.json"));
    EXPECT_EQ((*tok)->chat_template(), config["chat_template"].get<std::string>()) << model;
    const SpecialTokenTexts want = GoldenSpecialTokens(model);  // transformers' special_tokens_map
    const SpecialTokenTexts& got = (*tok)->special_token_texts();
    EXPECT_EQ(got.bos, want.bos) << model;
    EXPECT_EQ(got.eos, want.eos) << model;
    EXPECT_EQ(got.unk, want.unk) << model;
    EXPECT_EQ(got.pad, want.pad) << model;
  }
}

TEST(ChatTemplateTokenizerTest, ConfigListFormPicksDefaultTemplate) {
  const std::string dir = ::testing::TempDir() + "/chat_template_list";
  std::filesystem::create_directories(dir);
  std::filesystem::remove(dir + "/chat_template.jinja");  // left by an earlier run
  std::filesystem::copy_file(SharedTokenizerDir("qwen3") + "/tokenizer.json",
                             dir + "/tokenizer.json",
                             std::filesystem::copy_options::overwrite_existing);
  std::ofstream(dir + "/tokenizer_config.json")
      << R"({"chat_template": [{"name": "tool_use", "template": "T"},
                               {"name": "default", "template": "D{{ bos_token }}"}],
            "bos_token": {"content": "<|im_start|>"}})";
  auto tok = Tokenizer::FromDirectory(dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->chat_template(), "D{{ bos_token }}");
  EXPECT_EQ((*tok)->special_token_texts().bos, "<|im_start|>");
  std::ofstream(dir + "/chat_template.jinja") << "from the .jinja file";
  tok = Tokenizer::FromDirectory(dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->chat_template(), "from the .jinja file");
}

std::string SmolLm2GgufPath() {
  if (const char* env = std::getenv("KVASIR_DEFAULT_MODEL"); env != nullptr && *env != '\0') {
    return env;
  }
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "") +
         "/.cache/kvasir/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

TEST(ChatTemplateTokenizerTest, GgufTokenizerExposesSmolLm2Template) {
  if (!std::filesystem::exists(SmolLm2GgufPath())) {
    GTEST_SKIP() << "no model at " << SmolLm2GgufPath() << "; run tools/setup.sh";
  }
  auto tok = LoadTokenizer(SmolLm2GgufPath());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->chat_template(), ReadFile(FixtureDir() + "/smollm2_chat_template.jinja"));
  const SpecialTokenTexts want = GoldenSpecialTokens("smollm2");
  EXPECT_EQ((*tok)->special_token_texts().bos, want.bos);
  EXPECT_EQ((*tok)->special_token_texts().eos, want.eos);
  auto tmpl = ChatTemplate::Parse((*tok)->chat_template());
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  ChatTemplateInput in;
  in.messages = {{"user", "Hi", std::nullopt}};
  in.add_generation_prompt = true;
  EXPECT_EQ(*tmpl->Render(in),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

}  // namespace
}  // namespace kvasir
