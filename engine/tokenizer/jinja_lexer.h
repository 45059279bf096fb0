// Lexer of the chat-template Jinja subset, configured as transformers configures jinja2:
// trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, default delimiters
// ({{ }}, {% %}, {# #}) with the -/+ whitespace-control modifiers. Newlines (\r\n, \r, \n) are
// normalized to \n as jinja2 does.
#ifndef KVASIR_ENGINE_TOKENIZER_JINJA_LEXER_H_
#define KVASIR_ENGINE_TOKENIZER_JINJA_LEXER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvasir::jinja {

enum class TokenType {
  kData,        // template text, whitespace control already applied
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,  // text holds the decoded literal
  kInt,
  kFloat,
  kOp,  // text holds the operator, e.g. "//", "==", "("
  kEof,
};

struct Token {
  TokenType type;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
};

// Splits `source` into tokens ending with kEof. InvalidArgument naming the line for an
// unterminated tag, comment or string, an unbalanced bracket or an unexpected character.
absl::StatusOr<std::vector<Token>> Lex(std::string_view source);

}  // namespace kvasir::jinja

#endif  // KVASIR_ENGINE_TOKENIZER_JINJA_LEXER_H_
