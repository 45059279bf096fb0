#include "scheduler/scheduler.h"

#include <map>
#include <random>
#include <set>

#include "gtest/gtest.h"

namespace kvasir {
namespace {

std::unique_ptr<Sequence> MakeSeq(uint64_t uid, int32_t prompt_len, int32_t max_tokens,
                                  int32_t priority = 0) {
  auto s = std::make_unique<Sequence>();
  s->uid = uid;
  s->id = "r" + std::to_string(uid);
  for (int32_t i = 0; i < prompt_len; ++i) s->tokens.push_back(100 + i);
  s->num_prompt_tokens = prompt_len;
  s->max_tokens = max_tokens;
  s->priority = priority;
  s->arrival = uid;
  return s;
}

// Runs one step the way the engine does: schedule, commit, append a token for samplers.
// Returns the scheduled (uid, num_new_tokens) pairs.
std::vector<std::pair<uint64_t, int32_t>> RunStep(Scheduler& s) {
  StepBatch b = s.Schedule();
  s.CommitStep(b);
  std::vector<std::pair<uint64_t, int32_t>> out;
  for (const auto& ss : b.seqs) {
    out.emplace_back(ss.uid, ss.num_new_tokens);
    if (ss.samples) s.AppendToken(ss.uid, 7);
  }
  return out;
}

TEST(BlockManagerTest, ReserveGrowsTablesAndReleaseReturnsBlocks) {
  BlockManager bm(4, 16);
  Sequence a;
  EXPECT_TRUE(bm.Reserve(a, 17));
  EXPECT_EQ(a.block_table.size(), 2u);
  EXPECT_EQ(bm.num_free_blocks(), 2);
  EXPECT_TRUE(bm.Reserve(a, 32));  // still two blocks
  EXPECT_EQ(bm.num_free_blocks(), 2);
  Sequence b;
  EXPECT_FALSE(bm.Reserve(b, 33));  // needs 3, only 2 free: nothing changes
  EXPECT_TRUE(b.block_table.empty());
  EXPECT_EQ(bm.num_free_blocks(), 2);
  bm.Release(a);
  EXPECT_EQ(bm.num_free_blocks(), 4);
  EXPECT_TRUE(a.block_table.empty());
}

TEST(SchedulerTest, BatchDescribesTokensPositionsSlotsAndCsrTables) {
  BlockManager bm(8, 4);
  Scheduler s({.max_num_seqs = 4, .max_batched_tokens = 64}, &bm);
  s.Add(MakeSeq(1, 6, 4));
  s.Add(MakeSeq(2, 3, 4));
  StepBatch b = s.Schedule();
  ASSERT_EQ(b.num_seqs(), 2);
  EXPECT_EQ(b.num_tokens(), 9);
  EXPECT_EQ(b.query_start, (std::vector<int32_t>{0, 6, 9}));
  EXPECT_EQ(b.seq_lens, (std::vector<int32_t>{6, 3}));
  EXPECT_EQ(b.positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 0, 1, 2}));
  EXPECT_EQ(b.block_table_indptr, (std::vector<int32_t>{0, 2, 3}));
  EXPECT_EQ(b.logits_indices, (std::vector<int32_t>{5, 8}));
  for (int t = 0; t < 6; ++t) {
    EXPECT_EQ(b.slot_mapping[t], int64_t{b.block_table[t / 4]} * 4 + t % 4);
  }
  EXPECT_EQ(b.slot_mapping[6], int64_t{b.block_table[2]} * 4);
}

// Table-driven: per step, the expected (uid, tokens) scheduled.
TEST(SchedulerTest, ChunksLongPromptsWithinTheTokenBudgetAndRunsDecodesFirst) {
  BlockManager bm(64, 4);
  Scheduler s({.max_num_seqs = 8, .max_batched_tokens = 8}, &bm);
  s.Add(MakeSeq(1, 3, 10));   // short
  s.Add(MakeSeq(2, 20, 10));  // long: chunked over several steps
  const std::vector<std::vector<std::pair<uint64_t, int32_t>>> expected = {
      {{1, 3}, {2, 5}},                    // prefill of 1, first chunk of 2
      {{1, 1}, {2, 7}},                    // decode of 1 first, then the rest of the budget for 2
      {{1, 1}, {2, 7}}, {{1, 1}, {2, 1}},  // 2 finished its prompt (5+7+7+1 = 20) and sampled
      {{1, 1}, {2, 1}},                    // both decoding
  };
  for (size_t step = 0; step < expected.size(); ++step) {
    EXPECT_EQ(RunStep(s), expected[step]) << "step " << step;
  }
}

TEST(SchedulerTest, AdmitsByPriorityThenArrival) {
  BlockManager bm(64, 4);
  Scheduler s({.max_num_seqs = 1, .max_batched_tokens = 64}, &bm);
  s.Add(MakeSeq(1, 2, 1, /*priority=*/5));
  s.Add(MakeSeq(2, 2, 1, /*priority=*/0));
  s.Add(MakeSeq(3, 2, 1, /*priority=*/0));
  EXPECT_EQ(RunStep(s), (std::vector<std::pair<uint64_t, int32_t>>{{2, 2}}));
  ASSERT_TRUE(s.Remove(2));
  EXPECT_EQ(RunStep(s), (std::vector<std::pair<uint64_t, int32_t>>{{3, 2}}));
  ASSERT_TRUE(s.Remove(3));
  EXPECT_EQ(RunStep(s), (std::vector<std::pair<uint64_t, int32_t>>{{1, 2}}));
}

TEST(SchedulerTest, PreemptsTheLatestArrivalWhenBlocksRunOutAndRecomputesItLater) {
  BlockManager bm(2, 4);  // 8 token slots
  Scheduler s({.max_num_seqs = 4, .max_batched_tokens = 64}, &bm);
  s.Add(MakeSeq(1, 4, 8));
  s.Add(MakeSeq(2, 4, 8));
  EXPECT_EQ(RunStep(s), (std::vector<std::pair<uint64_t, int32_t>>{{1, 4}, {2, 4}}));
  // Both now hold 5 tokens and need a second block; only one can have it: 2 is preempted.
  EXPECT_EQ(RunStep(s), (std::vector<std::pair<uint64_t, int32_t>>{{1, 1}}));
  EXPECT_EQ(s.num_preemptions(), 1);
  EXPECT_EQ(s.num_waiting(), 1);
  Sequence* two = s.Find(2);
  EXPECT_EQ(two->num_computed_tokens, 0);
  EXPECT_EQ(two->num_tokens(), 5);  // its generated token is kept
  ASSERT_TRUE(s.Remove(1));
  // 2 comes back and recomputes prompt + generated token in one chunk, then samples.
  EXPECT_EQ(RunStep(s), (std::vector<std::pair<uint64_t, int32_t>>{{2, 5}}));
  EXPECT_EQ(s.Find(2)->num_tokens(), 6);
}

// Randomised property test: thousands of operations on tiny pools that force preemption.
// After every step: no block leaked or owned twice, ref counts match the tables, every request
// ends exactly once.
TEST(SchedulerPropertyTest, NoLeaksNoDoubleOwnershipEveryRequestEndsOnce) {
  for (uint32_t seed = 0; seed < 20; ++seed) {
    std::mt19937 rng(seed);
    const int32_t block_size = 1 + rng() % 5;
    BlockManager bm(6 + rng() % 10, block_size);
    Scheduler s({.max_num_seqs = 1 + static_cast<int32_t>(rng() % 6),
                 .max_batched_tokens = 1 + static_cast<int32_t>(rng() % 24)},
                &bm);
    std::set<uint64_t> live;
    std::map<uint64_t, int> ended;
    uint64_t next = 1;
    for (int op = 0; op < 400; ++op) {
      const int kind = rng() % 10;
      if (kind < 3) {
        const int32_t cap = bm.num_blocks() * block_size;
        const int32_t prompt = 1 + rng() % std::max(1, cap / 2);
        const int32_t max_tokens = 1 + rng() % std::max(1, cap - prompt);
        s.Add(MakeSeq(next, prompt, max_tokens, rng() % 3));
        live.insert(next++);
      } else if (kind < 4 && !live.empty()) {
        auto it = std::next(live.begin(), rng() % live.size());
        ASSERT_TRUE(s.Remove(*it));
        ++ended[*it];
        live.erase(it);
      } else {
        StepBatch b = s.Schedule();
        if (!live.empty()) {
          ASSERT_FALSE(b.empty()) << "seed " << seed << " op " << op;
        }
        s.CommitStep(b);
        for (const auto& ss : b.seqs) {
          if (!ss.samples) continue;
          s.AppendToken(ss.uid, 1);
          Sequence* q = s.Find(ss.uid);
          if (q->num_generated() >= q->max_tokens) {
            ASSERT_TRUE(s.Remove(ss.uid));
            ++ended[ss.uid];
            live.erase(ss.uid);
          }
        }
      }
      // Invariants.
      std::vector<int32_t> owners(bm.num_blocks(), 0);
      int32_t held = 0;
      for (uint64_t uid : live) {
        Sequence* q = s.Find(uid);
        ASSERT_NE(q, nullptr);
        for (int32_t b : q->block_table) ++owners[b];
        held += static_cast<int32_t>(q->block_table.size());
        ASSERT_LE(q->num_computed_tokens, q->num_tokens());
        ASSERT_GE(static_cast<int32_t>(q->block_table.size()) * block_size, q->num_computed_tokens);
      }
      for (int32_t b = 0; b < bm.num_blocks(); ++b) {
        ASSERT_EQ(owners[b], bm.ref_count(b)) << "block " << b << " seed " << seed;
        ASSERT_LE(owners[b], 1);
      }
      ASSERT_EQ(held + bm.num_free_blocks(), bm.num_blocks()) << "leak, seed " << seed;
      ASSERT_EQ(s.num_running() + s.num_waiting(), static_cast<int32_t>(live.size()));
    }
    for (uint64_t uid : std::set<uint64_t>(live)) {
      ASSERT_TRUE(s.Remove(uid));
      ++ended[uid];
    }
    EXPECT_EQ(bm.num_free_blocks(), bm.num_blocks());
    for (uint64_t uid = 1; uid < next; ++uid) EXPECT_EQ(ended[uid], 1) << "uid " << uid;
  }
}

}  // namespace
}  // namespace kvasir
