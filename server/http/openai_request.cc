#include "server/http/openai_request.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/engine.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/util/status_macros.h"
#include "server/chat_prompt.h"
#include "server/http/openai_error.h"

namespace kvasir::server::http {

namespace {

using json = nlohmann::json;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kInt32Min = std::numeric_limits<int32_t>::min();
constexpr int kMaxJsonDepth = 64;

bool IsInteger(const json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 9.2e18;
}

int64_t AsInt64(const json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    return u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
               ? std::numeric_limits<int64_t>::max()
               : static_cast<int64_t>(u);
  }
  return v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(v.get<double>());
}

// Strictly typed reads of an object's fields; null counts as absent. Errors name the field.
class Fields {
 public:
  Fields(const json& object, std::string prefix) : object_(object), prefix_(std::move(prefix)) {}

  std::string Name(absl::string_view name) const { return absl::StrCat(prefix_, name); }

  const json* Get(const char* name) const {
    auto it = object_.find(name);
    return (it == object_.end() || it->is_null()) ? nullptr : &*it;
  }

  absl::Status TypeError(const char* name, absl::string_view wanted) const {
    return FieldError(Name(name), absl::StrCat(Name(name), " must be ", wanted, ", got ",
                                               Get(name)->type_name()));
  }

  absl::Status Int(const char* name, int64_t min, int64_t max, std::optional<int64_t>* out) const {
    const json* v = Get(name);
    if (v == nullptr) return absl::OkStatus();
    if (!IsInteger(*v)) return TypeError(name, "an integer");
    const int64_t i = AsInt64(*v);
    if (i < min || i > max) {
      return FieldError(Name(name),
                        absl::StrCat(Name(name), " must be in [", min, ", ", max, "], got ", i));
    }
    *out = i;
    return absl::OkStatus();
  }

  // An int32 field in [min, kInt32Max], written into *out when present.
  absl::Status Int32(const char* name, int64_t min, int32_t* out) const {
    std::optional<int64_t> v;
    KV_RETURN_IF_ERROR(Int(name, min, kInt32Max, &v));
    if (v) *out = static_cast<int32_t>(*v);
    return absl::OkStatus();
  }

  absl::Status Float(const char* name, float* out) const {
    const json* v = Get(name);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number()) return TypeError(name, "a number");
    *out = static_cast<float>(v->get<double>());
    return absl::OkStatus();
  }

  absl::Status Bool(const char* name, bool* out) const {
    const json* v = Get(name);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_boolean()) return TypeError(name, "a boolean");
    *out = v->get<bool>();
    return absl::OkStatus();
  }

  absl::Status String(const char* name, std::optional<std::string>* out) const {
    const json* v = Get(name);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_string()) return TypeError(name, "a string");
    *out = v->get<std::string>();
    return absl::OkStatus();
  }

 private:
  const json& object_;
  std::string prefix_;
};

absl::Status ParseModel(const Fields& f, const ServedModel& model) {
  std::optional<std::string> name;
  KV_RETURN_IF_ERROR(f.String("model", &name));
  if (!name.has_value()) return FieldError("model", "model is required");
  if (*name != model.name) return ModelNotFoundError(*name);
  return absl::OkStatus();
}

absl::Status ParseStop(const Fields& f, EngineRequest& r) {
  const json* v = f.Get("stop");
  if (v == nullptr) return absl::OkStatus();
  if (v->is_string()) {
    r.stop.push_back(v->get<std::string>());
    return absl::OkStatus();
  }
  if (!v->is_array()) return f.TypeError("stop", "a string or an array of strings");
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      return FieldError("stop",
                        absl::StrCat("stop[", i, "] must be a string, got ", (*v)[i].type_name()));
    }
    r.stop.push_back((*v)[i].get<std::string>());
  }
  return absl::OkStatus();
}

// `v` (an array) as 32-bit integers; InvalidArgument naming `name`[i] otherwise.
absl::Status ParseIntArray(const json& v, const char* name, std::vector<int32_t>* out) {
  for (size_t i = 0; i < v.size(); ++i) {
    const json& e = v[i];
    if (!IsInteger(e) || AsInt64(e) < kInt32Min || AsInt64(e) > kInt32Max) {
      return FieldError(name, absl::StrCat(name, "[", i, "] must be a 32-bit integer, got ",
                                           e.is_number() ? e.dump() : e.type_name()));
    }
    out->push_back(static_cast<int32_t>(AsInt64(e)));
  }
  return absl::OkStatus();
}

absl::Status ParseIntList(const Fields& f, const char* name, std::vector<int32_t>* out) {
  const json* v = f.Get(name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_array()) return f.TypeError(name, "an array of integers");
  return ParseIntArray(*v, name, out);
}

absl::Status ParseLogitBias(const Fields& f, SamplingParams& s) {
  const json* v = f.Get("logit_bias");
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_object()) return f.TypeError("logit_bias", "an object of token id -> bias");
  for (const auto& [key, bias] : v->items()) {
    int32_t token = 0;
    if (!absl::SimpleAtoi(key, &token)) {
      return FieldError("logit_bias",
                        absl::StrCat("logit_bias keys must be token ids, got \"", key, "\""));
    }
    if (!bias.is_number()) {
      return FieldError("logit_bias", absl::StrCat("logit_bias[\"", key,
                                                   "\"] must be a number, got ", bias.type_name()));
    }
    s.logit_bias.emplace_back(token, static_cast<float>(bias.get<double>()));
  }
  std::sort(s.logit_bias.begin(), s.logit_bias.end());
  return absl::OkStatus();
}

absl::Status ParseSampling(const Fields& f, EngineRequest& r) {
  SamplingParams& s = r.sampling;
  KV_RETURN_IF_ERROR(f.Float("temperature", &s.temperature));
  KV_RETURN_IF_ERROR(f.Float("top_p", &s.top_p));
  KV_RETURN_IF_ERROR(f.Int32("top_k", kInt32Min, &s.top_k));
  if (s.top_k == -1) s.top_k = 0;  // vLLM's spelling of "off"
  KV_RETURN_IF_ERROR(f.Float("min_p", &s.min_p));
  KV_RETURN_IF_ERROR(f.Float("presence_penalty", &s.presence_penalty));
  KV_RETURN_IF_ERROR(f.Float("frequency_penalty", &s.frequency_penalty));
  KV_RETURN_IF_ERROR(f.Float("repetition_penalty", &s.repetition_penalty));
  std::optional<int64_t> seed;
  KV_RETURN_IF_ERROR(f.Int("seed", std::numeric_limits<int64_t>::min(),
                           std::numeric_limits<int64_t>::max(), &seed));
  if (seed) s.seed = static_cast<uint64_t>(*seed);
  return ParseLogitBias(f, s);
}

// Fields both endpoints share: sampling, stopping, n, streaming, vLLM's extras.
absl::Status ParseCommon(const Fields& f, OpenAiRequest& out) {
  EngineRequest& r = out.engine;
  KV_RETURN_IF_ERROR(ParseSampling(f, r));
  // Bounded here, before anything is sized by it (Engine::Submit checks it too).
  std::optional<int64_t> n;
  KV_RETURN_IF_ERROR(f.Int("n", 1, kMaxChoices, &n));
  if (n) r.n = static_cast<int32_t>(*n);
  std::optional<int64_t> best_of;
  KV_RETURN_IF_ERROR(f.Int("best_of", 1, kInt32Max, &best_of));
  if (best_of && *best_of != r.n) {
    return FieldError("best_of", absl::StrCat("best_of (", *best_of, ") other than n (", r.n,
                                              ") is not supported"));
  }
  KV_RETURN_IF_ERROR(f.Int32("min_tokens", kInt32Min, &r.min_tokens));
  KV_RETURN_IF_ERROR(f.Bool("ignore_eos", &r.ignore_eos));
  KV_RETURN_IF_ERROR(ParseStop(f, r));
  KV_RETURN_IF_ERROR(ParseIntList(f, "stop_token_ids", &r.stop_token_ids));
  KV_RETURN_IF_ERROR(f.Bool("include_stop_str_in_output", &r.include_stop_str_in_output));
  KV_RETURN_IF_ERROR(f.Int32("priority", kInt32Min, &r.priority));
  std::optional<std::string> salt;
  KV_RETURN_IF_ERROR(f.String("cache_salt", &salt));
  if (salt) r.cache_salt = *salt;
  KV_RETURN_IF_ERROR(f.Bool("stream", &out.stream));
  if (const json* options = f.Get("stream_options")) {
    if (!options->is_object()) return f.TypeError("stream_options", "an object");
    if (!out.stream) {
      return FieldError("stream_options", "stream_options is only allowed when stream is true");
    }
    KV_RETURN_IF_ERROR(
        Fields(*options, "stream_options.").Bool("include_usage", &out.include_usage));
  }
  return absl::OkStatus();
}

// max_tokens and max_completion_tokens (the newer name wins); unset: `fallback`.
absl::Status ParseMaxTokens(const Fields& f, std::optional<int32_t> fallback, EngineRequest& r,
                            const ServedModel& model) {
  std::optional<int64_t> max_tokens, max_completion_tokens;
  KV_RETURN_IF_ERROR(f.Int("max_tokens", kInt32Min, kInt32Max, &max_tokens));
  KV_RETURN_IF_ERROR(f.Int("max_completion_tokens", kInt32Min, kInt32Max, &max_completion_tokens));
  if (max_completion_tokens) {
    r.max_tokens = static_cast<int32_t>(*max_completion_tokens);
  } else if (max_tokens) {
    r.max_tokens = static_cast<int32_t>(*max_tokens);
  } else if (fallback) {
    r.max_tokens = *fallback;
  } else {
    // Up to the context (and the KV pool): what is left after the prompt.
    const int64_t room = std::min(model.max_model_len, model.kv_capacity_tokens) -
                         static_cast<int64_t>(r.prompt_ids.size());
    if (room < 1) {
      return FieldError("messages", absl::StrCat("the prompt is ", r.prompt_ids.size(),
                                                 " tokens; this model's context length is ",
                                                 model.max_model_len, " tokens"));
    }
    r.max_tokens = static_cast<int32_t>(std::min<int64_t>(room, kInt32Max));
  }
  return absl::OkStatus();
}

absl::Status Tokenize(const ServedModel& model, const char* field, const std::string& text,
                      bool add_special, std::vector<int32_t>* ids) {
  if (text.empty()) return FieldError(field, absl::StrCat(field, " is empty"));
  if (model.tokenizer == nullptr) {
    return FieldError(field, "this model has no tokenizer; send the prompt as token ids");
  }
  *ids = model.tokenizer->Encode(text, add_special);
  return absl::OkStatus();
}

absl::Status ParsePrompt(const Fields& f, const ServedModel& model, EngineRequest& r) {
  const json* prompt = f.Get("prompt");
  if (prompt == nullptr) return FieldError("prompt", "prompt is required");
  bool add_special = true;
  KV_RETURN_IF_ERROR(f.Bool("add_special_tokens", &add_special));
  if (prompt->is_string()) {
    return Tokenize(model, "prompt", prompt->get<std::string>(), add_special, &r.prompt_ids);
  }
  if (!prompt->is_array() || prompt->empty()) {
    return FieldError("prompt",
                      absl::StrCat("prompt must be a string, an array of token ids, or an "
                                   "array holding one of those, got ",
                                   prompt->is_array() ? "an empty array" : prompt->type_name()));
  }
  const json& first = (*prompt)[0];
  if (first.is_string() || first.is_array()) {
    if (prompt->size() > 1) {
      return FieldError("prompt", absl::StrCat("batched prompts (", prompt->size(),
                                               ") are not supported; send one prompt per "
                                               "request"));
    }
    if (first.is_string()) {
      return Tokenize(model, "prompt", first.get<std::string>(), add_special, &r.prompt_ids);
    }
    return ParseIntArray(first, "prompt", &r.prompt_ids);  // in place: no deep copy
  }
  return ParseIntList(f, "prompt", &r.prompt_ids);
}

absl::StatusOr<std::string> MessageContent(const json& content, const std::string& field) {
  if (content.is_null()) return std::string();
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) {
    return FieldError(field, absl::StrCat(field,
                                          " must be a string or an array of content parts, "
                                          "got ",
                                          content.type_name()));
  }
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string name = absl::StrCat(field, "[", i, "]");
    auto type = part.is_object() ? part.find("type") : part.end();
    if (!part.is_object() || type == part.end() || *type != "text") {
      return FieldError(name, absl::StrCat(name,
                                           ": only {\"type\": \"text\"} content parts are "
                                           "supported"));
    }
    auto part_text = part.find("text");
    if (part_text == part.end() || !part_text->is_string()) {
      return FieldError(name, absl::StrCat(name, ".text must be a string"));
    }
    text += part_text->get<std::string>();
  }
  return text;
}

absl::Status ParseMessages(const Fields& f, std::vector<ChatMessage>* out) {
  const json* messages = f.Get("messages");
  if (messages == nullptr) return FieldError("messages", "messages is required");
  if (!messages->is_array() || messages->empty()) {
    return FieldError(
        "messages", absl::StrCat("messages must be a non-empty array, got ",
                                 messages->is_array() ? "an empty array" : messages->type_name()));
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string name = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) {
      return FieldError(name, absl::StrCat(name, " must be an object, got ", m.type_name()));
    }
    const Fields mf(m, absl::StrCat(name, "."));
    ChatMessage message;
    std::optional<std::string> role, reasoning;
    KV_RETURN_IF_ERROR(mf.String("role", &role));
    if (!role) return FieldError(mf.Name("role"), absl::StrCat(mf.Name("role"), " is required"));
    message.role = *role;
    auto content = m.find("content");
    if (content != m.end()) {
      KV_ASSIGN_OR_RETURN(message.content, MessageContent(*content, mf.Name("content")));
    }
    KV_RETURN_IF_ERROR(mf.String("reasoning_content", &reasoning));
    message.reasoning_content = std::move(reasoning);
    out->push_back(std::move(message));
  }
  return absl::OkStatus();
}

absl::Status ParseTemplateKwargs(const Fields& f, ChatPromptOptions& input) {
  const json* kwargs = f.Get("chat_template_kwargs");
  if (kwargs == nullptr) return absl::OkStatus();
  if (!kwargs->is_object()) return f.TypeError("chat_template_kwargs", "an object");
  for (const auto& [key, value] : kwargs->items()) {
    if (value.is_boolean()) {
      input.kwargs.emplace_back(key, value.get<bool>());
    } else if (value.is_number_integer()) {
      input.kwargs.emplace_back(key, AsInt64(value));
    } else if (value.is_number()) {
      input.kwargs.emplace_back(key, value.get<double>());
    } else if (value.is_string()) {
      input.kwargs.emplace_back(key, value.get<std::string>());
    } else {
      return FieldError(
          "chat_template_kwargs",
          absl::StrCat("chat_template_kwargs.", key, " must be a boolean, number or string, got ",
                       value.type_name()));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseChatLogprobs(const Fields& f, OpenAiRequest& out) {
  bool logprobs = false;
  std::optional<int64_t> top;
  KV_RETURN_IF_ERROR(f.Bool("logprobs", &logprobs));
  KV_RETURN_IF_ERROR(f.Int("top_logprobs", 0, 20, &top));
  if (top && !logprobs) {
    return FieldError("top_logprobs", "top_logprobs needs logprobs: true");
  }
  if (logprobs) out.top_logprobs = static_cast<int32_t>(top.value_or(0));
  return absl::OkStatus();
}

absl::Status RejectUnsupportedChat(const Fields& f) {
  for (const char* name : {"tools", "functions"}) {
    const json* v = f.Get(name);
    if (v != nullptr && !(v->is_array() && v->empty())) {
      return FieldError(name, absl::StrCat(name, " (tool calling) is not supported"));
    }
  }
  if (const json* format = f.Get("response_format")) {
    auto type = format->is_object() ? format->find("type") : format->end();
    if (!format->is_object() || type == format->end() || *type != "text") {
      return FieldError("response_format",
                        "only response_format {\"type\": \"text\"} is supported");
    }
  }
  return absl::OkStatus();
}

// The prompt ids of the conversation, rendered with the model's chat template.
absl::Status ChatPrompt(const Fields& f, const ServedModel& model, std::vector<int32_t>* ids) {
  std::vector<ChatMessage> messages;
  KV_RETURN_IF_ERROR(ParseMessages(f, &messages));
  ChatPromptOptions options;
  KV_RETURN_IF_ERROR(f.Bool("add_generation_prompt", &options.add_generation_prompt));
  KV_RETURN_IF_ERROR(ParseTemplateKwargs(f, options));
  if (model.engine == nullptr) return FieldError("messages", "chat is not available");
  absl::StatusOr<std::vector<int32_t>> prompt = ChatPromptIds(*model.engine, messages, options);
  // Every failure is about this request's messages (or a model without a usable template):
  // a 400, whatever code the renderer chose.
  if (!prompt.ok()) return FieldError("messages", prompt.status().message());
  if (prompt->empty()) return FieldError("messages", "the chat template rendered an empty prompt");
  *ids = *std::move(prompt);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<json> ParseJsonBody(const std::string& body) {
  if (!IsValidUtf8(body)) {
    return FieldError("body", "the request body is not valid UTF-8");
  }
  // Requests are a few levels deep; a hostile nesting is refused while parsing (deep values
  // would make recursive copies and comparisons overflow the loop thread's stack).
  bool too_deep = false;
  const json::parser_callback_t depth_check = [&too_deep](int depth, json::parse_event_t, json&) {
    if (depth > kMaxJsonDepth) too_deep = true;
    return !too_deep;
  };
  json parsed = json::parse(body, depth_check, /*allow_exceptions=*/false);
  if (too_deep) {
    return FieldError(
        "body", absl::StrCat("the request body nests deeper than ", kMaxJsonDepth, " levels"));
  }
  if (parsed.is_discarded()) {
    // Parse again for the position and reason (exceptions stay inside this function).
    std::string detail;
    try {
      const json strict = json::parse(body);
      (void)strict;
    } catch (const json::parse_error& e) {
      detail = absl::StrCat(" at byte ", e.byte, ": ", e.what());
    }
    return FieldError("body", absl::StrCat("the request body is not valid JSON", detail));
  }
  if (!parsed.is_object()) {
    return FieldError(
        "body", absl::StrCat("the request body must be a JSON object, got ", parsed.type_name()));
  }
  return parsed;
}

absl::StatusOr<OpenAiRequest> ParseCompletionRequest(const json& body, const ServedModel& model) {
  const Fields f(body, "");
  OpenAiRequest out;
  out.endpoint = Endpoint::kCompletions;
  KV_RETURN_IF_ERROR(ParseModel(f, model));
  KV_RETURN_IF_ERROR(ParsePrompt(f, model, out.engine));
  bool echo = false;
  KV_RETURN_IF_ERROR(f.Bool("echo", &echo));
  if (echo) return FieldError("echo", "echo=true is not supported");
  std::optional<std::string> suffix;
  KV_RETURN_IF_ERROR(f.String("suffix", &suffix));
  if (suffix && !suffix->empty()) return FieldError("suffix", "suffix is not supported");
  std::optional<int64_t> logprobs;
  KV_RETURN_IF_ERROR(f.Int("logprobs", 0, 20, &logprobs));
  if (logprobs) out.top_logprobs = static_cast<int32_t>(*logprobs);
  KV_RETURN_IF_ERROR(ParseMaxTokens(f, kDefaultCompletionMaxTokens, out.engine, model));
  KV_RETURN_IF_ERROR(ParseCommon(f, out));
  out.engine.logprobs = out.top_logprobs;
  return out;
}

absl::StatusOr<OpenAiRequest> ParseChatRequest(const json& body, const ServedModel& model) {
  const Fields f(body, "");
  OpenAiRequest out;
  out.endpoint = Endpoint::kChat;
  KV_RETURN_IF_ERROR(ParseModel(f, model));
  KV_RETURN_IF_ERROR(RejectUnsupportedChat(f));
  // The template writes the special tokens it wants (BOS included); none are added.
  KV_RETURN_IF_ERROR(ChatPrompt(f, model, &out.engine.prompt_ids));
  KV_RETURN_IF_ERROR(ParseChatLogprobs(f, out));
  KV_RETURN_IF_ERROR(ParseMaxTokens(f, std::nullopt, out.engine, model));
  KV_RETURN_IF_ERROR(ParseCommon(f, out));
  out.engine.logprobs = out.top_logprobs;
  return out;
}

}  // namespace kvasir::server::http
