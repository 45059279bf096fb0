#include "server/http/openai_response.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer.h"

namespace kvasir::server::http {

namespace {

using json = nlohmann::json;

std::string Event(const json& data) { return absl::StrCat("data: ", Dump(data), "\n\n"); }

constexpr char kDone[] = "data: [DONE]\n\n";

// Characters in `bytes` (UTF-8 lead bytes; a partial sequence counts where it starts).
int64_t CountChars(absl::string_view bytes) {
  return std::count_if(bytes.begin(), bytes.end(),
                       [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; });
}

json BytesJson(absl::string_view bytes) {
  json out = json::array();
  for (char c : bytes) out.push_back(static_cast<int>(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

json FinishReasonJson(FinishReason reason) {
  // The engine's names are OpenAI's ("stop", "length") and vLLM's ("abort"); none is null.
  if (reason == FinishReason::kNone) return nullptr;
  return FinishReasonName(reason);
}

std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

ResponseBuilder::ResponseBuilder(ResponseContext context)
    : context_(std::move(context)), choices_(static_cast<size_t>(std::max(1, context_.n))) {}

namespace {

// `s` as Dump writes it: invalid UTF-8 replaced by U+FFFD (the JSON library's own rule).
std::string AsWritten(std::string s) {
  if (IsValidUtf8(s)) return s;
  return json::parse(json(std::move(s)).dump(-1, ' ', false, json::error_handler_t::replace))
      .get<std::string>();
}

}  // namespace

std::string ResponseBuilder::TokenText(int32_t id) const {
  if (context_.tokenizer == nullptr) return absl::StrCat("token_id:", id);
  return std::string(context_.tokenizer->TokenBytes(id));
}

json ResponseBuilder::Envelope(const char* object) const {
  return {{"id", context_.id},
          {"object", object},
          {"created", context_.created},
          {"model", context_.model}};
}

json ResponseBuilder::UsageJson() const {
  int64_t prompt = 0, cached = 0, completion = 0;
  for (const Choice& c : choices_) {
    prompt = std::max<int64_t>(prompt, c.usage.prompt_tokens);
    completion += c.usage.completion_tokens;
  }
  // Choice 0 computed (or found cached) the prompt; the others share its blocks.
  cached = choices_.front().usage.cached_prompt_tokens;
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

json ResponseBuilder::LogprobsJson(const RequestOutput& output, Choice& choice) const {
  const size_t count = std::min(output.token_ids.size(), output.logprobs.size());
  if (context_.endpoint == Endpoint::kCompletions) {
    json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
         offsets = json::array();
    for (size_t i = 0; i < count; ++i) {
      const std::string text = TokenText(output.token_ids[i]);
      tokens.push_back(text);
      token_logprobs.push_back(output.logprobs[i].logprob);
      json alternatives = json::object();
      for (const auto& [id, logprob] : output.logprobs[i].top) {
        // Tokens that are written alike (partial UTF-8 becomes U+FFFD) share a key; keep the
        // likelier (the list is best first).
        std::string key = AsWritten(TokenText(id));
        if (!alternatives.contains(key)) alternatives[key] = logprob;
      }
      top.push_back(std::move(alternatives));
      offsets.push_back(choice.text_offset);
      choice.text_offset += CountChars(text);
    }
    return {{"tokens", std::move(tokens)},
            {"token_logprobs", std::move(token_logprobs)},
            {"top_logprobs", std::move(top)},
            {"text_offset", std::move(offsets)}};
  }
  json content = json::array();
  for (size_t i = 0; i < count; ++i) {
    const std::string text = TokenText(output.token_ids[i]);
    json alternatives = json::array();
    for (const auto& [id, logprob] : output.logprobs[i].top) {
      const std::string alt = TokenText(id);
      alternatives.push_back({{"token", alt}, {"logprob", logprob}, {"bytes", BytesJson(alt)}});
    }
    content.push_back({{"token", text},
                       {"logprob", output.logprobs[i].logprob},
                       {"bytes", BytesJson(text)},
                       {"top_logprobs", std::move(alternatives)}});
  }
  return {{"content", std::move(content)}};
}

json ResponseBuilder::EmptyLogprobs() const {
  if (context_.endpoint == Endpoint::kChat) return {{"content", json::array()}};
  return {{"tokens", json::array()},
          {"token_logprobs", json::array()},
          {"top_logprobs", json::array()},
          {"text_offset", json::array()}};
}

void ResponseBuilder::AppendLogprobs(const json& delta, Choice& choice) const {
  if (choice.logprobs.is_null()) {
    choice.logprobs = delta;
    return;
  }
  for (auto& [key, list] : choice.logprobs.items()) {
    for (const json& e : delta.at(key)) list.push_back(e);
  }
}

std::string ResponseBuilder::StreamEvents(const RequestOutput& output) {
  if (output.index < 0 || output.index >= static_cast<int32_t>(choices_.size())) return "";
  Choice& choice = choices_[output.index];
  choice.usage = output.usage;
  const bool done = output.finish_reason != FinishReason::kNone;
  if (done) choice.finish = output.finish_reason;
  if (output.text.empty() && output.token_ids.empty() && !done) return "";
  json entry = {{"index", output.index},
                {"logprobs", nullptr},
                {"finish_reason", FinishReasonJson(output.finish_reason)}};
  if (context_.top_logprobs.has_value()) entry["logprobs"] = LogprobsJson(output, choice);
  json chunk;
  if (context_.endpoint == Endpoint::kCompletions) {
    chunk = Envelope("text_completion");
    entry["text"] = output.text;
  } else {
    chunk = Envelope("chat.completion.chunk");
    json delta = json::object();
    if (!choice.role_sent) delta["role"] = "assistant";
    choice.role_sent = true;
    if (!output.text.empty() || !done) delta["content"] = output.text;
    entry["delta"] = std::move(delta);
  }
  chunk["choices"] = json::array({std::move(entry)});
  if (context_.include_usage) chunk["usage"] = nullptr;
  return Event(chunk);
}

std::string ResponseBuilder::StreamEnd() {
  std::string out;
  if (context_.include_usage) {
    json chunk = Envelope(context_.endpoint == Endpoint::kCompletions ? "text_completion"
                                                                      : "chat.completion.chunk");
    chunk["choices"] = json::array();
    chunk["usage"] = UsageJson();
    out = Event(chunk);
  }
  return out + kDone;
}

std::string ResponseBuilder::StreamError(const HttpError& error) {
  return absl::StrCat("data: ", ErrorJson(error), "\n\n", kDone);
}

void ResponseBuilder::Add(const RequestOutput& output) {
  if (output.index < 0 || output.index >= static_cast<int32_t>(choices_.size())) return;
  Choice& choice = choices_[output.index];
  choice.usage = output.usage;
  choice.text += output.text;
  if (output.finish_reason != FinishReason::kNone) choice.finish = output.finish_reason;
  if (context_.top_logprobs.has_value()) AppendLogprobs(LogprobsJson(output, choice), choice);
}

std::string ResponseBuilder::Response() const {
  const bool chat = context_.endpoint == Endpoint::kChat;
  json body = Envelope(chat ? "chat.completion" : "text_completion");
  json choices = json::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    json logprobs = nullptr;
    if (context_.top_logprobs.has_value()) {
      logprobs = c.logprobs.is_null() ? EmptyLogprobs() : c.logprobs;
    }
    json entry = {{"index", i},
                  {"logprobs", std::move(logprobs)},
                  {"finish_reason", FinishReasonJson(c.finish)}};
    if (chat) {
      entry["message"] = {{"role", "assistant"}, {"content", c.text}};
    } else {
      entry["text"] = c.text;
    }
    choices.push_back(std::move(entry));
  }
  body["choices"] = std::move(choices);
  body["usage"] = UsageJson();
  return Dump(body);
}

}  // namespace kvasir::server::http
