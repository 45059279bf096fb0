// Engine outputs -> OpenAI response JSON: whole responses (`text_completion`, `chat.completion`)
// and server-sent-event streams of chunks (`data: {...}\n\n` ... `data: [DONE]\n\n`).
//
// finish_reason: "stop" (a stop token or string), "length" (max_tokens or the context), and
// "abort" when the request was aborted (an Abort by id, or the server shutting down) -- OpenAI
// has no value for that; vLLM sends the same.
#ifndef KVASIR_SERVER_HTTP_OPENAI_RESPONSE_H_
#define KVASIR_SERVER_HTTP_OPENAI_RESPONSE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/request.h"
#include "nlohmann/json.hpp"
#include "server/http/openai_error.h"
#include "server/http/openai_request.h"

namespace kvasir {
class Tokenizer;
}  // namespace kvasir

namespace kvasir::server::http {

struct ResponseContext {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string id;                        // the request id, also the response's `id`
  int64_t created = 0;                   // Unix seconds
  std::string model;                     // the served model's name
  int32_t n = 1;                         // choices
  std::optional<int32_t> top_logprobs;   // set: logprobs in the response
  bool include_usage = false;            // streams: a last chunk with the usage
  const Tokenizer* tokenizer = nullptr;  // token texts in logprobs; may be null
};

// One request's response, built from its engine outputs in order. Not thread-safe (the HTTP loop
// thread owns it).
class ResponseBuilder {
 public:
  explicit ResponseBuilder(ResponseContext context);

  // Streaming: the SSE events for one engine output (possibly several coalesced outputs of one
  // choice); empty when there is nothing to send.
  std::string StreamEvents(const RequestOutput& output);
  // Streaming: what ends the stream after the request's final output: the usage chunk (if
  // asked), then "data: [DONE]".
  std::string StreamEnd();
  // Streaming: an error event ({"error": ...}, which the openai client raises), then [DONE].
  static std::string StreamError(const HttpError& error);

  // Non-streaming: records an output; Response() is the whole JSON body once the final output
  // has been added.
  void Add(const RequestOutput& output);
  std::string Response() const;

  const ResponseContext& context() const { return context_; }

 private:
  struct Choice {
    std::string text;
    nlohmann::json logprobs;  // completions: {tokens, ...}; chat: [{token, logprob, ...}]
    int64_t text_offset = 0;  // completions: characters of this choice's text so far
    FinishReason finish = FinishReason::kNone;
    bool role_sent = false;  // chat streams: the first chunk carries the role
    Usage usage;
  };

  nlohmann::json Envelope(const char* object) const;
  nlohmann::json UsageJson() const;
  // Logprobs of `output`'s tokens in the endpoint's shape, continuing `choice`'s text offsets.
  nlohmann::json LogprobsJson(const RequestOutput& output, Choice& choice) const;
  nlohmann::json EmptyLogprobs() const;
  void AppendLogprobs(const nlohmann::json& delta, Choice& choice) const;
  std::string TokenText(int32_t id) const;

  ResponseContext context_;
  std::vector<Choice> choices_;
};

// "stop", "length", "abort", "error" (kNone: null).
nlohmann::json FinishReasonJson(FinishReason reason);
// Serializes with invalid UTF-8 (a token's partial bytes) replaced by U+FFFD.
std::string Dump(const nlohmann::json& value);

}  // namespace kvasir::server::http

#endif  // KVASIR_SERVER_HTTP_OPENAI_RESPONSE_H_
