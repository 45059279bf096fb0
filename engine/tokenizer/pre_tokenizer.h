// HF pre-tokenizers for byte-level BPE: Split (regex or literal, any SplitDelimiterBehavior,
// invert), Digits, ByteLevel, and Sequence (a PreTokenizer is the flattened sequence).
#ifndef KVASIR_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
#define KVASIR_ENGINE_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/regex.h"

namespace kvasir::tokenizer_internal {

// The GPT-2 pattern HF's ByteLevel pre-tokenizer splits with when use_regex is true.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// HF SplitDelimiterBehavior.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Parses "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous".
absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name);

class PreTokenizer {
 public:
  void AddSplit(std::unique_ptr<Regex> regex, SplitBehavior behavior, bool invert);
  // HF Digits: each digit its own piece (individual) or runs of digits together.
  absl::Status AddDigits(bool individual_digits);
  // HF ByteLevel: optionally prefixes a space to pieces not starting with one, optionally splits
  // with kGpt2Pattern, then maps every byte to the GPT-2 byte-level alphabet.
  absl::Status AddByteLevel(bool add_prefix_space, bool use_regex);

  // Splits `text` (valid UTF-8) into the pieces the BPE model encodes one by one.
  void PreTokenize(std::string_view text, std::vector<std::string>* pieces) const;

 private:
  struct Step {
    enum Kind { kSplit, kByteLevel } kind;
    std::unique_ptr<Regex> regex;  // kSplit; kByteLevel with use_regex
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;
  };
  static void ApplySplit(const Step& step, const std::string& piece, std::vector<std::string>* out);
  std::vector<Step> steps_;
};

}  // namespace kvasir::tokenizer_internal

#endif  // KVASIR_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
