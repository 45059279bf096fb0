// Token sampling from one row of logits: logit processors (bias, penalties, masks), then greedy,
// temperature, min-p, top-k, top-p; and log-probabilities of the model's distribution.
// Seeded sampling is counter-based: the uniform draw for a request's n-th token is a function of
// (seed, n) alone, so a seeded request samples the same tokens whatever else is in the batch.
#ifndef KVASIR_ENGINE_SAMPLER_H_
#define KVASIR_ENGINE_SAMPLER_H_

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "engine/request.h"

namespace kvasir {

// What a request's penalties look at.
struct TokenHistory {
  const absl::flat_hash_set<int32_t>* prompt_tokens = nullptr;           // distinct prompt ids
  const absl::flat_hash_map<int32_t, int32_t>* output_counts = nullptr;  // generated id -> count
};

// Log-probabilities (natural log) under softmax of the raw logits.
struct TokenLogprobs {
  float logprob = 0.0f;                        // of the chosen token
  std::vector<std::pair<int32_t, float>> top;  // the most likely tokens, best first
};

class Sampler {
 public:
  // True when params or banned change the logits (so ApplyProcessors must run on a copy).
  static bool NeedsProcessing(const SamplingParams& params, bool has_banned);
  // True when a penalty looks at the output tokens (TokenHistory::output_counts is needed).
  static bool UsesOutputHistory(const SamplingParams& params);
  // In place: adds logit_bias, applies the repetition, presence and frequency penalties against
  // history, and sets the banned tokens (stop tokens before min_tokens) to -inf.
  static void ApplyProcessors(float* logits, int64_t vocab, const SamplingParams& params,
                              const TokenHistory& history, std::span<const int32_t> banned);
  // log softmax(logits)[chosen] and the top_n most likely (ties: lower id first).
  static TokenLogprobs Logprobs(const float* logits, int64_t vocab, int32_t chosen, int32_t top_n);

  // Returns the token for logits[0, vocab). temperature == 0 (or top_k == 1) is argmax with the
  // lowest id on ties; otherwise softmax(logits / T) restricted to tokens at least min_p times as
  // likely as the most likely, then to the top_k most likely, then to the smallest prefix (by
  // probability) whose mass reaches top_p, sampled with the draw for (seed, step). The
  // parameters are validated by the engine. Logit processors are not applied here.
  int32_t Sample(const float* logits, int64_t vocab, const SamplingParams& params, uint64_t seed,
                 uint64_t step);

  // The whole rule for one row of raw logits: ApplyProcessors on a copy when params or banned
  // need it, then Sample; and, when logprobs is not null, Logprobs(top_n) of the raw row.
  int32_t SampleRow(const float* logits, int64_t vocab, const SamplingParams& params,
                    const TokenHistory& history, std::span<const int32_t> banned, uint64_t seed,
                    uint64_t step, int32_t top_n, TokenLogprobs* logprobs);

  // The uniform draw in [0, 1) for (seed, step).
  static double Uniform(uint64_t seed, uint64_t step);

 private:
  std::vector<std::pair<float, int32_t>> candidates_;  // scratch, reused between calls
  std::vector<float> processed_;                       // SampleRow's copy of a processed row
};

}  // namespace kvasir

#endif  // KVASIR_ENGINE_SAMPLER_H_
