#include "scheduler/scheduler.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "kernels/check.h"

namespace kvasir {
namespace {

// Scheduling order: lower priority value first, then earlier arrival.
bool RunsBefore(const Sequence* a, const Sequence* b) {
  return std::tie(a->priority, a->arrival) < std::tie(b->priority, b->arrival);
}

}  // namespace

Scheduler::Scheduler(const SchedulerConfig& config, BlockManager* block_manager)
    : config_(config), blocks_(block_manager) {
  KV_CHECK(blocks_ != nullptr);
  KV_CHECK_GT(config_.max_num_seqs, 0);
  KV_CHECK_GT(config_.max_batched_tokens, 0);
}

void Scheduler::Add(std::unique_ptr<Sequence> seq) {
  Sequence* s = seq.get();
  s->state = SequenceState::kWaiting;
  KV_CHECK(seqs_.emplace(s->uid, std::move(seq)).second) << "duplicate sequence uid " << s->uid;
  waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), s, RunsBefore), s);
}

Sequence* Scheduler::Find(uint64_t uid) {
  auto it = seqs_.find(uid);
  return it == seqs_.end() ? nullptr : it->second.get();
}

void Scheduler::Preempt(std::vector<Sequence*>::iterator it) {
  Sequence* s = *it;
  running_.erase(it);
  blocks_->Release(*s);
  s->num_computed_tokens = 0;  // recompute: prompt and generated tokens are prefilled again
  s->state = SequenceState::kWaiting;
  ++s->num_preemptions;
  ++num_preemptions_;
  waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), s, RunsBefore), s);
}

StepBatch Scheduler::Schedule() {
  StepBatch batch;
  batch.query_start.push_back(0);
  batch.block_table_indptr.push_back(0);
  int32_t budget = config_.max_batched_tokens;
  std::vector<std::pair<Sequence*, int32_t>> chosen;

  // 1. Running sequences, in admission order. When the pool is short, the victim is the one that
  //    would run last among those not yet scheduled this step, possibly the sequence itself.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence* s = running_[i];
    const int32_t n = std::min(s->num_tokens() - s->num_computed_tokens, budget);
    bool reserved = blocks_->Reserve(*s, s->num_computed_tokens + n);
    while (!reserved) {
      auto victim = std::max_element(running_.begin() + i, running_.end(), RunsBefore);
      if (*victim == s) break;
      Preempt(victim);
      reserved = blocks_->Reserve(*s, s->num_computed_tokens + n);
    }
    if (!reserved) {
      Preempt(running_.begin() + i);
      continue;
    }
    chosen.emplace_back(s, n);
    budget -= n;
    ++i;
  }

  // 2. Waiting sequences, best first, while blocks, budget and sequence slots last.
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int32_t>(running_.size()) < config_.max_num_seqs) {
    Sequence* s = waiting_.front();
    const int32_t n = std::min(s->num_tokens() - s->num_computed_tokens, budget);
    if (!blocks_->Reserve(*s, s->num_computed_tokens + n)) break;
    waiting_.erase(waiting_.begin());
    s->state = SequenceState::kRunning;
    running_.push_back(s);
    chosen.emplace_back(s, n);
    budget -= n;
  }

  for (auto& [s, n] : chosen) Append(batch, *s, n);
  return batch;
}

void Scheduler::Append(StepBatch& batch, Sequence& seq, int32_t num_new_tokens) const {
  const int32_t bs = blocks_->block_size();
  const int32_t start = seq.num_computed_tokens;
  for (int32_t t = start; t < start + num_new_tokens; ++t) {
    batch.token_ids.push_back(seq.tokens[t]);
    batch.positions.push_back(t);
    batch.slot_mapping.push_back(static_cast<int64_t>(seq.block_table[t / bs]) * bs + t % bs);
  }
  ScheduledSequence ss;
  ss.uid = seq.uid;
  ss.start_position = start;
  ss.num_new_tokens = num_new_tokens;
  ss.samples = start + num_new_tokens == seq.num_tokens();
  if (ss.samples) batch.logits_indices.push_back(batch.num_tokens() - 1);
  batch.seqs.push_back(ss);
  batch.query_start.push_back(batch.num_tokens());
  batch.seq_lens.push_back(start + num_new_tokens);
  batch.block_table.insert(batch.block_table.end(), seq.block_table.begin(), seq.block_table.end());
  batch.block_table_indptr.push_back(static_cast<int32_t>(batch.block_table.size()));
}

void Scheduler::CommitStep(const StepBatch& batch) {
  for (const ScheduledSequence& ss : batch.seqs) {
    Sequence* s = Find(ss.uid);
    KV_CHECK(s != nullptr) << "sequence " << ss.uid << " removed between Schedule and CommitStep";
    KV_CHECK_EQ(s->num_computed_tokens, ss.start_position);
    s->num_computed_tokens += ss.num_new_tokens;
  }
}

void Scheduler::AppendToken(uint64_t uid, int32_t token) {
  Sequence* s = Find(uid);
  KV_CHECK(s != nullptr) << "AppendToken to unknown sequence " << uid;
  KV_CHECK_EQ(s->num_computed_tokens, s->num_tokens()) << "sequence " << uid << " did not sample";
  s->tokens.push_back(token);
}

bool Scheduler::Remove(uint64_t uid) {
  auto it = seqs_.find(uid);
  if (it == seqs_.end()) return false;
  Sequence* s = it->second.get();
  blocks_->Release(*s);
  std::erase(running_, s);
  std::erase(waiting_, s);
  s->state = SequenceState::kFinished;
  seqs_.erase(it);
  return true;
}

}  // namespace kvasir
