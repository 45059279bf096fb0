// Continuous-batching scheduler: decides which tokens of which sequences run each step.
//
// Policy per step, within one token budget (max_batched_tokens) and max_num_seqs running:
//   1. running decodes, best first by (priority, arrival);
//   2. running sequences still prefilling (chunked prompts, recomputes), best first;
//   3. admission of waiting sequences by (priority, arrival), each first reusing the longest
//      cached prefix of its tokens, while blocks, budget and sequence slots last.
// Head-of-line control: while others wait or prefill, a prefill takes at most long_prefill_chunk
// tokens per step, so the rest of the budget serves them; and at most max_long_partial_prefills
// prompts longer than that are partially prefilled at once (shorter ones may overtake them).
// Preemption by recompute: when a running sequence cannot get a block, the running sequence that
// would run last (lowest priority, then latest arrival) is preempted, unless that is the one
// asking, which then yields itself. A victim frees its blocks (they stay in the prefix cache),
// returns to the waiting queue ahead of later arrivals of its priority, and resumes with its
// generated tokens. Pure: it sees sequences and block ids, never tensors. Single-threaded (the
// engine loop's).
#ifndef KVASIR_SCHEDULER_SCHEDULER_H_
#define KVASIR_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "scheduler/batch.h"
#include "scheduler/kv_cache_manager.h"
#include "scheduler/sequence.h"

namespace kvasir {

struct SchedulerConfig {
  int32_t max_num_seqs = 64;
  int32_t max_batched_tokens = 2048;
  // Per-step chunk cap of a prefill while others wait or prefill; 0 = max_batched_tokens / 4.
  int32_t long_prefill_chunk = 0;
  // Prompts with more than long_prefill_chunk tokens left that may prefill at the same time.
  int32_t max_long_partial_prefills = 1;
};

// Counters since construction (monotonic), for metrics.
struct SchedulerCounters {
  int64_t preemptions = 0;
  int64_t prefix_query_tokens = 0;  // tokens looked up in the prefix cache at admission
  int64_t prefix_hit_tokens = 0;    // of those, found cached (not computed)
  int64_t computed_tokens = 0;      // tokens whose K/V were computed (prefill + decode)
};

// What the last Schedule() did besides the batch, for the engine's events.
struct ScheduleReport {
  std::vector<uint64_t> preempted;        // uids moved back to waiting, in order
  std::vector<uint64_t> first_scheduled;  // uids in a step for the first time
  int32_t num_prefill_tokens = 0;
  int32_t num_decode_tokens = 0;
};

class Scheduler {
 public:
  // kv is not owned and must outlive the scheduler.
  Scheduler(const SchedulerConfig& config, KvCacheManager* kv);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // True when a sequence of this many tokens (prompt + max_tokens) fits the whole pool, that is
  // when Add can accept it. Admission control rejects the others with a clear error.
  bool CanEverFit(int64_t total_tokens) const;
  // Queues a sequence (state kWaiting). Its uid must be unique and CanEverFit(prompt + max_tokens).
  void Add(std::unique_ptr<Sequence> seq);
  // Forms the next step. Empty only when nothing is live.
  StepBatch Schedule();
  const ScheduleReport& last_report() const { return report_; }
  // Marks the step's tokens computed and registers full blocks in the prefix cache. Call once
  // per Schedule(), after the model ran.
  void CommitStep(const StepBatch& batch);
  // Appends a sampled token to a sequence that sampled in the committed step.
  void AppendToken(uint64_t uid, int32_t token);
  // Removes a sequence (finished or aborted, running or waiting) and frees its blocks.
  // Returns false if uid is unknown.
  bool Remove(uint64_t uid);

  Sequence* Find(uint64_t uid);
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  const SchedulerCounters& counters() const { return counters_; }
  const KvCacheManager& kv() const { return *kv_; }
  const SchedulerConfig& config() const { return config_; }

 private:
  struct Choice {
    Sequence* seq;
    int32_t num_new_tokens;
    bool decode;
  };
  // Frees the blocks of running sequence s and moves it back to waiting (recompute later).
  void Preempt(Sequence* s, std::vector<Choice>& chosen, int32_t& budget);
  // Reserves blocks for s to compute n more tokens, preempting others as the policy says.
  // False when s itself had to yield.
  bool ReserveOrPreempt(Sequence* s, int32_t n, std::vector<Choice>& chosen, int32_t& budget);
  void Append(StepBatch& batch, Sequence& seq, int32_t num_new_tokens) const;
  bool IsLong(const Sequence& s) const { return s.num_uncomputed() > long_chunk_; }

  SchedulerConfig config_;
  int32_t long_chunk_;
  KvCacheManager* kv_;
  std::map<uint64_t, std::unique_ptr<Sequence>> seqs_;  // every live sequence, by uid
  std::vector<Sequence*> running_;                      // sorted by (priority, arrival)
  std::vector<Sequence*> waiting_;                      // sorted by (priority, arrival)
  SchedulerCounters counters_;
  ScheduleReport report_;
};

}  // namespace kvasir

#endif  // KVASIR_SCHEDULER_SCHEDULER_H_
