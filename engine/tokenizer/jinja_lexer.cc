#include "engine/tokenizer/jinja_lexer.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/jinja_value.h"
#include "engine/tokenizer/utf8.h"

namespace kvasir::jinja {
namespace {

using tokenizer_internal::AppendCodePoint;

// Longest first, so that "//" wins over "/".
constexpr std::string_view kOperators[] = {"**", "//", "==", "!=", ">=", "<=", "+", "-", "*",
                                           "/",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                                           ">",  "<",  "=",  ".",  ":",  "|",  ",", ";"};

bool IsWs(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Python str.rstrip() on UTF-8 text.
std::string_view RStripPy(std::string_view s) {
  std::vector<std::string_view> cps = CodePoints(s);
  size_t end = s.size();
  for (auto it = cps.rbegin(); it != cps.rend(); ++it) {
    size_t len = 0;
    const char32_t cp = it->size() == 1 ? static_cast<unsigned char>((*it)[0])
                                        : tokenizer_internal::DecodeCodePoint(*it, &len);
    if (!IsPyWhitespace(cp)) break;
    end -= it->size();
  }
  return s.substr(0, end);
}

// Length of the Python-whitespace prefix of s.
size_t LStripPyLength(std::string_view s) {
  size_t n = 0;
  for (std::string_view cp : CodePoints(s)) {
    size_t len = 0;
    const char32_t c = cp.size() == 1 ? static_cast<unsigned char>(cp[0])
                                      : tokenizer_internal::DecodeCodePoint(cp, &len);
    if (!IsPyWhitespace(c)) break;
    n += cp.size();
  }
  return n;
}

// jinja2 keeps template source lines as they are, joined by \n, and drops one trailing newline.
std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(NormalizeNewlines(source)) {}

  absl::StatusOr<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      size_t p = src_.find('{', pos_);
      while (p != std::string::npos && p + 1 < src_.size() && src_[p + 1] != '{' &&
             src_[p + 1] != '%' && src_[p + 1] != '#') {
        p = src_.find('{', p + 1);
      }
      if (p == std::string::npos || p + 1 >= src_.size()) {
        Emit(TokenType::kData, src_.substr(pos_));
        break;
      }
      const char kind = src_[p + 1];
      const char sign =
          p + 2 < src_.size() && (src_[p + 2] == '-' || src_[p + 2] == '+') ? src_[p + 2] : '\0';
      std::string_view text = std::string_view(src_).substr(pos_, p - pos_);
      const int text_newlines = static_cast<int>(std::count(text.begin(), text.end(), '\n'));
      if (sign == '-') {
        text = RStripPy(text);
      } else if (sign != '+' && kind != '{') {
        const size_t l_pos = text.rfind('\n') == std::string_view::npos ? 0 : text.rfind('\n') + 1;
        if ((l_pos > 0 || line_starting_) && l_pos < text.size() &&
            LStripPyLength(text.substr(l_pos)) == text.size() - l_pos) {
          text = text.substr(0, l_pos);
        }
      }
      if (!text.empty()) Emit(TokenType::kData, text);
      line_ += text_newlines;
      pos_ = p + 2 + (sign ? 1 : 0);
      absl::Status s = kind == '#' ? LexComment() : LexTag(kind == '{');
      if (!s.ok()) return s;
    }
    Emit(TokenType::kEof, "");
    return std::move(tokens_);
  }

 private:
  void Emit(TokenType type, std::string_view text) {
    Token t;
    t.type = type;
    t.text = std::string(text);
    t.line = line_;
    tokens_.push_back(std::move(t));
  }

  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("chat template line ", line_, ": ", std::string(what)));
  }

  // Consumes the end tag starting at pos_ (its optional sign included) and what follows it.
  void ConsumeEnd(char sign, size_t end_len, bool trim_newline) {
    const size_t start = pos_;
    pos_ += end_len + (sign ? 1 : 0);
    if (sign == '-') {
      pos_ += LStripPyLength(std::string_view(src_).substr(pos_));
    } else if (sign == '\0' && trim_newline && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
    line_ += static_cast<int>(std::count(src_.begin() + start, src_.begin() + pos_, '\n'));
    line_starting_ = pos_ > start && src_[pos_ - 1] == '\n';
  }

  absl::Status LexComment() {
    const size_t end = src_.find("#}", pos_);
    if (end == std::string::npos) return Error("missing end of comment tag");
    char sign = '\0';
    if (end > pos_ && (src_[end - 1] == '-' || src_[end - 1] == '+')) sign = src_[end - 1];
    const size_t body_end = sign ? end - 1 : end;
    line_ += static_cast<int>(std::count(src_.begin() + pos_, src_.begin() + body_end, '\n'));
    pos_ = body_end;
    ConsumeEnd(sign, 2, /*trim_newline=*/true);
    return absl::OkStatus();
  }

  // After {{ or {%: tokens up to the matching }} or %}.
  absl::Status LexTag(bool variable) {
    Emit(variable ? TokenType::kVarBegin : TokenType::kBlockBegin, "");
    const std::string_view end = variable ? "}}" : "%}";
    std::vector<char> brackets;
    while (true) {
      while (pos_ < src_.size() && IsWs(src_[pos_])) {
        if (src_[pos_] == '\n') ++line_;
        ++pos_;
      }
      if (pos_ >= src_.size())
        return Error(variable ? "unexpected end of template in {{ }}"
                              : "unexpected end of template in {% %}");
      const std::string_view rest = std::string_view(src_).substr(pos_);
      if (brackets.empty()) {
        char sign = '\0';
        if ((rest[0] == '-' || (!variable && rest[0] == '+')) && rest.substr(1, 2) == end) {
          sign = rest[0];
        }
        if (sign || rest.substr(0, 2) == end) {
          Emit(variable ? TokenType::kVarEnd : TokenType::kBlockEnd, "");
          ConsumeEnd(sign, 2, /*trim_newline=*/!variable);
          return absl::OkStatus();
        }
      }
      absl::Status s = LexOne(rest, &brackets);
      if (!s.ok()) return s;
    }
  }

  absl::Status LexOne(std::string_view rest, std::vector<char>* brackets) {
    const char c = rest[0];
    if (std::isdigit(static_cast<unsigned char>(c))) return LexNumber(rest);
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t n = 1;
      while (n < rest.size() &&
             (std::isalnum(static_cast<unsigned char>(rest[n])) || rest[n] == '_'))
        ++n;
      Emit(TokenType::kName, rest.substr(0, n));
      pos_ += n;
      return absl::OkStatus();
    }
    if (c == '\'' || c == '"') return LexString(rest);
    for (std::string_view op : kOperators) {
      if (rest.substr(0, op.size()) != op) continue;
      if (op == "(" || op == "[" || op == "{") {
        brackets->push_back(op == "(" ? ')' : op == "[" ? ']' : '}');
      } else if (op == ")" || op == "]" || op == "}") {
        if (brackets->empty() || brackets->back() != op[0]) {
          return Error(absl::StrCat("unexpected '", std::string(op), "'"));
        }
        brackets->pop_back();
      }
      Emit(TokenType::kOp, op);
      pos_ += op.size();
      return absl::OkStatus();
    }
    return Error(absl::StrCat("unexpected character '", std::string(rest.substr(0, 1)), "'"));
  }

  absl::Status LexNumber(std::string_view rest) {
    size_t n = 0;
    auto digits = [&] {
      while (n < rest.size() && (std::isdigit(static_cast<unsigned char>(rest[n])) ||
                                 (rest[n] == '_' && n + 1 < rest.size() &&
                                  std::isdigit(static_cast<unsigned char>(rest[n + 1]))))) {
        ++n;
      }
    };
    digits();
    bool is_float = false;
    if (n + 1 < rest.size() && rest[n] == '.' &&
        std::isdigit(static_cast<unsigned char>(rest[n + 1]))) {
      ++n;
      digits();
      is_float = true;
    }
    if (n < rest.size() && (rest[n] == 'e' || rest[n] == 'E')) {
      size_t m = n + 1;
      if (m < rest.size() && (rest[m] == '+' || rest[m] == '-')) ++m;
      if (m < rest.size() && std::isdigit(static_cast<unsigned char>(rest[m]))) {
        n = m;
        digits();
        is_float = true;
      }
    }
    std::string text;
    for (char ch : rest.substr(0, n)) {
      if (ch != '_') text.push_back(ch);
    }
    Emit(is_float ? TokenType::kFloat : TokenType::kInt, rest.substr(0, n));
    errno = 0;
    if (is_float) {
      tokens_.back().float_value = std::strtod(text.c_str(), nullptr);
    } else {
      tokens_.back().int_value = std::strtoll(text.c_str(), nullptr, 10);
      if (errno == ERANGE) return Error(absl::StrCat("integer literal ", text, " is out of range"));
    }
    pos_ += n;
    return absl::OkStatus();
  }

  absl::Status LexString(std::string_view rest) {
    const char quote = rest[0];
    std::string value;
    size_t i = 1;
    while (i < rest.size() && rest[i] != quote) {
      if (rest[i] != '\\') {
        value.push_back(rest[i++]);
        continue;
      }
      if (i + 1 >= rest.size()) break;
      absl::Status s = DecodeEscape(rest, &i, &value);
      if (!s.ok()) return s;
    }
    if (i >= rest.size()) return Error("unterminated string literal");
    Emit(TokenType::kString, "");
    tokens_.back().text = std::move(value);
    line_ += static_cast<int>(std::count(rest.begin(), rest.begin() + i, '\n'));
    pos_ += i + 1;
    return absl::OkStatus();
  }

  // Python's unicode-escape decoding of the escape at rest[*i] == '\\'.
  absl::Status DecodeEscape(std::string_view rest, size_t* i, std::string* out) const {
    const char e = rest[*i + 1];
    *i += 2;
    switch (e) {
      case '\n':
        return absl::OkStatus();
      case '\\':
      case '\'':
      case '"':
        out->push_back(e);
        return absl::OkStatus();
      case 'a':
        out->push_back('\a');
        return absl::OkStatus();
      case 'b':
        out->push_back('\b');
        return absl::OkStatus();
      case 'f':
        out->push_back('\f');
        return absl::OkStatus();
      case 'n':
        out->push_back('\n');
        return absl::OkStatus();
      case 'r':
        out->push_back('\r');
        return absl::OkStatus();
      case 't':
        out->push_back('\t');
        return absl::OkStatus();
      case 'v':
        out->push_back('\v');
        return absl::OkStatus();
      case 'x':
      case 'u':
      case 'U': {
        const size_t width = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        char32_t cp = 0;
        for (size_t k = 0; k < width; ++k) {
          const int h = *i + k < rest.size() ? HexValue(rest[*i + k]) : -1;
          if (h < 0) return Error(absl::StrCat("truncated \\", std::string(1, e), " escape"));
          cp = cp * 16 + static_cast<char32_t>(h);
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
          return Error("string escape is not a valid code point");
        }
        *i += width;
        AppendCodePoint(cp, out);
        return absl::OkStatus();
      }
      default:
        break;
    }
    if (e >= '0' && e <= '7') {
      char32_t cp = e - '0';
      for (int k = 0; k < 2 && *i < rest.size() && rest[*i] >= '0' && rest[*i] <= '7'; ++k) {
        cp = cp * 8 + (rest[(*i)++] - '0');
      }
      AppendCodePoint(cp, out);
      return absl::OkStatus();
    }
    out->push_back('\\');  // an unknown escape stays as written
    *i -= 1;
    return absl::OkStatus();
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Lex(std::string_view source) { return Lexer(source).Run(); }

}  // namespace kvasir::jinja
