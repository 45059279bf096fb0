// Tokenizer assembly, Encode/Decode and accessors; the loaders are in tokenizer_json.cc and
// gguf_vocab.cc.
#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/bpe.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/tokenizer_parts.h"
#include "engine/tokenizer/utf8.h"
#include "engine/util/status_macros.h"

namespace kvasir {

using tokenizer_internal::AddedToken;
using tokenizer_internal::AddedTokenMatcher;
using tokenizer_internal::BpeModel;
using tokenizer_internal::TokenizerParts;

namespace {

// Texts of end-of-turn tokens across model families; present ones join stop_ids().
constexpr std::string_view kEndOfTurnTexts[] = {
    "<|im_end|>",    "<|endoftext|>",         "<|eot_id|>",
    "<|eom_id|>",    "<|end_of_text|>",       "<|end|>",
    "<end_of_turn>", "<｜end▁of▁sentence｜>", "<|return|>",
};

}  // namespace

Tokenizer::Tokenizer(TokenizerParts& parts)
    : normalizer_(std::move(parts.normalizer)),
      pre_tokenizer_(std::move(parts.pre_tokenizer)),
      prefix_ids_(std::move(parts.prefix_ids)),
      suffix_ids_(std::move(parts.suffix_ids)),
      bos_id_(parts.bos_id),
      eos_id_(parts.eos_id),
      chat_template_(std::move(parts.chat_template)),
      special_token_texts_(std::move(parts.special_token_texts)) {}

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Build(TokenizerParts parts) {
  int32_t size = 0;
  for (const auto& [text, id] : parts.vocab) {
    if (id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(parts.source, ": vocab entry \"", text, "\" has negative id ", id));
    }
    size = std::max(size, id + 1);
  }
  for (const AddedToken& t : parts.added_tokens) size = std::max(size, t.id + 1);
  size = std::max(size, static_cast<int32_t>(parts.id_to_text.size()));

  std::unique_ptr<Tokenizer> tok(new Tokenizer(parts));  // leaves vocab, merges, added tokens
  tok->id_to_text_.resize(size);
  tok->id_to_bytes_.resize(size);
  tok->is_special_.assign(size, false);
  for (const auto& [text, id] : parts.vocab) tok->id_to_text_[id] = text;
  for (size_t id = 0; id < parts.id_to_text.size(); ++id)
    tok->id_to_text_[id] = parts.id_to_text[id];
  std::vector<bool> is_added(size, false);
  std::vector<AddedToken> raw_tokens, normalized_tokens;
  for (AddedToken t : parts.added_tokens) {
    if (t.id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(parts.source, ": added token \"", t.content, "\" has negative id ", t.id));
    }
    tok->id_to_text_[t.id] = t.content;
    tok->is_special_[t.id] = t.special;
    is_added[t.id] = true;
    if (t.normalized && tok->normalizer_ != nullptr) {
      t.content = tok->normalizer_->Apply(t.content);
      normalized_tokens.push_back(std::move(t));
    } else if (t.normalized) {
      normalized_tokens.push_back(std::move(t));
    } else {
      raw_tokens.push_back(std::move(t));
    }
  }
  for (int32_t id = 0; id < size; ++id) {
    const std::string& text = tok->id_to_text_[id];
    if (!tok->id_to_text_[id].empty()) tok->text_to_id_.try_emplace(text, id);
    std::optional<std::string> bytes;
    if (!(is_added[id] && parts.added_tokens_decode_raw)) {
      bytes = tokenizer_internal::ByteLevelDecode(text);
    }
    tok->id_to_bytes_[id] = bytes.has_value() ? *std::move(bytes) : text;
  }
  tok->raw_matcher_ = std::make_unique<AddedTokenMatcher>(std::move(raw_tokens));
  tok->normalized_matcher_ = std::make_unique<AddedTokenMatcher>(std::move(normalized_tokens));

  for (int32_t id : parts.extra_stop_ids) tok->stop_ids_.push_back(id);
  if (tok->eos_id_.has_value()) tok->stop_ids_.push_back(*tok->eos_id_);
  for (std::string_view text : kEndOfTurnTexts) {
    auto it = tok->text_to_id_.find(tokenizer_internal::AsAbsl(text));
    if (it != tok->text_to_id_.end() && tok->is_special_[it->second]) {
      tok->stop_ids_.push_back(it->second);
    }
  }
  std::sort(tok->stop_ids_.begin(), tok->stop_ids_.end());
  tok->stop_ids_.erase(std::unique(tok->stop_ids_.begin(), tok->stop_ids_.end()),
                       tok->stop_ids_.end());
  for (int32_t id : tok->prefix_ids_) {
    if (id < 0 || id >= size) {
      return absl::InvalidArgumentError(absl::StrCat(parts.source, ": BOS/prefix id ", id,
                                                     " is outside the vocab of size ", size));
    }
  }
  KV_ASSIGN_OR_RETURN(tok->bpe_, BpeModel::Create(std::move(parts.vocab), parts.merges,
                                                  parts.ignore_merges, parts.source));
  return tok;
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special) const {
  std::string valid;
  if (!IsValidUtf8(text)) {
    tokenizer_internal::AppendUtf8Lossy(text, &valid);
    text = valid;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + prefix_ids_.size() + suffix_ids_.size() + 1);
  if (add_special) ids.insert(ids.end(), prefix_ids_.begin(), prefix_ids_.end());
  if (raw_matcher_->empty()) {
    EncodeSegment(text, &ids);
  } else {
    for (const AddedTokenMatcher::Segment& seg : raw_matcher_->Split(text)) {
      if (seg.id >= 0) {
        ids.push_back(seg.id);
      } else {
        EncodeSegment(text.substr(seg.begin, seg.end - seg.begin), &ids);
      }
    }
  }
  if (add_special) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

void Tokenizer::EncodeSegment(std::string_view text, std::vector<int32_t>* ids) const {
  std::string normalized;
  if (normalizer_ != nullptr) {
    normalized = normalizer_->Apply(text);
    text = normalized;
  }
  if (normalized_matcher_->empty()) {
    EncodeNormalized(text, ids);
    return;
  }
  for (const AddedTokenMatcher::Segment& seg : normalized_matcher_->Split(text)) {
    if (seg.id >= 0) {
      ids->push_back(seg.id);
    } else {
      EncodeNormalized(text.substr(seg.begin, seg.end - seg.begin), ids);
    }
  }
}

void Tokenizer::EncodeNormalized(std::string_view text, std::vector<int32_t>* ids) const {
  std::vector<std::string> pieces;
  pre_tokenizer_->PreTokenize(text, &pieces);
  for (const std::string& piece : pieces) bpe_->Encode(piece, ids);
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (skip_special && is_special_[id]) continue;
    bytes.append(id_to_bytes_[id]);
  }
  if (IsValidUtf8(bytes)) return bytes;
  std::string out;
  tokenizer_internal::AppendUtf8Lossy(bytes, &out);
  return out;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && is_special_[id];
}

std::optional<int32_t> Tokenizer::TokenId(std::string_view token_text) const {
  auto it = text_to_id_.find(tokenizer_internal::AsAbsl(token_text));
  if (it == text_to_id_.end()) return std::nullopt;
  return it->second;
}

std::string_view Tokenizer::TokenText(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return id_to_text_[id];
}

std::string_view Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return id_to_bytes_[id];
}

}  // namespace kvasir
