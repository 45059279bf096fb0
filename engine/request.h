// The engine <-> server seam: what a request is, what flows back, and who calls what on which
// thread. No protobuf, JSON or HTTP types here; server/ translates its API shapes to and from
// these.
#ifndef KVASIR_ENGINE_REQUEST_H_
#define KVASIR_ENGINE_REQUEST_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace kvasir {

// Applied in this order: logit_bias, penalties (and the min_tokens mask) on the logits; then
// greedy (temperature 0) or temperature, min_p, top_k, top_p and a seeded draw. Defaults are off.
struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy (argmax, lowest id on ties)
  int32_t top_k = 0;         // 0 = no top-k filter
  float top_p = 1.0f;        // 1 = no nucleus filter
  float min_p = 0.0f;        // in [0, 1]: drop tokens less likely than min_p x the most likely
  // > 0; tokens seen in the prompt or the output: positive logits / penalty, negative * penalty.
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;   // in [-2, 2]: minus once per token present in the output
  float frequency_penalty = 0.0f;  // in [-2, 2]: minus per occurrence in the output
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token, in [-100, 100]) added to logits
  std::optional<uint64_t> seed;  // set: the request's samples depend on it alone, not on the batch
};

inline constexpr int32_t kMaxChoices = 64;  // EngineRequest::n

struct EngineRequest {
  std::string id;                   // unique among live requests; Submit rejects a duplicate
  std::vector<int32_t> prompt_ids;  // already tokenized (special tokens included as wanted)
  int32_t max_tokens = 16;          // >= 1; prompt + max_tokens must fit the context
  // Independent samples (choices) of the same prompt, in [1, 64]. The prompt's KV is computed
  // once: the other choices start after the first has prefilled it and share its full blocks
  // through the prefix cache (without prefix caching each computes its own). With a seed,
  // choice i > 0 samples from a seed derived from (seed, i); choice 0 from the seed itself.
  int32_t n = 1;
  int32_t min_tokens = 0;  // no stop token is sampled, no stop string ends it, before this many
  SamplingParams sampling;
  bool ignore_eos = false;              // true: the model's stop tokens do not end the request
  std::vector<int32_t> stop_token_ids;  // extra ids that end the request
  // Strings that end the request when the generated text contains one (across tokens). Not
  // emitted unless include_stop_str_in_output. Needs a tokenizer.
  std::vector<std::string> stop;
  bool include_stop_str_in_output = false;
  // Set: each output token carries its log-probability and this many top alternatives (0..20),
  // under the model's distribution (raw logits, before sampling parameters).
  std::optional<int32_t> logprobs;
  // Set: the prompt's tokens from the second on carry their log-probability and this many top
  // alternatives (0..20), sent with choice 0's first token. The request then computes its whole
  // prompt (no prefix-cache reuse: cached blocks have no logits).
  std::optional<int32_t> prompt_logprobs;
  int32_t priority = 0;  // lower runs first (used by the scheduler)
  // Prefix-cache isolation: only requests with the same salt share cached KV blocks.
  std::string cache_salt;
};

enum class FinishReason { kNone, kStop, kLength, kAbort, kError };
const char* FinishReasonName(FinishReason r);

// Steady-clock nanoseconds of a request's milestones (0 = not reached), on its final output.
struct Timings {
  int64_t arrival_ns = 0;      // Submit accepted it
  int64_t scheduled_ns = 0;    // first in a step (the queue time ends)
  int64_t first_token_ns = 0;  // first generated token sampled
  int64_t finished_ns = 0;     // final output produced
};

struct Usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_prompt_tokens = 0;  // prompt tokens served from the prefix cache
};

struct TokenLogprob {
  int32_t token_id = -1;  // the token (set in prompt_logprobs; else the output's token_ids[i])
  float logprob = 0.0f;   // of the token
  std::vector<std::pair<int32_t, float>> top;  // the most likely tokens and theirs, best first
};

// One message to the client: what is new in one choice since that choice's previous message.
// Each choice's last message has finish_reason != kNone (and error set when kError); the last
// message of the whole request (every choice finished) also has final_output. With n = 1 the
// two coincide. Exactly one final_output per accepted request.
struct RequestOutput {
  int32_t index = 0;                   // the choice, in [0, n)
  bool final_output = false;           // the request's last message
  std::vector<int32_t> token_ids;      // tokens generated since the previous output
  std::vector<TokenLogprob> logprobs;  // one per token id, when the request asked for logprobs
  // prompt_logprobs requests, on choice 0's output with its first token: prompt tokens 1..P-1
  // (the first token has no logprob), each as TokenLogprob of prompt_ids[i].
  std::vector<TokenLogprob> prompt_logprobs;
  std::string text;  // text completed since the previous output (whole UTF-8 only)
  FinishReason finish_reason = FinishReason::kNone;
  std::string stop_string;  // kStop by a stop string: which one
  int32_t stop_token = -1;  // kStop by a stop token: which one
  absl::Status error;       // the reason for kError
  Usage usage;              // cumulative
  Timings timings;          // on the final output
};

// Appends `next` (a later output of the same choice) to `into`, as if the engine had produced
// them as one: token ids, logprobs and text concatenated; finish fields, usage and timings from
// `next`. For coalescing outputs (stream_interval, or a slow network write).
void AppendOutput(RequestOutput& into, RequestOutput&& next);

// Receives a request's outputs. Called on the engine thread, in order: an implementation must
// return quickly and never block (queue the output and wake the network side).
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  virtual void OnOutput(RequestOutput output) = 0;
};

}  // namespace kvasir

#endif  // KVASIR_ENGINE_REQUEST_H_
