#include "scheduler/kv_cache_manager.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace kvasir {
namespace {

// XXH3-128 (Debian libxxhash): fast, 128 bits so accidental collisions are out of reach, and
// seeded per process. Hits are verified against the stored tokens and parent hash as well.
BlockHash Hash128(const void* data, size_t size, uint64_t seed) {
  const XXH128_hash_t h = XXH3_128bits_withSeed(data, size, seed);
  return BlockHash{h.low64, h.high64};
}

}  // namespace

KvCacheManager::KvCacheManager(const KvCacheConfig& config)
    : num_blocks_(config.num_blocks),
      block_size_(config.block_size),
      prefix_caching_(config.enable_prefix_caching),
      seed_(config.hash_seed),
      blocks_(config.num_blocks) {
  KV_CHECK_GT(block_size_, 0);
  KV_CHECK_GE(num_blocks_, 0);
  if (seed_ == 0) {
    std::random_device rd;
    seed_ = (uint64_t{rd()} << 32) | rd();
  }
  if (prefix_caching_) block_tokens_.resize(static_cast<size_t>(num_blocks_) * block_size_);
  for (int32_t b = 0; b < num_blocks_; ++b) QueuePushBack(b);
}

double KvCacheManager::usage() const {
  return num_blocks_ == 0 ? 0.0 : 1.0 - static_cast<double>(num_free_) / num_blocks_;
}

int32_t KvCacheManager::BlocksFor(int64_t num_tokens) const {
  return static_cast<int32_t>((num_tokens + block_size_ - 1) / block_size_);
}

const BlockHash& KvCacheManager::HashOf(Sequence& seq, int32_t index) {
  KV_DCHECK(int64_t{index + 1} * block_size_ <= seq.num_tokens());
  if (index < static_cast<int32_t>(seq.block_hashes.size())) return seq.block_hashes[index];
  std::vector<int32_t> buf(4 + block_size_);
  while (static_cast<int32_t>(seq.block_hashes.size()) <= index) {
    const int32_t i = static_cast<int32_t>(seq.block_hashes.size());
    BlockHash parent;
    if (i == 0) {
      // The chain's root carries the extra keys.
      parent = Hash128(seq.cache_salt.data(), seq.cache_salt.size(), seed_ ^ 0x9e3779b97f4a7c15);
    } else {
      parent = seq.block_hashes[i - 1];
    }
    std::memcpy(buf.data(), &parent, sizeof(parent));
    std::memcpy(buf.data() + 4, seq.tokens.data() + int64_t{i} * block_size_,
                sizeof(int32_t) * block_size_);
    seq.block_hashes.push_back(Hash128(buf.data(), buf.size() * sizeof(int32_t), seed_));
  }
  return seq.block_hashes[index];
}

std::vector<int32_t> KvCacheManager::FindCachedPrefix(Sequence& seq) {
  KV_CHECK(seq.block_table.empty()) << "prefix lookup for a sequence that holds blocks";
  std::vector<int32_t> hit;
  if (!prefix_caching_) return hit;
  const int32_t max_blocks = (seq.num_tokens() - 1) / block_size_;
  BlockHash parent;
  for (int32_t i = 0; i < max_blocks; ++i) {
    const BlockHash& h = HashOf(seq, i);
    auto it = cached_.find(h);
    if (it == cached_.end()) break;
    const int32_t b = it->second;
    const Block& blk = blocks_[b];
    if (i > 0 && !(blk.parent == parent)) break;
    if (!std::equal(seq.tokens.begin() + int64_t{i} * block_size_,
                    seq.tokens.begin() + int64_t{i + 1} * block_size_,
                    block_tokens_.begin() + int64_t{b} * block_size_)) {
      break;
    }
    hit.push_back(b);
    parent = h;
  }
  return hit;
}

bool KvCacheManager::Allocate(Sequence& seq, std::span<const int32_t> cached, int32_t num_tokens) {
  KV_CHECK(cached.empty() || seq.block_table.empty());
  const int32_t have = static_cast<int32_t>(seq.block_table.size() + cached.size());
  const int32_t fresh = std::max(0, BlocksFor(num_tokens) - have);
  int32_t revived = 0;  // cached blocks nobody holds: they leave the free queue
  for (int32_t b : cached) revived += blocks_[b].ref_count == 0 ? 1 : 0;
  if (fresh + revived > num_free_) return false;
  for (int32_t b : cached) {
    Block& blk = blocks_[b];
    KV_DCHECK(blk.cached);
    if (blk.ref_count++ == 0) QueueRemove(b);
    seq.block_table.push_back(b);
  }
  if (!cached.empty()) seq.num_registered_blocks = static_cast<int32_t>(cached.size());
  for (int32_t i = 0; i < fresh; ++i) {
    const int32_t b = QueuePopFront();
    Block& blk = blocks_[b];
    if (blk.cached) {  // evict: its contents are about to be overwritten
      cached_.erase(blk.hash);
      blk.cached = false;
      ++num_evictions_;
    }
    blk.ref_count = 1;
    seq.block_table.push_back(b);
  }
  return true;
}

void KvCacheManager::Free(Sequence& seq) {
  for (auto it = seq.block_table.rbegin(); it != seq.block_table.rend(); ++it) {
    const int32_t b = *it;
    Block& blk = blocks_[b];
    KV_CHECK_GT(blk.ref_count, 0) << "block " << b << " freed twice";
    if (--blk.ref_count > 0) continue;
    if (blk.cached) {
      QueuePushBack(b);
    } else {
      QueuePushFront(b);
    }
  }
  seq.block_table.clear();
  seq.num_registered_blocks = 0;
}

void KvCacheManager::CacheComputedBlocks(Sequence& seq) {
  if (!prefix_caching_) return;
  const int32_t full =
      std::min(seq.num_computed_tokens / block_size_, static_cast<int32_t>(seq.block_table.size()));
  for (int32_t i = seq.num_registered_blocks; i < full; ++i) {
    const BlockHash h = HashOf(seq, i);
    const int32_t b = seq.block_table[i];
    Block& blk = blocks_[b];
    if (blk.cached) continue;  // a shared block found at admission
    // Another sequence may have computed the same block meanwhile: keep the first, and leave
    // this copy uncached (it is freed with its sequence).
    if (!cached_.emplace(h, b).second) continue;
    blk.cached = true;
    blk.hash = h;
    blk.parent = i > 0 ? seq.block_hashes[i - 1] : BlockHash{};
    std::copy(seq.tokens.begin() + int64_t{i} * block_size_,
              seq.tokens.begin() + int64_t{i + 1} * block_size_,
              block_tokens_.begin() + int64_t{b} * block_size_);
  }
  seq.num_registered_blocks = std::max(seq.num_registered_blocks, full);
}

void KvCacheManager::QueuePushFront(int32_t b) {
  Block& blk = blocks_[b];
  KV_DCHECK(!blk.in_free_queue);
  blk.in_free_queue = true;
  blk.prev = -1;
  blk.next = head_;
  if (head_ >= 0) blocks_[head_].prev = b;
  head_ = b;
  if (tail_ < 0) tail_ = b;
  ++num_free_;
}

void KvCacheManager::QueuePushBack(int32_t b) {
  Block& blk = blocks_[b];
  KV_DCHECK(!blk.in_free_queue);
  blk.in_free_queue = true;
  blk.next = -1;
  blk.prev = tail_;
  if (tail_ >= 0) blocks_[tail_].next = b;
  tail_ = b;
  if (head_ < 0) head_ = b;
  ++num_free_;
}

void KvCacheManager::QueueRemove(int32_t b) {
  Block& blk = blocks_[b];
  KV_CHECK(blk.in_free_queue) << "block " << b << " is not free";
  if (blk.prev >= 0) blocks_[blk.prev].next = blk.next;
  if (blk.next >= 0) blocks_[blk.next].prev = blk.prev;
  if (head_ == b) head_ = blk.next;
  if (tail_ == b) tail_ = blk.prev;
  blk.prev = blk.next = -1;
  blk.in_free_queue = false;
  --num_free_;
}

int32_t KvCacheManager::QueuePopFront() {
  KV_CHECK_GE(head_, 0) << "no free KV block";
  const int32_t b = head_;
  QueueRemove(b);
  return b;
}

std::string KvCacheManager::CheckConsistency() const {
  int32_t walked = 0;
  int32_t prev = -1;
  for (int32_t b = head_; b >= 0; b = blocks_[b].next) {
    if (++walked > num_blocks_) return "free queue has a cycle";
    if (blocks_[b].prev != prev) return absl::StrCat("free queue link broken at block ", b);
    if (blocks_[b].ref_count != 0) return absl::StrCat("block ", b, " is held and queued as free");
    if (!blocks_[b].in_free_queue) return absl::StrCat("block ", b, " queued but not marked");
    prev = b;
  }
  if (prev != tail_) return "free queue tail is wrong";
  if (walked != num_free_)
    return absl::StrCat("free count ", num_free_, " but ", walked, " queued");
  for (int32_t b = 0; b < num_blocks_; ++b) {
    const Block& blk = blocks_[b];
    if (blk.ref_count < 0) return absl::StrCat("block ", b, " has a negative ref count");
    if ((blk.ref_count == 0) != blk.in_free_queue) {
      return absl::StrCat("block ", b, " with ref count ", blk.ref_count,
                          blk.in_free_queue ? " is" : " is not", " in the free queue");
    }
    if (blk.cached) {
      auto it = cached_.find(blk.hash);
      if (it == cached_.end() || it->second != b) {
        return absl::StrCat("cached block ", b, " is not in the hash map");
      }
    }
  }
  for (const auto& [h, b] : cached_) {
    if (!blocks_[b].cached || !(blocks_[b].hash == h)) {
      return absl::StrCat("hash map entry points at block ", b, " which does not carry it");
    }
  }
  return "";
}

}  // namespace kvasir
