// UTF-8 and byte-level (GPT-2 bytes_to_unicode) helpers shared by the tokenizer files.
#ifndef KVASIR_ENGINE_TOKENIZER_UTF8_H_
#define KVASIR_ENGINE_TOKENIZER_UTF8_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace kvasir::tokenizer_internal {

// Debian's Abseil has its own absl::string_view (not std::string_view): convert at the boundary.
inline absl::string_view AsAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Classifies the UTF-8 sequence starting at s[0] (s non-empty).
struct Utf8Step {
  enum Kind { kValid, kInvalid, kIncomplete } kind;
  // kValid: the sequence length; kInvalid: the length of the maximal ill-formed subpart (>= 1),
  // to be replaced by one U+FFFD; kIncomplete: s.size() (a valid prefix cut off by the end).
  size_t length;
};
Utf8Step NextUtf8(std::string_view s);

// Appends `s` to `out`, each maximal ill-formed subpart (an incomplete tail included) as U+FFFD.
void AppendUtf8Lossy(std::string_view s, std::string* out);

// Appends the longest prefix of `s` that cannot change when more bytes follow, with ill-formed
// subparts as U+FFFD, and returns how many bytes of `s` were consumed.
size_t AppendCompleteUtf8(std::string_view s, std::string* out);

// Length of the UTF-8 sequence at s[0] assuming valid input (1 for a stray byte).
size_t Utf8CharLen(unsigned char lead);

// Decodes the code point at s[0] of valid UTF-8.
char32_t DecodeCodePoint(std::string_view s, size_t* length);
void AppendCodePoint(char32_t cp, std::string* out);

// GPT-2 byte-level alphabet: byte b is represented by code point ByteToCodePoint(b).
const std::string& ByteToUnicode(unsigned char b);  // UTF-8 of that code point
std::string ByteLevelEncode(std::string_view bytes);
// Maps each character of `token` back to its byte; nullopt if a character is outside the alphabet.
std::optional<std::string> ByteLevelDecode(std::string_view token);

// Unicode normalization forms via utf8proc; `s` must be valid UTF-8.
enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };
std::string Normalize(std::string_view s, NormalForm form);

}  // namespace kvasir::tokenizer_internal

#endif  // KVASIR_ENGINE_TOKENIZER_UTF8_H_
