// What a loader (tokenizer.json or GGUF) hands to Tokenizer::Build.
#ifndef KVASIR_ENGINE_TOKENIZER_TOKENIZER_PARTS_H_
#define KVASIR_ENGINE_TOKENIZER_TOKENIZER_PARTS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace kvasir::tokenizer_internal {

struct TokenizerParts {
  std::string source;                               // file or "GGUF vocab", for error messages
  absl::flat_hash_map<std::string, int32_t> vocab;  // the BPE model's vocab
  // Optional: the text of every id, for vocabs whose texts repeat (GGUF); else derived from vocab.
  std::vector<std::string> id_to_text;
  std::vector<std::pair<std::string, std::string>> merges;  // rank order
  bool ignore_merges = false;
  std::unique_ptr<Normalizer> normalizer;  // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::vector<AddedToken> added_tokens;
  // Added tokens whose bytes are their text as is (GGUF control/user-defined tokens); all other
  // tokens decode through the byte-level alphabet, falling back to their text (HF ByteLevel).
  bool added_tokens_decode_raw = false;
  std::vector<int32_t> prefix_ids, suffix_ids;  // add_special
  std::optional<int32_t> bos_id, eos_id;
  std::vector<int32_t> extra_stop_ids;  // e.g. GGUF eot/eom
  std::string chat_template;
  SpecialTokenTexts special_token_texts;  // tokenizer_config.json; GGUF fills them after Build
};

}  // namespace kvasir::tokenizer_internal

#endif  // KVASIR_ENGINE_TOKENIZER_TOKENIZER_PARTS_H_
