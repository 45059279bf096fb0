// KV block manager: a fixed pool of blocks of block_size token slots, handed out to sequences.
// It knows only block ids and reference counts; the engine owns the memory the ids index.
#ifndef KVASIR_SCHEDULER_BLOCK_MANAGER_H_
#define KVASIR_SCHEDULER_BLOCK_MANAGER_H_

#include <cstdint>
#include <vector>

#include "scheduler/sequence.h"

namespace kvasir {

class BlockManager {
 public:
  BlockManager(int32_t num_blocks, int32_t block_size);
  BlockManager(const BlockManager&) = delete;
  BlockManager& operator=(const BlockManager&) = delete;

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  int32_t num_free_blocks() const { return static_cast<int32_t>(free_.size()); }
  // Blocks needed to hold num_tokens tokens.
  int32_t BlocksFor(int64_t num_tokens) const;

  // Grows seq's block table to cover num_tokens tokens. Returns false, changing nothing, when
  // the pool has too few free blocks.
  bool Reserve(Sequence& seq, int32_t num_tokens);
  // Returns all of seq's blocks to the pool and clears its table.
  void Release(Sequence& seq);

  int32_t ref_count(int32_t block) const { return ref_counts_[block]; }

 private:
  int32_t num_blocks_;
  int32_t block_size_;
  std::vector<int32_t> free_;        // a stack: the most recently freed block is reused first
  std::vector<int32_t> ref_counts_;  // per block: tables holding it
};

}  // namespace kvasir

#endif  // KVASIR_SCHEDULER_BLOCK_MANAGER_H_
