// OpenAI request JSON -> EngineRequest, for /v1/completions and /v1/chat/completions.
//
// Types are checked strictly (a string where a number belongs is a 400 naming the field); null
// means "not given"; unknown fields are ignored, as OpenAI does. Value ranges the engine enforces
// (temperature >= 0, top_p in (0, 1], n in [1, 64], context length...) are left to
// Engine::Submit, whose messages name the same fields. Fields whose meaning Kvasir does not
// implement are refused rather than ignored: echo=true, a suffix, best_of != n, tools, a
// response_format other than text, several prompts in one request.
#ifndef KVASIR_SERVER_HTTP_OPENAI_REQUEST_H_
#define KVASIR_SERVER_HTTP_OPENAI_REQUEST_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/request.h"
#include "nlohmann/json.hpp"

namespace kvasir {
class ChatTemplate;
class Tokenizer;
}  // namespace kvasir

namespace kvasir::server::http {

// What the requests are checked and tokenized against.
struct ServedModel {
  std::string name;  // the only accepted `model`
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;  // null: /v1/chat/completions answers 400
  int64_t max_model_len = 0;
  int64_t kv_capacity_tokens = 0;  // the whole KV pool
};

enum class Endpoint { kCompletions, kChat };

struct OpenAiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  EngineRequest engine;  // everything but the id
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Set: the response carries logprobs with this many alternatives per token (completions:
  // `logprobs`; chat: `logprobs: true` and `top_logprobs`).
  std::optional<int32_t> top_logprobs;
};

// Default max_tokens of /v1/completions (OpenAI's).
inline constexpr int32_t kDefaultCompletionMaxTokens = 16;

// The body as a JSON object. InvalidArgument for invalid UTF-8, malformed JSON (with the
// position) or a non-object.
absl::StatusOr<nlohmann::json> ParseJsonBody(const std::string& body);

// InvalidArgument (param = the field) for bad fields; NotFound (model_not_found) for another
// model than model.name.
absl::StatusOr<OpenAiRequest> ParseCompletionRequest(const nlohmann::json& body,
                                                     const ServedModel& model);
absl::StatusOr<OpenAiRequest> ParseChatRequest(const nlohmann::json& body,
                                               const ServedModel& model);

}  // namespace kvasir::server::http

#endif  // KVASIR_SERVER_HTTP_OPENAI_REQUEST_H_
