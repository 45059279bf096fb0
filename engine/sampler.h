// Token sampling from one row of logits: greedy, temperature, top-k, top-p.
// Seeded sampling is counter-based: the uniform draw for a request's n-th token is a function of
// (seed, n) alone, so a seeded request samples the same tokens whatever else is in the batch.
#ifndef KVASIR_ENGINE_SAMPLER_H_
#define KVASIR_ENGINE_SAMPLER_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "engine/request.h"

namespace kvasir {

class Sampler {
 public:
  // Returns the token for logits[0, vocab). temperature == 0 (or top_k == 1) is argmax with the
  // lowest id on ties; otherwise softmax(logits / T) restricted to the top_k most likely tokens,
  // then to the smallest prefix (by probability) whose mass reaches top_p, sampled with the
  // draw for (seed, step). The parameters are validated by the engine.
  int32_t Sample(const float* logits, int64_t vocab, const SamplingParams& params, uint64_t seed,
                 uint64_t step);

  // The uniform draw in [0, 1) for (seed, step).
  static double Uniform(uint64_t seed, uint64_t step);

 private:
  std::vector<std::pair<float, int32_t>> candidates_;  // scratch, reused between calls
};

}  // namespace kvasir

#endif  // KVASIR_ENGINE_SAMPLER_H_
