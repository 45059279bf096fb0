#include "scheduler/block_manager.h"

#include "kernels/check.h"

namespace kvasir {

BlockManager::BlockManager(int32_t num_blocks, int32_t block_size)
    : num_blocks_(num_blocks), block_size_(block_size), ref_counts_(num_blocks, 0) {
  KV_CHECK_GT(block_size, 0);
  KV_CHECK_GE(num_blocks, 0);
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

int32_t BlockManager::BlocksFor(int64_t num_tokens) const {
  return static_cast<int32_t>((num_tokens + block_size_ - 1) / block_size_);
}

bool BlockManager::Reserve(Sequence& seq, int32_t num_tokens) {
  const int32_t have = static_cast<int32_t>(seq.block_table.size());
  const int32_t need = BlocksFor(num_tokens) - have;
  if (need <= 0) return true;
  if (need > num_free_blocks()) return false;
  for (int32_t i = 0; i < need; ++i) {
    const int32_t b = free_.back();
    free_.pop_back();
    KV_DCHECK(ref_counts_[b] == 0);
    ref_counts_[b] = 1;
    seq.block_table.push_back(b);
  }
  return true;
}

void BlockManager::Release(Sequence& seq) {
  for (int32_t b : seq.block_table) {
    KV_CHECK_GT(ref_counts_[b], 0) << "block " << b << " released twice";
    if (--ref_counts_[b] == 0) free_.push_back(b);
  }
  seq.block_table.clear();
}

}  // namespace kvasir
