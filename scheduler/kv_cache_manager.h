// KV cache manager: a fixed pool of blocks of block_size token slots, per-sequence block tables,
// reference counts, and the prefix cache. It knows block ids only; the engine owns the memory the
// ids index (bytes per token come from the model, so the pool is the same for MHA K/V and for an
// MLA latent).
//
// Prefix caching (vLLM v1's design; SGLang's radix tree is the other well-known shape): a full
// block whose K/V are computed is identified by a chained hash h_i = H(h_{i-1}, its tokens), with
// h_{-1} = H(extra keys, e.g. a cache salt). Blocks with no owner stay in the free queue, still
// cached, and are evicted in LRU order when a fresh block is needed. A new sequence reuses the
// longest chain of cached blocks that matches its tokens. On a hit the block's stored tokens and
// parent hash are compared too, so a hash collision can never hand a sequence someone else's K/V.
#ifndef KVASIR_SCHEDULER_KV_CACHE_MANAGER_H_
#define KVASIR_SCHEDULER_KV_CACHE_MANAGER_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "scheduler/sequence.h"

namespace kvasir {

struct KvCacheConfig {
  int32_t num_blocks = 0;
  int32_t block_size = 16;
  bool enable_prefix_caching = true;
  // Seed of the block hash; 0 draws one per process, so hashes cannot be precomputed from outside.
  uint64_t hash_seed = 0;
};

class KvCacheManager {
 public:
  explicit KvCacheManager(const KvCacheConfig& config);
  KvCacheManager(const KvCacheManager&) = delete;
  KvCacheManager& operator=(const KvCacheManager&) = delete;

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  bool prefix_caching() const { return prefix_caching_; }
  // Blocks no sequence holds (cached ones included: they are evictable).
  int32_t num_free_blocks() const { return num_free_; }
  // Fraction of blocks held by sequences.
  double usage() const;
  int32_t num_cached_blocks() const { return static_cast<int32_t>(cached_.size()); }
  int64_t num_evictions() const { return num_evictions_; }
  // Blocks needed to hold num_tokens tokens.
  int32_t BlocksFor(int64_t num_tokens) const;

  // The cached blocks holding the longest cached prefix of seq's tokens, which must hold no blocks.
  // At most num_tokens - 1 tokens are covered, so the last token is always computed (its logits
  // are needed). Changes no state but seq's memo of block hashes. Empty when caching is off.
  std::vector<int32_t> FindCachedPrefix(Sequence& seq);
  // Grows seq's block table to cover num_tokens tokens. When `cached` (from FindCachedPrefix) is
  // not empty the table must be empty; those blocks come first, shared. Returns false, changing
  // nothing, when the pool has too few free blocks.
  bool Allocate(Sequence& seq, std::span<const int32_t> cached, int32_t num_tokens);
  // Drops seq's hold on its blocks and clears its table. Blocks nobody holds go to the free queue:
  // uncached ones first in line for reuse; cached ones last, the sequence's tail before its head,
  // so shared prefixes live longest.
  void Free(Sequence& seq);
  // Registers seq's full blocks whose K/V are computed (num_computed_tokens) in the prefix cache.
  void CacheComputedBlocks(Sequence& seq);

  int32_t ref_count(int32_t block) const { return blocks_[block].ref_count; }
  bool is_cached(int32_t block) const { return blocks_[block].cached; }
  // Empty when the internal structures agree (free queue == blocks nobody holds, every cached
  // entry points at a block carrying that hash); otherwise what is wrong. For tests.
  std::string CheckConsistency() const;

 private:
  struct Block {
    int32_t ref_count = 0;
    bool cached = false;
    bool in_free_queue = false;
    int32_t prev = -1, next = -1;  // free queue links
    BlockHash hash;                // valid when cached
    BlockHash parent;              // hash of the previous block of the chain, when cached
  };

  // Hash of block `index` of seq (computing and memoising the chain up to it).
  const BlockHash& HashOf(Sequence& seq, int32_t index);
  void QueuePushFront(int32_t b);
  void QueuePushBack(int32_t b);
  void QueueRemove(int32_t b);
  int32_t QueuePopFront();

  int32_t num_blocks_;
  int32_t block_size_;
  bool prefix_caching_;
  uint64_t seed_;
  std::vector<Block> blocks_;
  std::vector<int32_t> block_tokens_;  // [num_blocks * block_size]: the tokens of cached blocks
  int32_t head_ = -1, tail_ = -1;      // free queue: head is reused (evicted) first
  int32_t num_free_ = 0;
  absl::flat_hash_map<BlockHash, int32_t> cached_;  // chained hash -> block
  int64_t num_evictions_ = 0;
};

}  // namespace kvasir

#endif  // KVASIR_SCHEDULER_KV_CACHE_MANAGER_H_
