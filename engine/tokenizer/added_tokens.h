// Finds added (and special) tokens in text, as HF's AddedVocabulary does: leftmost match, longest
// first, then the single_word / lstrip / rstrip rules.
#ifndef KVASIR_ENGINE_TOKENIZER_ADDED_TOKENS_H_
#define KVASIR_ENGINE_TOKENIZER_ADDED_TOKENS_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kvasir::tokenizer_internal {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool normalized = false;   // matched in normalized text (content normalized too)
  bool single_word = false;  // matched only when not inside a word
};

class AddedTokenMatcher {
 public:
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);
  bool empty() const { return tokens_.empty(); }

  // A run of `text`: [begin, end) is either the token `id` or, with id == -1, plain text.
  struct Segment {
    size_t begin, end;
    int32_t id;
  };
  // Splits valid UTF-8 `text` into segments covering it in order; empty text runs are omitted.
  std::vector<Segment> Split(std::string_view text) const;

 private:
  // Index of the longest token matching at `pos`, or -1.
  int FindAt(std::string_view text, size_t pos) const;

  std::vector<AddedToken> tokens_;                   // sorted by content length, longest first
  std::array<std::vector<int>, 256> by_first_byte_;  // indices into tokens_, longest first
};

}  // namespace kvasir::tokenizer_internal

#endif  // KVASIR_ENGINE_TOKENIZER_ADDED_TOKENS_H_
