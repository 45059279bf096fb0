#include "server/api_convert.h"

#include <atomic>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/tokenizer.h"

namespace kvasir::server {

absl::StatusOr<std::vector<int32_t>> TokenizeText(const Tokenizer* tokenizer,
                                                  absl::string_view field, std::string_view text,
                                                  bool add_special_tokens) {
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  if (!IsValidUtf8(text)) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is not valid UTF-8"));
  }
  if (tokenizer == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("the model has no tokenizer; send token ids instead of ", field));
  }
  return tokenizer->Encode(text, add_special_tokens);
}

absl::StatusOr<EngineRequest> ToEngineRequest(const v1::GenerateRequest& request,
                                              std::string request_id, const Tokenizer* tokenizer) {
  EngineRequest out;
  out.id = std::move(request_id);
  switch (request.input_case()) {
    case v1::GenerateRequest::kText: {
      auto ids =
          TokenizeText(tokenizer, "text", request.text(),
                       request.has_add_special_tokens() ? request.add_special_tokens() : true);
      if (!ids.ok()) return ids.status();
      out.prompt_ids = *std::move(ids);
      break;
    }
    case v1::GenerateRequest::kTokenIds:
      if (request.token_ids().ids().empty()) {
        return absl::InvalidArgumentError("token_ids.ids is empty");
      }
      out.prompt_ids.assign(request.token_ids().ids().begin(), request.token_ids().ids().end());
      break;
    case v1::GenerateRequest::INPUT_NOT_SET:
      return absl::InvalidArgumentError("input: set one of text or token_ids");
  }
  out.max_tokens = request.has_max_tokens() ? request.max_tokens() : kDefaultMaxTokens;
  if (request.has_temperature()) out.sampling.temperature = request.temperature();
  if (request.has_top_p()) out.sampling.top_p = request.top_p();
  if (request.has_top_k()) out.sampling.top_k = request.top_k();
  if (request.has_seed()) out.sampling.seed = request.seed();
  out.ignore_eos = request.has_ignore_eos() && request.ignore_eos();
  out.stop_token_ids.assign(request.stop_token_ids().begin(), request.stop_token_ids().end());
  return out;
}

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kAbort:
      return v1::FINISH_REASON_ABORT;
    case FinishReason::kError:
      return v1::FINISH_REASON_ERROR;
    case FinishReason::kNone:
      break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void ToProto(const Usage& usage, v1::Usage* out) {
  out->set_prompt_tokens(usage.prompt_tokens);
  out->set_completion_tokens(usage.completion_tokens);
  out->set_cached_prompt_tokens(usage.cached_prompt_tokens);
}

void ToProto(const ModelInfo& info, v1::ModelInfo* out) {
  out->set_name(info.name);
  out->set_architecture(info.architecture);
  out->set_format(info.format);
  out->set_weight_dtype(info.weight_dtype);
  out->set_vocab_size(info.vocab_size);
  out->set_max_model_len(info.max_model_len);
  out->set_num_layers(info.num_layers);
  out->set_hidden_size(info.hidden_size);
  out->mutable_stop_token_ids()->Add(info.stop_ids.begin(), info.stop_ids.end());
  out->set_kernels(info.kernels);
}

std::string NewRequestId() {
  static const uint64_t prefix = [] {
    std::random_device rd;
    return (uint64_t{rd()} << 32) ^ rd();
  }();
  static std::atomic<uint64_t> counter{0};
  // The counter makes ids unique within the process; the random prefix across restarts.
  return absl::StrFormat("kv-%08x%08x", static_cast<uint32_t>(prefix >> 32),
                         static_cast<uint32_t>(prefix) + static_cast<uint32_t>(counter++));
}

}  // namespace kvasir::server
