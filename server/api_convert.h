// Translation between the public API (kvasir.v1 protobuf messages) and the engine's plain types.
// All validation that is about the API shape (which oneof member, UTF-8, field presence) lives
// here; limits that depend on the model (context length, vocabulary) are the engine's
// (Engine::Submit), so there is one source of truth for each rule.
#ifndef KVASIR_SERVER_API_CONVERT_H_
#define KVASIR_SERVER_API_CONVERT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/engine.h"
#include "engine/request.h"
#include "google/protobuf/message.h"
#include "kvasir/v1/kvasir.pb.h"

namespace kvasir {
class Tokenizer;
}  // namespace kvasir

namespace kvasir::server {

// Parses `wire`, the serialized request of an RPC, into `request` (cleared first). The service
// registers its request-taking methods raw and parses here, because a parse failure inside gRPC's
// callback API ends the call with UNIMPLEMENTED and no message. InvalidArgument
// "<Message>.<field> is not valid UTF-8" when a proto3 string field (at any depth) holds invalid
// UTF-8 -- found by a walk over the wire format before the protobuf parser runs, so libprotobuf
// does not log its own "invalid UTF-8" error -- and "malformed <Message>" for any other parse
// failure.
absl::Status ParseRequest(std::string_view wire, google::protobuf::Message* request);

// Documented defaults of unset optional GenerateRequest fields.
inline constexpr int32_t kDefaultMaxTokens = 16;

// Tokenizes `text` (the API field `field`, named in errors). InvalidArgument when `text` is empty
// or not valid UTF-8; FailedPrecondition when `tokenizer` is null (model without tokenizer).
absl::StatusOr<std::vector<int32_t>> TokenizeText(const Tokenizer* tokenizer,
                                                  absl::string_view field, std::string_view text,
                                                  bool add_special_tokens);

// Builds the engine request for `request` with id `request_id`, tokenizing text input with the
// engine's tokenizer and rendering chat messages with its chat template (chat_prompt.h).
// InvalidArgument naming the field when no input is set or the input is empty or not valid
// UTF-8. Numeric limits are left to Engine::Submit.
absl::StatusOr<EngineRequest> ToEngineRequest(const v1::GenerateRequest& request,
                                              std::string request_id, const Engine& engine);

v1::FinishReason ToProto(FinishReason reason);
void ToProto(const Usage& usage, v1::Usage* out);
void ToProto(const Timings& timings, v1::Timings* out);
// A choice's final engine output (finish reason set) as the Complete message that ends it.
void ToProtoComplete(RequestOutput out, v1::Complete* complete);
// A choice's non-final output as a Chunk.
void ToProtoChunk(RequestOutput out, v1::Chunk* chunk);

// One TokenLogprob per entry, each naming its own token (prompt logprobs).
void ToProto(const std::vector<TokenLogprob>& logprobs,
             google::protobuf::RepeatedPtrField<v1::TokenLogprob>* out);
// One TokenLogprob per token id (logprobs is empty when the request did not ask for them).
void ToProto(const std::vector<int32_t>& token_ids, const std::vector<TokenLogprob>& logprobs,
             google::protobuf::RepeatedPtrField<v1::TokenLogprob>* out);
void ToProto(const ModelInfo& info, v1::ModelInfo* out);
void ToProto(const EngineLoads& loads, v1::Loads* out);

// A fresh request id for requests that bring none ("kv-" + 16 hex digits, unique per process).
std::string NewRequestId();

}  // namespace kvasir::server

#endif  // KVASIR_SERVER_API_CONVERT_H_
