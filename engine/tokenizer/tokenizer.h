// Byte-level BPE tokenizers (GPT-2 family: SmolLM2, Qwen3, DeepSeek-V3, Llama 3) loaded from a
// Hugging Face tokenizer.json or from GGUF tokenizer metadata, and an incremental detokenizer for
// streaming output.
//
// Thread safety: a Tokenizer is immutable after construction; every const method may be called
// from any number of threads at once. An IncrementalDetokenizer belongs to one stream (one thread).
#ifndef KVASIR_ENGINE_TOKENIZER_TOKENIZER_H_
#define KVASIR_ENGINE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace kvasir {

namespace tokenizer_internal {
class AddedTokenMatcher;
class BpeModel;
class Normalizer;
class PreTokenizer;
struct TokenizerParts;
}  // namespace tokenizer_internal

// What GGUF metadata tokenizer.ggml.* holds; filled by the model loader.
struct GgufVocab {
  std::string model;  // tokenizer.ggml.model; only "gpt2" (byte-level BPE) is supported.
  // tokenizer.ggml.pre: "smollm", "gpt2", "default", "llama-bpe"/"llama3", "qwen2",
  // "deepseek-v3" (and aliases listed in gguf_vocab.cc).
  std::string pre;
  std::vector<std::string> tokens;   // byte-level-encoded token strings, index = id.
  std::vector<int32_t> token_types;  // 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
                                     // 6 byte; empty means all normal.
  std::vector<std::string> merges;   // "a b", in rank order.
  std::optional<int32_t> bos_id, eos_id, unk_id, pad_id, eot_id, eom_id;
  bool add_bos = false, add_eos = false;
  std::string chat_template;  // tokenizer.chat_template; empty if absent
};

// The special-token texts transformers gives a chat template (its special_tokens_map); a token
// the model does not define is nullopt.
struct SpecialTokenTexts {
  std::optional<std::string> bos, eos, unk, pad;
};

// Returns true iff `s` is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF).
bool IsValidUtf8(std::string_view s);

class Tokenizer {
 public:
  // Loads a tokenizer.json (model.type "BPE" with a ByteLevel pre-tokenizer or decoder) and,
  // when `tokenizer_config_json_path` is non-empty and the file exists, its tokenizer_config.json
  // (bos_token, eos_token, unk_token, pad_token, add_bos_token, add_eos_token, chat_template).
  // Errors: NotFound for a missing tokenizer.json; InvalidArgument naming the file and field for
  // malformed content; Unimplemented naming the type for an unsupported
  // normalizer/pre-tokenizer/decoder/model.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromTokenizerJson(
      const std::string& tokenizer_json_path, const std::string& tokenizer_config_json_path);
  // Builds a tokenizer from GGUF metadata. Token types 3 (control) and 4 (user-defined) become
  // added tokens matched in text; control tokens are special. The special-token texts are those
  // of the bos/eos/unk/pad ids. Errors: Unimplemented for a model
  // other than "gpt2" or an unknown pre name (named in the message); InvalidArgument for
  // inconsistent vocab (merge naming a missing token, ids out of range).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGgufVocab(const GgufVocab& vocab);
  // Loads `dir`/tokenizer.json and, if present, `dir`/tokenizer_config.json; a
  // `dir`/chat_template.jinja replaces the config's chat_template (as in transformers).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromDirectory(const std::string& dir);

  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;
  ~Tokenizer();

  // Encodes `text` as HF `tokenizers` does. Added/special tokens appearing in the text are matched
  // as tokens (leftmost, longest first), honouring lstrip/rstrip/single_word/normalized. With
  // `add_special`, prepends/appends what the post-processor (TemplateProcessing) adds, or, when it
  // adds nothing, BOS/EOS per tokenizer_config add_bos_token/add_eos_token (GGUF: add_bos/add_eos).
  // Invalid UTF-8 in `text` is first replaced by U+FFFD (use IsValidUtf8 to reject it instead).
  std::vector<int32_t> Encode(std::string_view text, bool add_special) const;

  // Concatenates the bytes of `ids` and returns them as UTF-8, each invalid sequence replaced by
  // U+FFFD (HF decode / Python errors='replace'). With `skip_special`, special tokens are dropped.
  // Ids outside [0, vocab_size()) are skipped, as HF does.
  std::string Decode(absl::Span<const int32_t> ids, bool skip_special) const;

  // One past the largest token id (vocab plus added tokens).
  int32_t vocab_size() const { return static_cast<int32_t>(id_to_text_.size()); }
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  // EOS plus end-of-turn tokens present in the vocab (<|im_end|>, <|endoftext|>, <|eot_id|>,
  // <|eom_id|>, <｜end▁of▁sentence｜>, ...), sorted, without duplicates.
  const std::vector<int32_t>& stop_ids() const { return stop_ids_; }
  // True for special added tokens (HF special=true; GGUF control tokens). False out of range.
  bool IsSpecial(int32_t id) const;
  // The id whose vocab string is `token_text` (byte-level-encoded form, e.g. "Ġthe").
  std::optional<int32_t> TokenId(std::string_view token_text) const;
  // The vocab string of `id` (byte-level-encoded form); empty out of range.
  std::string_view TokenText(int32_t id) const;
  // The raw bytes `id` decodes to (may be part of a UTF-8 sequence); empty out of range.
  std::string_view TokenBytes(int32_t id) const;

  // The model's chat template (Jinja source, see chat_template.h): GGUF tokenizer.chat_template,
  // or tokenizer_config.json chat_template (a string, or from a list of {name, template} the one
  // named "default"); empty when the model has none.
  const std::string& chat_template() const { return chat_template_; }
  // bos_token/eos_token/unk_token/pad_token as a chat template receives them.
  const SpecialTokenTexts& special_token_texts() const { return special_token_texts_; }

 private:
  // Takes the normalizer, pre-tokenizer, prefix/suffix and BOS/EOS out of `parts`.
  explicit Tokenizer(tokenizer_internal::TokenizerParts& parts);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Build(tokenizer_internal::TokenizerParts parts);
  void EncodeSegment(std::string_view text, std::vector<int32_t>* ids) const;
  void EncodeNormalized(std::string_view text, std::vector<int32_t>* ids) const;

  std::vector<std::string> id_to_text_;
  std::vector<std::string> id_to_bytes_;
  std::vector<bool> is_special_;
  absl::flat_hash_map<std::string, int32_t> text_to_id_;
  std::unique_ptr<tokenizer_internal::BpeModel> bpe_;
  std::unique_ptr<tokenizer_internal::Normalizer> normalizer_;  // null: identity
  std::unique_ptr<tokenizer_internal::PreTokenizer> pre_tokenizer_;
  // Added tokens matched on raw text (normalized=false) and on normalized text (normalized=true).
  std::unique_ptr<tokenizer_internal::AddedTokenMatcher> raw_matcher_;
  std::unique_ptr<tokenizer_internal::AddedTokenMatcher> normalized_matcher_;
  std::vector<int32_t> prefix_ids_, suffix_ids_;  // added by Encode(..., add_special=true)
  std::optional<int32_t> bos_id_, eos_id_;
  std::vector<int32_t> stop_ids_;
  std::string chat_template_;
  SpecialTokenTexts special_token_texts_;
};

// Turns a growing token stream into text deltas that never split a UTF-8 sequence. An incomplete
// trailing sequence is held back; a sequence that can no longer become valid is emitted as U+FFFD
// (maximal-subpart rule, as Decode). Invariant: the concatenation of every Push() output and the
// final Flush() equals tok.Decode(all ids, skip_special). `tok` must outlive this object.
class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tok, bool skip_special = true);
  // Appends `id` and returns the newly completed text (possibly empty; always valid UTF-8).
  std::string Push(int32_t id);
  // Returns whatever is held back, an incomplete tail as U+FFFD, and resets the stream.
  std::string Flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::string pending_;  // bytes not yet emitted: an incomplete UTF-8 sequence at most
};

}  // namespace kvasir

#endif  // KVASIR_ENGINE_TOKENIZER_TOKENIZER_H_
