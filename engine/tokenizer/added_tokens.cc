#include "engine/tokenizer/added_tokens.h"

#include <algorithm>
#include <utility>

#include "engine/tokenizer/utf8.h"
#include "utf8proc.h"

namespace kvasir::tokenizer_internal {
namespace {

// Rust char::is_whitespace (Unicode White_Space).
bool IsWhitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// A word character (\w): letter, mark, number or connector punctuation.
bool IsWordChar(char32_t c) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

// The code point ending at `end` (exclusive) in valid UTF-8, and its start.
char32_t CodePointBefore(std::string_view text, size_t end, size_t* start) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) --i;
  *start = i;
  size_t len;
  return DecodeCodePoint(text.substr(i, end - i), &len);
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) {
  for (AddedToken& t : tokens) {
    if (!t.content.empty()) tokens_.push_back(std::move(t));
  }
  std::stable_sort(tokens_.begin(), tokens_.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.content.size() > b.content.size();
  });
  for (size_t i = 0; i < tokens_.size(); ++i) {
    by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(
        static_cast<int>(i));
  }
}

int AddedTokenMatcher::FindAt(std::string_view text, size_t pos) const {
  for (int index : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
    const std::string& c = tokens_[index].content;
    if (text.compare(pos, c.size(), c) == 0) return index;
  }
  return -1;
}

std::vector<AddedTokenMatcher::Segment> AddedTokenMatcher::Split(std::string_view text) const {
  std::vector<Segment> out;
  size_t text_start = 0;  // start of the pending plain-text run
  size_t pos = 0;
  while (pos < text.size()) {
    const int index =
        by_first_byte_[static_cast<unsigned char>(text[pos])].empty() ? -1 : FindAt(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[index];
    size_t start = pos, stop = pos + token.content.size();
    pos = stop;  // as aho-corasick's find_iter, scanning resumes after the match either way
    if (token.single_word) {
      size_t unused, len;
      const bool word_before = start > 0 && IsWordChar(CodePointBefore(text, start, &unused));
      const bool word_after =
          stop < text.size() && IsWordChar(DecodeCodePoint(text.substr(stop), &len));
      if (word_before || word_after) continue;
    }
    if (token.lstrip) {
      while (start > text_start) {
        size_t prev;
        if (!IsWhitespace(CodePointBefore(text, start, &prev))) break;
        start = prev;
      }
    }
    if (token.rstrip) {
      size_t len;
      while (stop < text.size() && IsWhitespace(DecodeCodePoint(text.substr(stop), &len))) {
        stop += len;
      }
      pos = stop;
    }
    if (start > text_start) out.push_back({text_start, start, -1});
    out.push_back({start, stop, token.id});
    text_start = stop;
  }
  if (text_start < text.size()) out.push_back({text_start, text.size(), -1});
  return out;
}

}  // namespace kvasir::tokenizer_internal
