#include "tests/tokenizer/tokenizer_fixtures.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "engine/tokenizer/utf8.h"
#include "gtest/gtest.h"

namespace kvasir::testing {
namespace {

const Tokenizer& Check(absl::StatusOr<std::unique_ptr<Tokenizer>> tok, const char* what) {
  EXPECT_TRUE(tok.ok()) << what << ": " << tok.status();
  if (!tok.ok()) std::abort();                               // every later use would dereference it
  return **new std::unique_ptr<Tokenizer>(*std::move(tok));  // lives for the process
}

}  // namespace

std::string FixturesDir() { return std::string(KVASIR_FIXTURES_DIR) + "/tokenizer"; }
std::string SharedTokenizersDir() {
  return std::string(KVASIR_SHARED_FIXTURES_DIR) + "/tokenizers";
}

GgufVocab LoadSmolLm2Vocab() {
  const std::string path = FixturesDir() + "/smollm2_vocab.json";
  std::ifstream in(path);
  EXPECT_TRUE(in.is_open()) << "cannot read the fixture " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  GgufVocab v;
  EXPECT_TRUE(j.is_object()) << path << " is not a JSON object";
  if (!j.is_object()) return v;
  v.model = j["model"];
  v.pre = j["pre"];
  v.tokens = j["tokens"].get<std::vector<std::string>>();
  v.token_types = j["token_types"].get<std::vector<int32_t>>();
  v.merges = j["merges"].get<std::vector<std::string>>();
  v.add_bos = j["add_bos"];
  v.add_eos = j["add_eos"];
  if (j.contains("bos_id")) v.bos_id = j["bos_id"].get<int32_t>();
  if (j.contains("eos_id")) v.eos_id = j["eos_id"].get<int32_t>();
  if (j.contains("unk_id")) v.unk_id = j["unk_id"].get<int32_t>();
  if (j.contains("pad_id")) v.pad_id = j["pad_id"].get<int32_t>();
  return v;
}

const Tokenizer& SmolLm2FromGguf() {
  static const Tokenizer& tok = Check(Tokenizer::FromGgufVocab(LoadSmolLm2Vocab()), "smollm2 gguf");
  return tok;
}
const Tokenizer& SmolLm2FromJson() {
  static const Tokenizer& tok =
      Check(Tokenizer::FromDirectory(FixturesDir() + "/smollm2"), "smollm2 json");
  return tok;
}
const Tokenizer& Qwen3() {
  static const Tokenizer& tok =
      Check(Tokenizer::FromDirectory(SharedTokenizersDir() + "/qwen3"), "qwen3");
  return tok;
}
const Tokenizer& DeepSeekV3() {
  static const Tokenizer& tok =
      Check(Tokenizer::FromDirectory(SharedTokenizersDir() + "/deepseek_v3"), "deepseek_v3");
  return tok;
}

nlohmann::json TinyTokenizerJson() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) {
    vocab[tokenizer_internal::ByteToUnicode(static_cast<unsigned char>(b))] = b;
  }
  vocab["Ġt"] = 256;
  vocab["Ġth"] = 257;
  vocab["Ġthe"] = 258;
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 259}, {"content", "<|eot|>"}, {"special", true}, {"normalized", false}},
        {{"id", 260}, {"content", "<x>"}, {"special", false}, {"normalized", false}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"Ġ t", "Ġt h", "Ġth e"}}}},
  };
  return j;
}

std::string WriteTemp(const nlohmann::json& j, const nlohmann::json& config) {
  static std::atomic<int> counter{0};
  const auto dir = std::filesystem::temp_directory_path() /
                   ("kvasir_tok_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::create_directories(dir);
  EXPECT_TRUE(static_cast<bool>(std::ofstream(dir / "tokenizer.json") << j.dump()))
      << "cannot write " << dir;
  if (!config.is_null()) {
    EXPECT_TRUE(static_cast<bool>(std::ofstream(dir / "tokenizer_config.json") << config.dump()))
        << "cannot write " << dir;
  }
  return (dir / "tokenizer.json").string();
}

}  // namespace kvasir::testing
