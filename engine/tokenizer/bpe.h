// The BPE model: merges adjacent symbols of a pre-tokenized piece by rank, O(n log n) per piece,
// with a memo of recent pieces.
#ifndef KVASIR_ENGINE_TOKENIZER_BPE_H_
#define KVASIR_ENGINE_TOKENIZER_BPE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace kvasir::tokenizer_internal {

class BpeModel {
 public:
  // `merges` in rank order (rank = index). Errors: InvalidArgument naming `source`, the merge's
  // index and the token missing from `vocab` when a merge part or result is not in the vocab.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      absl::flat_hash_map<std::string, int32_t> vocab,
      const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges,
      std::string_view source);

  // Appends the ids of `word` (one pre-tokenized piece, in the vocab's alphabet). Characters not
  // in the vocab are dropped, as HF does without an unk_token. Thread-safe.
  void Encode(std::string_view word, std::vector<int32_t>* ids) const;

 private:
  struct MergeRule {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  BpeModel() = default;
  void Merge(std::string_view word, std::vector<int32_t>* ids) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  absl::flat_hash_map<uint64_t, MergeRule> merges_;
  bool ignore_merges_ = false;

  static constexpr size_t kMaxCachedWordBytes = 256;
  static constexpr size_t kMaxCacheEntries = 1 << 17;
  mutable absl::Mutex cache_mu_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_ ABSL_GUARDED_BY(cache_mu_);
};

}  // namespace kvasir::tokenizer_internal

#endif  // KVASIR_ENGINE_TOKENIZER_BPE_H_
