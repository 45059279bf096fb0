#include "engine/tokenizer/bpe.h"

#include <queue>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"

namespace kvasir::tokenizer_internal {

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    absl::flat_hash_map<std::string, int32_t> vocab,
    const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges,
    std::string_view source) {
  std::unique_ptr<BpeModel> model(new BpeModel());
  model->vocab_ = std::move(vocab);
  model->ignore_merges_ = ignore_merges;
  model->merges_.reserve(merges.size());
  auto lookup = [&](const std::string& token, size_t index) -> absl::StatusOr<int32_t> {
    auto it = model->vocab_.find(token);
    if (it == model->vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(AsAbsl(source), ": merges[", index, "] \"", merges[index].first, " ",
                       merges[index].second, "\" uses \"", token, "\", which is not in the vocab"));
    }
    return it->second;
  };
  for (size_t i = 0; i < merges.size(); ++i) {
    const auto& [a, b] = merges[i];
    auto a_id = lookup(a, i);
    if (!a_id.ok()) return a_id.status();
    auto b_id = lookup(b, i);
    if (!b_id.ok()) return b_id.status();
    auto new_id = lookup(a + b, i);
    if (!new_id.ok()) return new_id.status();
    // A repeated pair keeps its last rank, as HF's HashMap collection does.
    model->merges_[PairKey(*a_id, *b_id)] = {static_cast<int32_t>(i), *new_id};
  }
  return model;
}

void BpeModel::Encode(std::string_view word, std::vector<int32_t>* ids) const {
  if (ignore_merges_) {
    auto it = vocab_.find(AsAbsl(word));
    if (it != vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    absl::MutexLock lock(&cache_mu_);
    auto it = cache_.find(AsAbsl(word));
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids->size();
  Merge(word, ids);
  if (cacheable) {
    absl::MutexLock lock(&cache_mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int32_t>(ids->begin() + first, ids->end()));
  }
}

void BpeModel::Merge(std::string_view word, std::vector<int32_t>* ids) const {
  // Doubly linked list of symbols; a min-heap of candidate merges ordered by (rank, position).
  struct Symbol {
    int32_t id;
    int32_t prev, next;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  for (size_t i = 0; i < word.size();) {
    const size_t len = std::min(Utf8CharLen(static_cast<unsigned char>(word[i])), word.size() - i);
    auto it = vocab_.find(AsAbsl(word.substr(i, len)));
    i += len;
    if (it == vocab_.end()) continue;
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({it->second, index - 1, index + 1});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Candidate {
    int32_t rank, pos, new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto push_pair = [&](int32_t pos) {
    if (pos < 0) return;
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    auto it = merges_.find(PairKey(symbols[pos].id, symbols[next].id));
    if (it != merges_.end()) queue.push({it->second.rank, pos, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_pair(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.id < 0 || left.next < 0) continue;  // merged away, or no right neighbour now
    Symbol& right = symbols[left.next];
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // stale
    left.id = top.new_id;
    right.id = -1;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids->push_back(symbols[i].id);
}

}  // namespace kvasir::tokenizer_internal
