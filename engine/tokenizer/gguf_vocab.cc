// Tokenizer::FromGgufVocab: GGUF tokenizer.ggml.* metadata of a "gpt2" (byte-level BPE) vocab.
// tokenizer.ggml.pre names the pre-tokenizer; the mapping below follows llama.cpp's
// src/llama-vocab.cpp, written as the equivalent HF pre-tokenizer steps.
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_parts.h"
#include "engine/tokenizer/utf8.h"
#include "engine/util/status_macros.h"

namespace kvasir {

using tokenizer_internal::AddedToken;
using tokenizer_internal::PreTokenizer;
using tokenizer_internal::Regex;
using tokenizer_internal::SplitBehavior;
using tokenizer_internal::TokenizerParts;

namespace {

constexpr int32_t kTokenTypeControl = 3;
constexpr int32_t kTokenTypeUserDefined = 4;

constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kDeepSeekV3Patterns[] = {
    R"(\p{N}{1,3})",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
};
// llama.cpp's fallback for "default".
constexpr std::string_view kDefaultPatterns[] = {
    R"([\p{P}\$\+<=>\^~\|]+)",
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))",
    R"(\p{N}+)",
    R"([0-9][0-9][0-9])",
};

absl::Status AddSplits(absl::Span<const std::string_view> patterns, PreTokenizer* pre) {
  for (std::string_view pattern : patterns) {
    KV_ASSIGN_OR_RETURN(auto regex, Regex::Compile(pattern));
    pre->AddSplit(std::move(regex), SplitBehavior::kIsolated, /*invert=*/false);
  }
  return absl::OkStatus();
}

bool In(std::string_view name, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names) {
    if (n == name) return true;
  }
  return false;
}

// Fills parts->pre_tokenizer (and ignore_merges) for tokenizer.ggml.pre `pre`.
absl::Status BuildPreTokenizer(std::string_view pre, TokenizerParts* parts) {
  auto p = std::make_unique<PreTokenizer>();
  if (In(pre,
         {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"})) {
    KV_RETURN_IF_ERROR(p->AddDigits(/*individual_digits=*/true));
    KV_RETURN_IF_ERROR(p->AddByteLevel(/*add_prefix_space=*/false, /*use_regex=*/true));
  } else if (In(pre, {"gpt2", "gpt-2", "mpt", "olmo", "jais"})) {
    KV_RETURN_IF_ERROR(p->AddByteLevel(false, true));
  } else if (In(pre, {"default"})) {
    KV_RETURN_IF_ERROR(AddSplits(kDefaultPatterns, p.get()));
    KV_RETURN_IF_ERROR(p->AddByteLevel(false, false));
  } else if (In(pre, {"llama-bpe", "llama3", "llama-v3", "dbrx", "smaug-bpe"})) {
    KV_RETURN_IF_ERROR(AddSplits({kLlama3Pattern}, p.get()));
    KV_RETURN_IF_ERROR(p->AddByteLevel(false, false));
    parts->ignore_merges = true;
  } else if (In(pre, {"qwen2", "stablelm2", "hunyuan"})) {
    KV_RETURN_IF_ERROR(AddSplits({kQwen2Pattern}, p.get()));
    KV_RETURN_IF_ERROR(p->AddByteLevel(false, false));
  } else if (In(pre, {"deepseek-v3", "hunyuan-dense"})) {
    KV_RETURN_IF_ERROR(AddSplits(kDeepSeekV3Patterns, p.get()));
    KV_RETURN_IF_ERROR(p->AddByteLevel(false, false));
  } else {
    return absl::UnimplementedError(absl::StrCat(
        "GGUF tokenizer.ggml.pre \"", tokenizer_internal::AsAbsl(pre),
        "\" is not supported (known: smollm, gpt2, default, llama-bpe, qwen2, deepseek-v3 and "
        "aliases)"));
  }
  parts->pre_tokenizer = std::move(p);
  return absl::OkStatus();
}

absl::Status CheckId(const std::optional<int32_t>& id, const char* name, size_t size) {
  if (id.has_value() && (*id < 0 || static_cast<size_t>(*id) >= size)) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF tokenizer.ggml.", name, " = ", *id,
                                                   " is outside the vocab of size ", size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGgufVocab(const GgufVocab& vocab) {
  if (vocab.model != "gpt2") {
    return absl::UnimplementedError(absl::StrCat("GGUF tokenizer.ggml.model \"", vocab.model,
                                                 "\" is not supported (only \"gpt2\")"));
  }
  const size_t size = vocab.tokens.size();
  if (size == 0) return absl::InvalidArgumentError("GGUF tokenizer.ggml.tokens is empty");
  if (!vocab.token_types.empty() && vocab.token_types.size() != size) {
    return absl::InvalidArgumentError(
        absl::StrCat("GGUF tokenizer.ggml.token_type has ", vocab.token_types.size(),
                     " entries but tokenizer.ggml.tokens has ", size));
  }
  KV_RETURN_IF_ERROR(CheckId(vocab.bos_id, "bos_token_id", size));
  KV_RETURN_IF_ERROR(CheckId(vocab.eos_id, "eos_token_id", size));
  KV_RETURN_IF_ERROR(CheckId(vocab.eot_id, "eot_token_id", size));
  KV_RETURN_IF_ERROR(CheckId(vocab.eom_id, "eom_token_id", size));

  TokenizerParts parts;
  parts.source = "GGUF tokenizer.ggml";
  KV_RETURN_IF_ERROR(BuildPreTokenizer(vocab.pre, &parts));
  parts.id_to_text = vocab.tokens;
  parts.vocab.reserve(size);
  for (size_t id = 0; id < size; ++id) {
    parts.vocab[vocab.tokens[id]] = static_cast<int32_t>(id);  // a repeated text keeps its last id
    const int32_t type = vocab.token_types.empty() ? 1 : vocab.token_types[id];
    if (type == kTokenTypeControl || type == kTokenTypeUserDefined) {
      AddedToken token;
      token.id = static_cast<int32_t>(id);
      token.content = vocab.tokens[id];
      token.special = type == kTokenTypeControl;
      parts.added_tokens.push_back(std::move(token));
    }
  }
  parts.added_tokens_decode_raw = true;
  parts.merges.reserve(vocab.merges.size());
  for (size_t i = 0; i < vocab.merges.size(); ++i) {
    const std::string& m = vocab.merges[i];
    const size_t space = m.find(' ', 1);  // a merge part may itself be " " in odd vocabs
    if (space == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF tokenizer.ggml.merges[", i, "] = \"", m,
                                                     "\" is not two tokens separated by a space"));
    }
    parts.merges.emplace_back(m.substr(0, space), m.substr(space + 1));
  }
  parts.bos_id = vocab.bos_id;
  parts.eos_id = vocab.eos_id;
  if (vocab.add_bos) {
    if (!vocab.bos_id.has_value()) {
      return absl::InvalidArgumentError("GGUF add_bos_token is true but bos_token_id is missing");
    }
    parts.prefix_ids.push_back(*vocab.bos_id);
  }
  if (vocab.add_eos) {
    if (!vocab.eos_id.has_value()) {
      return absl::InvalidArgumentError("GGUF add_eos_token is true but eos_token_id is missing");
    }
    parts.suffix_ids.push_back(*vocab.eos_id);
  }
  for (const auto& id : {vocab.eot_id, vocab.eom_id}) {
    if (id.has_value()) parts.extra_stop_ids.push_back(*id);
  }
  parts.chat_template = vocab.chat_template;
  KV_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Build(std::move(parts)));
  auto text_of = [&](const std::optional<int32_t>& id) -> std::optional<std::string> {
    if (!id.has_value() || *id < 0 || *id >= tok->vocab_size()) return std::nullopt;
    return std::string(tok->TokenBytes(*id));
  };
  tok->special_token_texts_ = {text_of(vocab.bos_id), text_of(vocab.eos_id), text_of(vocab.unk_id),
                               text_of(vocab.pad_id)};
  return tok;
}

}  // namespace kvasir
