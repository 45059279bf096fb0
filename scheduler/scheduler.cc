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

void InsertSorted(std::vector<Sequence*>& v, Sequence* s) {
  v.insert(std::upper_bound(v.begin(), v.end(), s, RunsBefore), s);
}

}  // namespace

Scheduler::Scheduler(const SchedulerConfig& config, KvCacheManager* kv) : config_(config), kv_(kv) {
  KV_CHECK(kv_ != nullptr);
  KV_CHECK_GT(config_.max_num_seqs, 0);
  // Every running sequence must be able to decode in every step, or the last ones could starve.
  KV_CHECK_GE(config_.max_batched_tokens, config_.max_num_seqs)
      << "max_batched_tokens must be >= max_num_seqs";
  KV_CHECK_GE(config_.long_prefill_chunk, 0);
  KV_CHECK_GT(config_.max_long_partial_prefills, 0);
  long_chunk_ = config_.long_prefill_chunk > 0 ? config_.long_prefill_chunk
                                               : std::max(1, config_.max_batched_tokens / 4);
}

bool Scheduler::CanEverFit(int64_t total_tokens) const {
  return total_tokens > 0 && kv_->BlocksFor(total_tokens) <= kv_->num_blocks();
}

void Scheduler::Add(std::unique_ptr<Sequence> seq) {
  Sequence* s = seq.get();
  KV_CHECK(CanEverFit(int64_t{s->num_prompt_tokens} + s->max_tokens))
      << "sequence " << s->uid << " can never fit the KV pool";
  s->state = SequenceState::kWaiting;
  KV_CHECK(seqs_.emplace(s->uid, std::move(seq)).second) << "duplicate sequence uid " << s->uid;
  InsertSorted(waiting_, s);
}

Sequence* Scheduler::Find(uint64_t uid) {
  auto it = seqs_.find(uid);
  return it == seqs_.end() ? nullptr : it->second.get();
}

void Scheduler::Preempt(Sequence* s, std::vector<Choice>& chosen, int32_t& budget) {
  // Scheduled earlier in this step? Give its tokens back.
  auto c = std::find_if(chosen.begin(), chosen.end(), [s](const Choice& x) { return x.seq == s; });
  if (c != chosen.end()) {
    budget += c->num_new_tokens;
    chosen.erase(c);
  }
  std::erase(running_, s);
  kv_->Free(*s);
  s->num_computed_tokens = 0;  // recompute: prompt and generated tokens are prefilled again
  s->state = SequenceState::kWaiting;
  ++s->num_preemptions;
  ++counters_.preemptions;
  report_.preempted.push_back(s->uid);
  InsertSorted(waiting_, s);
}

bool Scheduler::ReserveOrPreempt(Sequence* s, int32_t n, std::vector<Choice>& chosen,
                                 int32_t& budget) {
  while (!kv_->Allocate(*s, {}, s->num_computed_tokens + n)) {
    // running_ is sorted: its last element is the one that would run last.
    Sequence* victim = running_.back();
    Preempt(victim, chosen, budget);
    if (victim == s) return false;
  }
  return true;
}

StepBatch Scheduler::Schedule() {
  report_ = ScheduleReport();
  int32_t budget = config_.max_batched_tokens;
  std::vector<Choice> chosen;

  // 1 and 2: running decodes, then running prefills, each best first. A snapshot, since
  // preemption edits running_.
  const std::vector<Sequence*> order = running_;
  int32_t num_prefilling = 0;
  for (const Sequence* s : running_) num_prefilling += s->num_uncomputed() > 1 ? 1 : 0;
  for (const bool decodes : {true, false}) {
    for (Sequence* s : order) {
      if (budget == 0) break;
      if (s->state != SequenceState::kRunning) continue;  // preempted in this step
      const int32_t left = s->num_uncomputed();
      if ((left == 1) != decodes) continue;
      int32_t n = std::min(left, budget);
      // Others could use the budget (admission, or another prefill): leave them room, or a
      // long prompt would hold them back.
      const bool can_admit = !waiting_.empty() && report_.preempted.empty() &&
                             static_cast<int32_t>(running_.size()) < config_.max_num_seqs;
      if (can_admit || num_prefilling > 1) n = std::min(n, long_chunk_);
      if (!ReserveOrPreempt(s, n, chosen, budget)) continue;
      chosen.push_back({s, n, decodes});
      budget -= n;
    }
  }

  // 3. Admission, unless the pool was short this step (the preempted wait for the next one).
  if (report_.preempted.empty()) {
    int32_t long_partial = 0;
    for (const Sequence* s : running_) long_partial += IsLong(*s) ? 1 : 0;
    const int32_t bs = kv_->block_size();
    for (size_t i = 0; i < waiting_.size() && budget > 0 &&
                       static_cast<int32_t>(running_.size()) < config_.max_num_seqs;) {
      Sequence* s = waiting_[i];
      const std::vector<int32_t> cached =
          s->needs_prompt_logits ? std::vector<int32_t>() : kv_->FindCachedPrefix(*s);
      const int32_t computed = static_cast<int32_t>(cached.size()) * bs;
      const int32_t left = s->num_tokens() - computed;
      const bool is_long = left > long_chunk_;
      if (is_long && long_partial >= config_.max_long_partial_prefills) {
        ++i;  // shorter prompts behind it may go first
        continue;
      }
      int32_t n = std::min(left, budget);
      const bool others =
          num_prefilling > 0 || (i + 1 < waiting_.size() &&
                                 static_cast<int32_t>(running_.size()) + 1 < config_.max_num_seqs);
      if (others) n = std::min(n, long_chunk_);
      if (!kv_->Allocate(*s, cached, computed + n)) break;
      s->num_computed_tokens = computed;
      if (s->num_cached_prompt_tokens < 0) {
        s->num_cached_prompt_tokens = std::min(computed, s->num_prompt_tokens);
      }
      counters_.prefix_query_tokens += s->num_tokens();
      counters_.prefix_hit_tokens += computed;
      waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
      s->state = SequenceState::kRunning;
      InsertSorted(running_, s);
      chosen.push_back({s, n, false});
      budget -= n;
      if (n < left) ++num_prefilling;
      if (is_long && n < left) ++long_partial;
    }
  }

  StepBatch batch;
  batch.query_start.push_back(0);
  batch.block_table_indptr.push_back(0);
  for (const Choice& c : chosen) {
    (c.decode ? report_.num_decode_tokens : report_.num_prefill_tokens) += c.num_new_tokens;
    if (!c.seq->scheduled_once) {
      c.seq->scheduled_once = true;
      report_.first_scheduled.push_back(c.seq->uid);
    }
    Append(batch, *c.seq, c.num_new_tokens);
  }
  return batch;
}

void Scheduler::Append(StepBatch& batch, Sequence& seq, int32_t num_new_tokens) const {
  const int32_t bs = kv_->block_size();
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
  if (seq.needs_prompt_logits) {
    const int32_t first_row = batch.num_tokens() - num_new_tokens;
    const int32_t end = std::min(start + num_new_tokens, seq.num_prompt_tokens - 1);
    for (int32_t t = start; t < end; ++t) batch.logits_indices.push_back(first_row + t - start);
    ss.num_prompt_logit_rows = std::max(0, end - start);
  }
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
    counters_.computed_tokens += ss.num_new_tokens;
    kv_->CacheComputedBlocks(*s);
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
  kv_->Free(*s);
  std::erase(running_, s);
  std::erase(waiting_, s);
  s->state = SequenceState::kFinished;
  seqs_.erase(it);
  return true;
}

}  // namespace kvasir
