#include "engine/request_validation.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace kvasir {
namespace {

constexpr size_t kMaxStopStrings = 64;
constexpr size_t kMaxStopStringBytes = 1024;
// Matching costs O(total stop bytes) per token; keep a hostile request from taxing every step.
constexpr size_t kMaxTotalStopBytes = 4096;
constexpr size_t kMaxStopTokenIds = 128;
constexpr int32_t kMaxLogprobs = 20;

}  // namespace

absl::Status ValidateRequest(const EngineRequest& r, const RequestLimits& limits) {
  if (r.prompt_ids.empty()) return absl::InvalidArgumentError("prompt is empty");
  for (int32_t id : r.prompt_ids) {
    if (id < 0 || id >= limits.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prompt token id ", id, " is outside the vocabulary [0, ", limits.vocab_size, ")"));
    }
  }
  if (r.n < 1 || r.n > kMaxChoices) {
    return absl::InvalidArgumentError(
        absl::StrCat("n must be in [1, ", kMaxChoices, "], got ", r.n));
  }
  if (r.max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be >= 1, got ", r.max_tokens));
  }
  const int64_t total = static_cast<int64_t>(r.prompt_ids.size()) + r.max_tokens;
  if (total > limits.max_model_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt (", r.prompt_ids.size(), " tokens) + max_tokens (", r.max_tokens,
                     ") exceeds the context length of ", limits.max_model_len, " tokens"));
  }
  if (!limits.can_ever_fit(total)) {
    return absl::InvalidArgumentError(absl::StrCat("prompt + max_tokens (", total,
                                                   " tokens) can never fit the KV cache of ",
                                                   limits.kv_capacity_tokens, " tokens"));
  }
  const SamplingParams& s = r.sampling;
  if (!std::isfinite(s.temperature) || s.temperature < 0.0f) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be a finite number >= 0, got ", s.temperature));
  }
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", s.top_p));
  }
  if (s.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", s.top_k));
  }
  if (r.stop_token_ids.size() > kMaxStopTokenIds) {
    return absl::InvalidArgumentError(absl::StrCat("stop_token_ids: at most ", kMaxStopTokenIds,
                                                   " ids, got ", r.stop_token_ids.size()));
  }
  for (int32_t id : r.stop_token_ids) {
    if (id < 0 || id >= limits.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop_token_ids: id ", id, " is outside the vocabulary"));
    }
  }
  if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("min_p must be in [0, 1], got ", s.min_p));
  }
  if (!(std::isfinite(s.repetition_penalty) && s.repetition_penalty > 0.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("repetition_penalty must be a finite number > 0, got ", s.repetition_penalty));
  }
  if (!(s.presence_penalty >= -2.0f && s.presence_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("presence_penalty must be in [-2, 2], got ", s.presence_penalty));
  }
  if (!(s.frequency_penalty >= -2.0f && s.frequency_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("frequency_penalty must be in [-2, 2], got ", s.frequency_penalty));
  }
  for (const auto& [id, bias] : s.logit_bias) {
    if (id < 0 || id >= limits.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("logit_bias: token id ", id, " is outside the vocabulary"));
    }
    if (!(bias >= -100.0f && bias <= 100.0f)) {
      return absl::InvalidArgumentError(
          absl::StrCat("logit_bias: bias for token ", id, " must be in [-100, 100], got ", bias));
    }
  }
  if (r.min_tokens < 0 || r.min_tokens > r.max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("min_tokens must be in [0, max_tokens (",
                                                   r.max_tokens, ")], got ", r.min_tokens));
  }
  if (r.logprobs.has_value() && (*r.logprobs < 0 || *r.logprobs > kMaxLogprobs)) {
    return absl::InvalidArgumentError(
        absl::StrCat("logprobs must be in [0, ", kMaxLogprobs, "], got ", *r.logprobs));
  }
  if (r.prompt_logprobs.has_value() &&
      (*r.prompt_logprobs < 0 || *r.prompt_logprobs > kMaxLogprobs)) {
    return absl::InvalidArgumentError(absl::StrCat("prompt_logprobs must be in [0, ", kMaxLogprobs,
                                                   "], got ", *r.prompt_logprobs));
  }
  if (!r.stop.empty() && !limits.has_tokenizer) {
    return absl::InvalidArgumentError("stop strings need a tokenizer, and this model has none");
  }
  if (r.stop.size() > kMaxStopStrings) {
    return absl::InvalidArgumentError(
        absl::StrCat("stop: at most ", kMaxStopStrings, " strings, got ", r.stop.size()));
  }
  size_t total_stop_bytes = 0;
  for (const std::string& stop : r.stop) total_stop_bytes += stop.size();
  if (total_stop_bytes > kMaxTotalStopBytes) {
    return absl::InvalidArgumentError(absl::StrCat("stop: at most ", kMaxTotalStopBytes,
                                                   " bytes in all, got ", total_stop_bytes));
  }
  for (const std::string& stop : r.stop) {
    if (stop.empty() || stop.size() > kMaxStopStringBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stop: each string must have 1 to ", kMaxStopStringBytes, " bytes, got ", stop.size()));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvasir
