#include "server/api_convert.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/tokenizer.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/wire_format_lite.h"
#include "server/chat_prompt.h"

namespace kvasir::server {

namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::FileDescriptor;
using google::protobuf::internal::WireFormatLite;

constexpr int kMaxMessageDepth = 64;

// Walks the fields of a `descriptor` message in `in` (reading `wire`, which `in` was made from)
// and sets `*bad_field` to the path ("GenerateRequest.text") of the first proto3 string field
// whose bytes are not structurally valid UTF-8 -- the test the protobuf parser applies. Returns
// false when it stops early: at that field, or at bytes it cannot walk (the parser then reports
// the message as malformed).
bool FindInvalidUtf8(const Descriptor* descriptor, const std::string& path, std::string_view wire,
                     google::protobuf::io::CodedInputStream* in, int depth,
                     std::string* bad_field) {
  while (true) {
    const uint32_t tag = in->ReadTag();
    if (tag == 0) return true;  // end of the input (or of the enclosing message)
    const FieldDescriptor* field =
        descriptor->FindFieldByNumber(WireFormatLite::GetTagFieldNumber(tag));
    const bool walk =
        field != nullptr &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED &&
        (field->type() == FieldDescriptor::TYPE_STRING ||
         field->type() == FieldDescriptor::TYPE_MESSAGE);
    if (!walk) {
      if (!WireFormatLite::SkipField(in, tag)) return false;
      continue;
    }
    uint32_t length = 0;
    if (!in->ReadVarint32(&length) || length > static_cast<uint32_t>(INT_MAX)) return false;
    const std::string field_path = absl::StrCat(path, ".", field->name());
    if (field->type() == FieldDescriptor::TYPE_STRING) {
      const int start = in->CurrentPosition();
      if (!in->Skip(static_cast<int>(length))) return false;
      if (field->file()->syntax() == FileDescriptor::SYNTAX_PROTO3 &&
          !google::protobuf::internal::IsStructurallyValidUTF8(wire.data() + start,
                                                               static_cast<int>(length))) {
        *bad_field = field_path;
        return false;
      }
    } else {
      if (depth >= kMaxMessageDepth) return false;
      const auto limit = in->PushLimit(static_cast<int>(length));
      if (!FindInvalidUtf8(field->message_type(), field_path, wire, in, depth + 1, bad_field) ||
          in->BytesUntilLimit() != 0) {
        return false;
      }
      in->PopLimit(limit);
    }
  }
}

}  // namespace

absl::Status ParseRequest(std::string_view wire, google::protobuf::Message* request) {
  const Descriptor* descriptor = request->GetDescriptor();
  if (wire.size() > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat("malformed ", descriptor->name()));
  }
  std::string bad_field;
  {
    google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(wire.data()),
                                              static_cast<int>(wire.size()));
    FindInvalidUtf8(descriptor, descriptor->name(), wire, &in, 0, &bad_field);
  }
  if (!bad_field.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(bad_field, " is not valid UTF-8"));
  }
  if (!request->ParseFromArray(wire.data(), static_cast<int>(wire.size()))) {
    return absl::InvalidArgumentError(absl::StrCat("malformed ", descriptor->name()));
  }
  return absl::OkStatus();
}

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

absl::StatusOr<std::vector<int32_t>> ChatIds(const v1::ChatMessages& chat, const Engine& engine) {
  std::vector<ChatMessage> messages;
  messages.reserve(chat.messages_size());
  for (const v1::ChatMessage& m : chat.messages()) messages.push_back({m.role(), m.content()});
  ChatPromptOptions options;
  options.add_generation_prompt =
      chat.has_add_generation_prompt() ? chat.add_generation_prompt() : true;
  return ChatPromptIds(engine, messages, options);
}

absl::StatusOr<EngineRequest> ToEngineRequest(const v1::GenerateRequest& request,
                                              std::string request_id, const Engine& engine) {
  const Tokenizer* tokenizer = engine.tokenizer();
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
    case v1::GenerateRequest::kMessages: {
      auto ids = ChatIds(request.messages(), engine);
      if (!ids.ok()) return ids.status();
      out.prompt_ids = *std::move(ids);
      break;
    }
    case v1::GenerateRequest::INPUT_NOT_SET:
      return absl::InvalidArgumentError("input: set one of text, token_ids or messages");
  }
  out.max_tokens = request.has_max_tokens() ? request.max_tokens() : kDefaultMaxTokens;
  out.n = request.has_n() ? request.n() : 1;
  if (request.has_prompt_logprobs()) out.prompt_logprobs = request.prompt_logprobs();
  if (request.has_temperature()) out.sampling.temperature = request.temperature();
  if (request.has_top_p()) out.sampling.top_p = request.top_p();
  if (request.has_top_k()) out.sampling.top_k = request.top_k();
  if (request.has_seed()) out.sampling.seed = request.seed();
  if (request.has_min_p()) out.sampling.min_p = request.min_p();
  if (request.has_presence_penalty()) out.sampling.presence_penalty = request.presence_penalty();
  if (request.has_frequency_penalty()) {
    out.sampling.frequency_penalty = request.frequency_penalty();
  }
  if (request.has_repetition_penalty()) {
    out.sampling.repetition_penalty = request.repetition_penalty();
  }
  for (const auto& [token, bias] : request.logit_bias()) {
    out.sampling.logit_bias.emplace_back(token, bias);
  }
  // Map iteration order is unspecified; keep the engine's input deterministic.
  std::sort(out.sampling.logit_bias.begin(), out.sampling.logit_bias.end());
  if (request.has_min_tokens()) out.min_tokens = request.min_tokens();
  out.ignore_eos = request.has_ignore_eos() && request.ignore_eos();
  out.stop_token_ids.assign(request.stop_token_ids().begin(), request.stop_token_ids().end());
  out.stop.assign(request.stop().begin(), request.stop().end());
  out.include_stop_str_in_output =
      request.has_include_stop_str_in_output() && request.include_stop_str_in_output();
  if (request.has_logprobs()) out.logprobs = request.logprobs();
  out.priority = request.priority();
  out.cache_salt = request.cache_salt();
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

void ToProto(const std::vector<int32_t>& token_ids, const std::vector<TokenLogprob>& logprobs,
             google::protobuf::RepeatedPtrField<v1::TokenLogprob>* out) {
  for (size_t i = 0; i < logprobs.size() && i < token_ids.size(); ++i) {
    v1::TokenLogprob* lp = out->Add();
    lp->set_token_id(token_ids[i]);
    lp->set_logprob(logprobs[i].logprob);
    for (const auto& [id, logprob] : logprobs[i].top) {
      v1::TokenLogprob::Alternative* alt = lp->add_top();
      alt->set_token_id(id);
      alt->set_logprob(logprob);
    }
  }
}

void ToProto(const std::vector<TokenLogprob>& logprobs,
             google::protobuf::RepeatedPtrField<v1::TokenLogprob>* out) {
  std::vector<int32_t> ids;
  ids.reserve(logprobs.size());
  for (const TokenLogprob& lp : logprobs) ids.push_back(lp.token_id);
  ToProto(ids, logprobs, out);
}

void ToProto(const Timings& t, v1::Timings* out) {
  auto since_arrival = [&](int64_t ns) { return ns > 0 ? (ns - t.arrival_ns) * 1e-9 : 0.0; };
  out->set_queued_s(since_arrival(t.scheduled_ns));
  out->set_first_token_s(since_arrival(t.first_token_ns));
  out->set_finished_s(since_arrival(t.finished_ns));
}

void ToProtoChunk(RequestOutput out, v1::Chunk* chunk) {
  chunk->set_index(out.index);
  chunk->set_text(std::move(out.text));
  chunk->mutable_token_ids()->Add(out.token_ids.begin(), out.token_ids.end());
  ToProto(out.token_ids, out.logprobs, chunk->mutable_logprobs());
  ToProto(out.prompt_logprobs, chunk->mutable_prompt_logprobs());
}

void ToProtoComplete(RequestOutput out, v1::Complete* complete) {
  complete->set_index(out.index);
  complete->set_finish_reason(ToProto(out.finish_reason));
  complete->set_text(std::move(out.text));
  complete->mutable_token_ids()->Add(out.token_ids.begin(), out.token_ids.end());
  ToProto(out.token_ids, out.logprobs, complete->mutable_logprobs());
  ToProto(out.prompt_logprobs, complete->mutable_prompt_logprobs());
  ToProto(out.usage, complete->mutable_usage());
  ToProto(out.timings, complete->mutable_timings());
  if (!out.stop_string.empty()) {
    complete->set_stop_string(std::move(out.stop_string));
  } else if (out.stop_token >= 0) {
    complete->set_stop_token_id(out.stop_token);
  }
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
  out->set_max_num_seqs(info.max_num_seqs);
  out->set_max_batched_tokens(info.max_batched_tokens);
  out->set_kv_block_size(info.kv_block_size);
  out->set_kv_num_blocks(info.kv_num_blocks);
  out->set_kv_bytes_per_token(info.kv_bytes_per_token);
  out->set_prefix_caching(info.prefix_caching);
  out->set_tensor_parallel_size(1);
  out->set_expert_parallel_size(1);
  out->set_bos_token_id(-1);
}

void ToProto(const EngineLoads& loads, v1::Loads* out) {
  out->set_num_running(loads.num_running);
  out->set_num_waiting(loads.num_waiting);
  out->set_kv_cache_usage(loads.kv_usage);
  out->set_prefix_cache_hit_rate(loads.prefix_query_tokens > 0
                                     ? static_cast<double>(loads.prefix_hit_tokens) /
                                           static_cast<double>(loads.prefix_query_tokens)
                                     : 0.0);
  out->set_num_preemptions(loads.num_preemptions);
  out->set_num_steps(loads.num_steps);
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
