// A PCRE2 (UTF + UCP, JIT-compiled) regex used for HF Split/ByteLevel patterns, which are written
// in Oniguruma syntax; the subset they use (\p{..}, (?!..), (?i:..), classes) means the same here.
#ifndef KVASIR_ENGINE_TOKENIZER_REGEX_H_
#define KVASIR_ENGINE_TOKENIZER_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace kvasir::tokenizer_internal {

class Regex {
 public:
  // Errors: InvalidArgument naming the pattern and PCRE2's message and offset.
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern);
  // Escapes `literal` so that it matches itself.
  static std::string Quote(std::string_view literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends [begin, end) byte offsets of the successive non-overlapping matches in `text`, which
  // must be valid UTF-8 (not re-checked). Empty matches are reported and skipped past one char.
  void FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const;

 private:
  explicit Regex(void* code) : code_(code) {}
  void* code_;  // pcre2_code_8*
};

}  // namespace kvasir::tokenizer_internal

#endif  // KVASIR_ENGINE_TOKENIZER_REGEX_H_
