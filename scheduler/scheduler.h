// Continuous-batching scheduler: decides which tokens of which sequences run each step.
//
// Policy per step, within a token budget (max_batched_tokens) and max_num_seqs:
//   1. running sequences, in admission order: a decode takes 1 token, a prefill a chunk;
//      when the pool has no block for a decode, the lowest-priority, latest-arrived running
//      sequence is preempted (its blocks freed; it is recomputed later, generated tokens kept);
//   2. waiting sequences by (priority, arrival), while blocks and budget last.
// Pure: it sees sequences and block ids, never tensors. Single-threaded (the engine loop's).
#ifndef KVASIR_SCHEDULER_SCHEDULER_H_
#define KVASIR_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "scheduler/batch.h"
#include "scheduler/block_manager.h"
#include "scheduler/sequence.h"

namespace kvasir {

struct SchedulerConfig {
  int32_t max_num_seqs = 64;
  int32_t max_batched_tokens = 2048;
};

class Scheduler {
 public:
  // block_manager is not owned and must outlive the scheduler.
  Scheduler(const SchedulerConfig& config, BlockManager* block_manager);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a sequence (state kWaiting). Its uid must be unique. The caller has checked that it
  // can ever fit: BlocksFor(prompt + max_tokens) <= num_blocks.
  void Add(std::unique_ptr<Sequence> seq);
  // Forms the next step. Empty when nothing can run.
  StepBatch Schedule();
  // Marks the step's tokens computed. Call once per Schedule(), after the model ran.
  void CommitStep(const StepBatch& batch);
  // Appends a sampled token to a sequence that sampled in the committed step.
  void AppendToken(uint64_t uid, int32_t token);
  // Removes a sequence (finished or aborted, running or waiting) and frees its blocks.
  // Returns false if uid is unknown.
  bool Remove(uint64_t uid);

  Sequence* Find(uint64_t uid);
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  int64_t num_preemptions() const { return num_preemptions_; }
  const BlockManager& block_manager() const { return *blocks_; }

 private:
  // Frees the blocks of running sequence *it and moves it back to waiting (recompute later).
  void Preempt(std::vector<Sequence*>::iterator it);
  void Append(StepBatch& batch, Sequence& seq, int32_t num_new_tokens) const;

  SchedulerConfig config_;
  BlockManager* blocks_;
  std::map<uint64_t, std::unique_ptr<Sequence>> seqs_;  // every live sequence, by uid
  std::vector<Sequence*> running_;                      // admission order
  std::vector<Sequence*> waiting_;                      // sorted by (priority, arrival)
  int64_t num_preemptions_ = 0;
};

}  // namespace kvasir

#endif  // KVASIR_SCHEDULER_SCHEDULER_H_
