// Shared loaders for the tokenizer tests: the real tokenizers (loaded once per process) and a
// tiny synthetic byte-level tokenizer.json.
#ifndef KVASIR_TESTS_TOKENIZER_TOKENIZER_FIXTURES_H_
#define KVASIR_TESTS_TOKENIZER_TOKENIZER_FIXTURES_H_

#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace kvasir::testing {

std::string FixturesDir();          // tests/fixtures/tokenizer
std::string SharedTokenizersDir();  // ../shared/fixtures/tokenizers

const Tokenizer& SmolLm2FromGguf();
const Tokenizer& SmolLm2FromJson();
const Tokenizer& Qwen3();
const Tokenizer& DeepSeekV3();

// Reads tests/fixtures/tokenizer/smollm2_vocab.json into a GgufVocab.
GgufVocab LoadSmolLm2Vocab();

// A byte-level tokenizer.json: the 256 byte tokens (ids 0..255), merges "Ġ t", "Ġt h", "Ġth e"
// (ids 256..258), added special token "<|eot|>" (259) and non-special "<x>" (260); GPT-2
// ByteLevel pre-tokenizer and decoder.
nlohmann::json TinyTokenizerJson();
// Writes `j` (and `config` if not null) to a fresh temp dir; returns the tokenizer.json path.
std::string WriteTemp(const nlohmann::json& j, const nlohmann::json& config = nullptr);

}  // namespace kvasir::testing

#endif  // KVASIR_TESTS_TOKENIZER_TOKENIZER_FIXTURES_H_
