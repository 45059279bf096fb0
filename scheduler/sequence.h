// A request as the scheduler sees it: token ids, progress, and the KV blocks it holds.
#ifndef KVASIR_SCHEDULER_SEQUENCE_H_
#define KVASIR_SCHEDULER_SEQUENCE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kvasir {

enum class SequenceState { kWaiting, kRunning, kFinished };

// 128-bit chained hash of a full KV block (see kv_cache_manager.h).
struct BlockHash {
  uint64_t lo = 0, hi = 0;
  friend bool operator==(const BlockHash&, const BlockHash&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const BlockHash& b) {
    return H::combine(std::move(h), b.lo, b.hi);
  }
};

struct Sequence {
  uint64_t uid = 0;             // engine-assigned, unique for the process lifetime
  std::string id;               // the client's request id (for logs)
  std::vector<int32_t> tokens;  // prompt followed by the generated tokens
  int32_t num_prompt_tokens = 0;
  int32_t num_computed_tokens = 0;  // tokens whose K/V are in the cache
  int32_t max_tokens = 0;           // generated tokens allowed
  int32_t priority = 0;             // lower runs first
  uint64_t arrival = 0;             // admission order, for FCFS within a priority
  std::string cache_salt;  // prefix-cache extra key: only sequences with equal salts share blocks
  SequenceState state = SequenceState::kWaiting;
  std::vector<int32_t> block_table;  // physical KV blocks, in position order
  int32_t num_preemptions = 0;
  // The logits of every prompt position are wanted (prompt logprobs): the step batches carry
  // them, and the sequence never starts from cached blocks (they have no logits).
  bool needs_prompt_logits = false;

  // Prefix-cache bookkeeping (KvCacheManager's).
  std::vector<BlockHash> block_hashes;    // memo: chained hashes of the first full blocks
  int32_t num_registered_blocks = 0;      // leading blocks of block_table known to the cache
  int32_t num_cached_prompt_tokens = -1;  // prompt tokens found cached at first admission
  bool scheduled_once = false;            // has been in a step (for the "scheduled" event)

  int32_t num_tokens() const { return static_cast<int32_t>(tokens.size()); }
  int32_t num_generated() const { return num_tokens() - num_prompt_tokens; }
  // Tokens still to compute before the sequence can sample (prompt, or recompute after
  // preemption), counting the last one.
  int32_t num_uncomputed() const { return num_tokens() - num_computed_tokens; }
  // True while some tokens (prompt, or tokens to recompute after preemption) lack K/V.
  bool in_prefill() const { return num_computed_tokens < num_tokens() - 1; }
};

}  // namespace kvasir

#endif  // KVASIR_SCHEDULER_SEQUENCE_H_
