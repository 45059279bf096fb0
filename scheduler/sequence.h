// A request as the scheduler sees it: token ids, progress, and the KV blocks it holds.
#ifndef KVASIR_SCHEDULER_SEQUENCE_H_
#define KVASIR_SCHEDULER_SEQUENCE_H_

#include <cstdint>
#include <string>
#include <vector>

namespace kvasir {

enum class SequenceState { kWaiting, kRunning, kFinished };

struct Sequence {
  uint64_t uid = 0;             // engine-assigned, unique for the process lifetime
  std::string id;               // the client's request id (for logs)
  std::vector<int32_t> tokens;  // prompt followed by the generated tokens
  int32_t num_prompt_tokens = 0;
  int32_t num_computed_tokens = 0;  // tokens whose K/V are in the cache
  int32_t max_tokens = 0;           // generated tokens allowed
  int32_t priority = 0;             // lower runs first
  uint64_t arrival = 0;             // admission order, for FCFS within a priority
  SequenceState state = SequenceState::kWaiting;
  std::vector<int32_t> block_table;  // physical KV blocks, in position order
  int32_t num_preemptions = 0;

  int32_t num_tokens() const { return static_cast<int32_t>(tokens.size()); }
  int32_t num_generated() const { return num_tokens() - num_prompt_tokens; }
  // True while some tokens (prompt, or tokens to recompute after preemption) lack K/V.
  bool in_prefill() const { return num_computed_tokens < num_tokens() - 1; }
};

}  // namespace kvasir

#endif  // KVASIR_SCHEDULER_SEQUENCE_H_
