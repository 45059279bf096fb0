// What Engine::Submit accepts: every field of an EngineRequest checked against the loaded model's
// limits, with a message naming the field and the value at fault.
#ifndef KVASIR_ENGINE_REQUEST_VALIDATION_H_
#define KVASIR_ENGINE_REQUEST_VALIDATION_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "engine/request.h"

namespace kvasir {

struct RequestLimits {
  int64_t vocab_size = 0;
  int64_t max_model_len = 0;       // prompt + max_tokens
  int64_t kv_capacity_tokens = 0;  // the whole KV pool, for the message
  bool has_tokenizer = false;      // stop strings need one
  // True when a sequence of this many tokens fits an empty KV pool.
  std::function<bool(int64_t)> can_ever_fit;
};

// InvalidArgument naming the field: empty prompt, token id outside the vocabulary, n outside
// [1, kMaxChoices], max_tokens < 1, prompt + max_tokens beyond max_model_len or the KV pool, bad
// sampling values, too many or too long stop strings or stop token ids, logprobs outside [0, 20].
absl::Status ValidateRequest(const EngineRequest& request, const RequestLimits& limits);

}  // namespace kvasir

#endif  // KVASIR_ENGINE_REQUEST_VALIDATION_H_
