// The HF normalizers byte-level BPE tokenizers use: NFC/NFD/NFKC/NFKD, Prepend, Replace, Lowercase
// and Sequence (a Normalizer is the flattened sequence).
#ifndef KVASIR_ENGINE_TOKENIZER_NORMALIZER_H_
#define KVASIR_ENGINE_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/utf8.h"

namespace kvasir::tokenizer_internal {

class Normalizer {
 public:
  void AddNormalForm(NormalForm form);
  void AddPrepend(std::string prefix);
  // Replaces every match of `pattern` with `content`.
  void AddReplace(std::unique_ptr<Regex> pattern, std::string content);
  void AddLowercase();
  bool empty() const { return steps_.empty(); }

  // Applies the steps in order to valid UTF-8 `text`.
  std::string Apply(std::string_view text) const;

 private:
  struct Step {
    enum Kind { kNormalForm, kPrepend, kReplace, kLowercase } kind;
    NormalForm form = NormalForm::kNfc;
    std::string text;  // kPrepend: the prefix; kReplace: the content
    std::unique_ptr<Regex> regex;
  };
  std::vector<Step> steps_;
};

}  // namespace kvasir::tokenizer_internal

#endif  // KVASIR_ENGINE_TOKENIZER_NORMALIZER_H_
