// IncrementalDetokenizer: streaming UTF-8-safe decoding.
#include <string>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace kvasir {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tok, bool skip_special)
    : tok_(tok), skip_special_(skip_special) {}

std::string IncrementalDetokenizer::Push(int32_t id) {
  if (id < 0 || id >= tok_.vocab_size() || (skip_special_ && tok_.IsSpecial(id))) return {};
  pending_.append(tok_.TokenBytes(id));
  std::string out;
  const size_t consumed = tokenizer_internal::AppendCompleteUtf8(pending_, &out);
  pending_.erase(0, consumed);
  return out;
}

std::string IncrementalDetokenizer::Flush() {
  std::string out;
  tokenizer_internal::AppendUtf8Lossy(pending_, &out);
  pending_.clear();
  return out;
}

}  // namespace kvasir
