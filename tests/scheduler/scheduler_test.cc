// The scheduler and KV cache manager without a model: batches, chunking, priorities,
// preemption, prefix caching, head-of-line control, and a randomised property test.
#include "scheduler/scheduler.h"

#include <map>
#include <random>
#include <set>

#include "gtest/gtest.h"
#include "scheduler/kv_cache_manager.h"

namespace kvasir {
namespace {

using Steps = std::vector<std::pair<uint64_t, int32_t>>;

std::unique_ptr<Sequence> MakeSeq(uint64_t uid, std::vector<int32_t> prompt, int32_t max_tokens,
                                  int32_t priority = 0) {
  auto s = std::make_unique<Sequence>();
  s->uid = uid;
  s->id = "r" + std::to_string(uid);
  s->tokens = std::move(prompt);
  s->num_prompt_tokens = s->num_tokens();
  s->max_tokens = max_tokens;
  s->priority = priority;
  s->arrival = uid;
  return s;
}

std::vector<int32_t> Iota(int32_t n, int32_t first = 100) {
  std::vector<int32_t> v(n);
  for (int32_t i = 0; i < n; ++i) v[i] = first + i;
  return v;
}

std::unique_ptr<Sequence> MakeSeq(uint64_t uid, int32_t prompt_len, int32_t max_tokens,
                                  int32_t priority = 0) {
  return MakeSeq(uid, Iota(prompt_len, 100 + 1000 * static_cast<int32_t>(uid)), max_tokens,
                 priority);
}

KvCacheConfig Pool(int32_t num_blocks, int32_t block_size, bool prefix_caching = true) {
  return {.num_blocks = num_blocks,
          .block_size = block_size,
          .enable_prefix_caching = prefix_caching,
          .hash_seed = 42};
}

// Runs one step the way the engine does: schedule, commit, append a token for samplers.
// Returns the scheduled (uid, num_new_tokens) pairs.
Steps RunStep(Scheduler& s, int32_t token = 7) {
  StepBatch b = s.Schedule();
  s.CommitStep(b);
  Steps out;
  for (const auto& ss : b.seqs) {
    out.emplace_back(ss.uid, ss.num_new_tokens);
    if (ss.samples) s.AppendToken(ss.uid, token);
  }
  return out;
}

TEST(KvCacheManagerTest, AllocateGrowsTablesAndFreeReturnsBlocks) {
  KvCacheManager kv(Pool(4, 16, /*prefix_caching=*/false));
  Sequence a;
  a.tokens = Iota(40);
  EXPECT_TRUE(kv.Allocate(a, {}, 17));
  EXPECT_EQ(a.block_table.size(), 2u);
  EXPECT_EQ(kv.num_free_blocks(), 2);
  EXPECT_DOUBLE_EQ(kv.usage(), 0.5);
  EXPECT_TRUE(kv.Allocate(a, {}, 32));  // still two blocks
  EXPECT_EQ(kv.num_free_blocks(), 2);
  Sequence b;
  b.tokens = Iota(40);
  EXPECT_FALSE(kv.Allocate(b, {}, 33));  // needs 3, only 2 free: nothing changes
  EXPECT_TRUE(b.block_table.empty());
  EXPECT_EQ(kv.num_free_blocks(), 2);
  kv.Free(a);
  EXPECT_EQ(kv.num_free_blocks(), 4);
  EXPECT_TRUE(a.block_table.empty());
  EXPECT_EQ(kv.CheckConsistency(), "");
}

// Computes a sequence's first n tokens "in the model": allocate, mark computed, register.
void Compute(KvCacheManager& kv, Sequence& s, int32_t n) {
  ASSERT_TRUE(kv.Allocate(s, {}, n));
  s.num_computed_tokens = n;
  kv.CacheComputedBlocks(s);
}

TEST(KvCacheManagerTest, PrefixIsFoundByBlockAndNeverCoversTheLastToken) {
  KvCacheManager kv(Pool(16, 4));
  Sequence a;
  a.tokens = Iota(10);  // blocks [100..103] [104..107], then 2 tokens in a partial block
  Compute(kv, a, 10);
  EXPECT_EQ(kv.num_cached_blocks(), 2);  // the partial block is not cached

  Sequence b;
  b.tokens = Iota(9);  // shares both full blocks
  std::vector<int32_t> hit = kv.FindCachedPrefix(b);
  EXPECT_EQ(hit, (std::vector<int32_t>{a.block_table[0], a.block_table[1]}));
  ASSERT_TRUE(kv.Allocate(b, hit, 9));
  EXPECT_EQ(b.block_table[0], a.block_table[0]);
  EXPECT_EQ(kv.ref_count(a.block_table[0]), 2);

  Sequence c;
  c.tokens = Iota(8);  // exactly two blocks: the last token must be computed, so one block hits
  EXPECT_EQ(kv.FindCachedPrefix(c).size(), 1u);

  Sequence d;
  d.tokens = Iota(10);
  d.tokens[5] = 0;  // differs in block 1: only block 0 hits
  EXPECT_EQ(kv.FindCachedPrefix(d).size(), 1u);

  Sequence salted;
  salted.tokens = Iota(10);
  salted.cache_salt = "tenant-b";  // another salt shares nothing
  EXPECT_TRUE(kv.FindCachedPrefix(salted).empty());
  EXPECT_EQ(kv.CheckConsistency(), "");
}

TEST(KvCacheManagerTest, FreedCachedBlocksStayReusableUntilEvictedInLruOrder) {
  KvCacheManager kv(Pool(4, 2));
  Sequence a;
  a.tokens = Iota(5);
  Compute(kv, a, 4);  // two cached blocks
  const std::vector<int32_t> a_blocks = a.block_table;
  kv.Free(a);
  EXPECT_EQ(kv.num_free_blocks(), 4);
  EXPECT_EQ(kv.num_cached_blocks(), 2);

  // A newcomer with other tokens takes the two never-used blocks first.
  Sequence b;
  b.tokens = Iota(4, 500);
  ASSERT_TRUE(kv.Allocate(b, {}, 4));
  EXPECT_EQ(kv.num_evictions(), 0);
  Sequence again;
  again.tokens = Iota(5);
  EXPECT_EQ(kv.FindCachedPrefix(again), a_blocks);  // still there

  // One more block must evict: a's tail block goes before its head block.
  Sequence c;
  c.tokens = Iota(2, 900);
  ASSERT_TRUE(kv.Allocate(c, {}, 2));
  EXPECT_EQ(kv.num_evictions(), 1);
  EXPECT_EQ(c.block_table[0], a_blocks[1]);
  EXPECT_EQ(kv.FindCachedPrefix(again), std::vector<int32_t>{a_blocks[0]});
  EXPECT_EQ(kv.CheckConsistency(), "");
}

TEST(KvCacheManagerTest, ReviveCountsCachedFreeBlocksAgainstThePool) {
  KvCacheManager kv(Pool(3, 2));
  Sequence a;
  a.tokens = Iota(5);
  Compute(kv, a, 4);
  kv.Free(a);
  Sequence b;
  b.tokens = Iota(5);
  std::vector<int32_t> hit = kv.FindCachedPrefix(b);
  ASSERT_EQ(hit.size(), 2u);
  // Reviving 2 cached blocks and 2 fresh ones needs 4 of 3 free: refused, nothing changes.
  EXPECT_FALSE(kv.Allocate(b, hit, 8));
  EXPECT_TRUE(b.block_table.empty());
  EXPECT_EQ(kv.num_free_blocks(), 3);
  EXPECT_TRUE(kv.Allocate(b, hit, 6));
  EXPECT_EQ(kv.num_free_blocks(), 0);
  EXPECT_EQ(kv.CheckConsistency(), "");
}

TEST(KvCacheManagerTest, DisabledPrefixCachingFindsNothing) {
  KvCacheManager kv(Pool(8, 2, /*prefix_caching=*/false));
  Sequence a;
  a.tokens = Iota(5);
  Compute(kv, a, 4);
  Sequence b;
  b.tokens = Iota(5);
  EXPECT_TRUE(kv.FindCachedPrefix(b).empty());
  EXPECT_EQ(kv.num_cached_blocks(), 0);
}

TEST(SchedulerTest, BatchDescribesTokensPositionsSlotsAndCsrTables) {
  KvCacheManager kv(Pool(8, 4));
  Scheduler s({.max_num_seqs = 4, .max_batched_tokens = 64}, &kv);
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
  EXPECT_EQ(s.last_report().first_scheduled, (std::vector<uint64_t>{1, 2}));
}

TEST(SchedulerTest, PromptLogitRowsCoverEveryPromptPositionAcrossChunksAndSkipTheCache) {
  KvCacheManager kv(Pool(16, 4));
  Scheduler s({.max_num_seqs = 4, .max_batched_tokens = 6, .long_prefill_chunk = 6}, &kv);
  // A cached copy of the prompt exists (uid 1 ran it); uid 2 wants prompt logits.
  s.Add(MakeSeq(1, Iota(10), 1));
  RunStep(s);
  RunStep(s);  // uid 1 computes its prompt (6 + 4) and samples
  ASSERT_TRUE(s.Remove(1));
  auto seq = MakeSeq(2, Iota(10), 2);
  seq->needs_prompt_logits = true;
  s.Add(std::move(seq));
  StepBatch first = s.Schedule();
  ASSERT_EQ(first.num_seqs(), 1);
  EXPECT_EQ(first.seqs[0].start_position, 0) << "the cached blocks have no logits: recompute";
  EXPECT_EQ(first.seqs[0].num_prompt_logit_rows, 6);
  EXPECT_FALSE(first.seqs[0].samples);
  EXPECT_EQ(first.logits_indices, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
  s.CommitStep(first);
  StepBatch second = s.Schedule();
  // Positions 6..9: rows for 6, 7 and 8 (the logprobs of tokens 7..9), then 9's sample row.
  EXPECT_EQ(second.seqs[0].num_prompt_logit_rows, 3);
  EXPECT_TRUE(second.seqs[0].samples);
  EXPECT_EQ(second.logits_indices, (std::vector<int32_t>{0, 1, 2, 3}));
  s.CommitStep(second);
  s.AppendToken(2, 7);
  StepBatch decode = s.Schedule();
  EXPECT_EQ(decode.seqs[0].num_prompt_logit_rows, 0);
  EXPECT_EQ(decode.logits_indices, (std::vector<int32_t>{0}));
}

// Table-driven: per step, the expected (uid, tokens) scheduled.
TEST(SchedulerTest, ChunksLongPromptsWithinTheTokenBudgetAndRunsDecodesFirst) {
  KvCacheManager kv(Pool(64, 4));
  Scheduler s({.max_num_seqs = 8, .max_batched_tokens = 8, .long_prefill_chunk = 8}, &kv);
  s.Add(MakeSeq(1, 3, 10));   // short
  s.Add(MakeSeq(2, 20, 10));  // long: chunked over several steps
  const std::vector<Steps> expected = {
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
  KvCacheManager kv(Pool(64, 4));
  Scheduler s({.max_num_seqs = 1, .max_batched_tokens = 64}, &kv);
  s.Add(MakeSeq(1, 2, 1, /*priority=*/5));
  s.Add(MakeSeq(2, 2, 1, /*priority=*/0));
  s.Add(MakeSeq(3, 2, 1, /*priority=*/0));
  EXPECT_EQ(RunStep(s), (Steps{{2, 2}}));
  ASSERT_TRUE(s.Remove(2));
  EXPECT_EQ(RunStep(s), (Steps{{3, 2}}));
  ASSERT_TRUE(s.Remove(3));
  EXPECT_EQ(RunStep(s), (Steps{{1, 2}}));
}

TEST(SchedulerTest, PreemptsTheLatestArrivalWhenBlocksRunOutAndRecomputesItLater) {
  KvCacheManager kv(Pool(2, 4, /*prefix_caching=*/false));  // 8 token slots
  Scheduler s({.max_num_seqs = 4, .max_batched_tokens = 64}, &kv);
  s.Add(MakeSeq(1, 4, 4));
  s.Add(MakeSeq(2, 4, 4));
  EXPECT_EQ(RunStep(s), (Steps{{1, 4}, {2, 4}}));
  // Both now hold 5 tokens and need a second block; only one can have it: 2 is preempted.
  EXPECT_EQ(RunStep(s), (Steps{{1, 1}}));
  EXPECT_EQ(s.last_report().preempted, std::vector<uint64_t>{2});
  EXPECT_EQ(s.counters().preemptions, 1);
  EXPECT_EQ(s.num_waiting(), 1);
  Sequence* two = s.Find(2);
  EXPECT_EQ(two->num_computed_tokens, 0);
  EXPECT_EQ(two->num_tokens(), 5);  // its generated token is kept
  ASSERT_TRUE(s.Remove(1));
  // 2 comes back and recomputes prompt + generated token in one chunk, then samples.
  EXPECT_EQ(RunStep(s), (Steps{{2, 5}}));
  EXPECT_EQ(s.Find(2)->num_tokens(), 6);
}

TEST(SchedulerTest, VictimIsTheLowestPriorityEvenIfItWasScheduledEarlierInTheStep) {
  KvCacheManager kv(Pool(3, 4, /*prefix_caching=*/false));
  Scheduler s({.max_num_seqs = 2, .max_batched_tokens = 5, .long_prefill_chunk = 64}, &kv);
  s.Add(MakeSeq(1, 3, 6, /*priority=*/1));
  EXPECT_EQ(RunStep(s), (Steps{{1, 3}}));
  s.Add(MakeSeq(2, 8, 4, /*priority=*/0));  // higher priority, prefilled in two chunks
  EXPECT_EQ(RunStep(s), (Steps{{1, 1}, {2, 4}}));
  // 1's decode (scheduled first, as decodes are) takes the last free block; then 2's second
  // chunk needs a block, and 1 is the lowest priority: 1 is unscheduled and preempted.
  EXPECT_EQ(RunStep(s), (Steps{{2, 4}}));
  EXPECT_EQ(s.last_report().preempted, std::vector<uint64_t>{1});
  EXPECT_EQ(s.Find(1)->state, SequenceState::kWaiting);
  EXPECT_EQ(s.Find(1)->num_computed_tokens, 0);
}

TEST(SchedulerTest, PreemptedSequenceResumesFromItsOwnCachedBlocks) {
  KvCacheManager kv(Pool(5, 4));
  Scheduler s({.max_num_seqs = 4, .max_batched_tokens = 64}, &kv);
  s.Add(MakeSeq(1, 8, 8));
  s.Add(MakeSeq(2, 8, 8, /*priority=*/1));
  EXPECT_EQ(RunStep(s), (Steps{{1, 8}, {2, 8}}));  // two full blocks each, one block free
  // 1 takes the free block; 2 then has none and is the one that runs last: it yields.
  EXPECT_EQ(RunStep(s), (Steps{{1, 1}}));
  EXPECT_EQ(s.last_report().preempted, std::vector<uint64_t>{2});
  ASSERT_TRUE(s.Remove(1));
  // 2 has 9 tokens; its two full blocks are still cached: only the last token is recomputed.
  EXPECT_EQ(RunStep(s), (Steps{{2, 1}}));
  EXPECT_EQ(s.Find(2)->num_cached_prompt_tokens, 0);  // usage counts the first admission only
  EXPECT_EQ(s.counters().prefix_hit_tokens, 8);
}

TEST(SchedulerTest, SharedThousandTokenPrefixIsComputedOnce) {
  KvCacheManager kv(Pool(256, 16));
  Scheduler s({.max_num_seqs = 8, .max_batched_tokens = 2048}, &kv);
  std::vector<int32_t> prefix = Iota(1000);
  std::vector<int32_t> p1 = prefix, p2 = prefix;
  p1.insert(p1.end(), {1, 2, 3});
  p2.insert(p2.end(), {4, 5, 6, 7});
  s.Add(MakeSeq(1, p1, 4));
  EXPECT_EQ(RunStep(s), (Steps{{1, 1003}}));
  const int64_t before = s.counters().computed_tokens;
  s.Add(MakeSeq(2, p2, 4));
  const Steps step = RunStep(s);
  // 1000 / 16 = 62 full blocks = 992 tokens are cached; 12 of 1004 are computed.
  EXPECT_EQ(step, (Steps{{1, 1}, {2, 12}}));
  EXPECT_EQ(s.Find(2)->num_cached_prompt_tokens, 992);
  EXPECT_EQ(s.counters().computed_tokens - before, 1 + 12);
  EXPECT_EQ(s.counters().prefix_hit_tokens, 992);
  for (int b = 0; b < 62; ++b) EXPECT_EQ(s.Find(2)->block_table[b], s.Find(1)->block_table[b]);
}

// Head of line: an 8k-token prompt is prefilling; short requests arriving meanwhile get their
// first token within one step, and the long one still progresses every step.
TEST(SchedulerTest, ShortRequestsAreNotBlockedBehindAnEightThousandTokenPrefill) {
  KvCacheManager kv(Pool(1024, 16));
  Scheduler s({.max_num_seqs = 64, .max_batched_tokens = 2048}, &kv);  // chunk cap 512
  s.Add(MakeSeq(1, 8192, 4));
  EXPECT_EQ(RunStep(s), (Steps{{1, 2048}}));  // alone: the whole budget
  uint64_t uid = 2;
  for (int step = 0; step < 6; ++step) {
    for (int k = 0; k < 3; ++k) s.Add(MakeSeq(uid++, 20 + k * 30, 2));
    const uint64_t first_new = uid - 3;
    const Steps got = RunStep(s);
    // The long prompt got a capped chunk, and every new short request was prefilled and sampled.
    EXPECT_TRUE(std::find(got.begin(), got.end(), std::pair<uint64_t, int32_t>{1, 512}) !=
                got.end())
        << "step " << step;
    for (uint64_t u = first_new; u < uid; ++u) {
      EXPECT_EQ(s.Find(u)->num_generated(), 1) << "request " << u << " step " << step;
    }
    for (const auto& [u, n] : got) {
      Sequence* q = s.Find(u);
      if (q != nullptr && u != 1 && q->num_generated() >= q->max_tokens) s.Remove(u);
    }
  }
  EXPECT_GT(s.Find(1)->num_computed_tokens, 2048);
}

TEST(SchedulerTest, OnlyMaxLongPartialPrefillsLongPromptsPrefillAtOnce) {
  KvCacheManager kv(Pool(1024, 16));
  Scheduler s({.max_num_seqs = 8, .max_batched_tokens = 256, .long_prefill_chunk = 64}, &kv);
  s.Add(MakeSeq(1, 1000, 1));
  s.Add(MakeSeq(2, 1000, 1));
  s.Add(MakeSeq(3, 10, 1));
  // 1 starts (capped: others wait); 2 is long too and waits; 3 overtakes it.
  EXPECT_EQ(RunStep(s), (Steps{{1, 64}, {3, 10}}));
  EXPECT_EQ(s.Find(2)->state, SequenceState::kWaiting);
}

TEST(SchedulerTest, LongPrefillUsesTheWholeBudgetWhenNoOneElseCanUseIt) {
  KvCacheManager kv(Pool(1024, 16));
  Scheduler s({.max_num_seqs = 2, .max_batched_tokens = 256, .long_prefill_chunk = 64}, &kv);
  s.Add(MakeSeq(1, 4, 100));
  s.Add(MakeSeq(2, 1000, 1));
  s.Add(MakeSeq(3, 10, 1));  // waits: both sequence slots are taken
  // Once 2 is admitted no slot is left for 3: nothing else could use the budget, no cap.
  EXPECT_EQ(RunStep(s), (Steps{{1, 4}, {2, 252}}));
  EXPECT_EQ(RunStep(s), (Steps{{1, 1}, {2, 255}}));
  EXPECT_EQ(s.last_report().num_decode_tokens, 1);
  EXPECT_EQ(s.last_report().num_prefill_tokens, 255);
}

TEST(SchedulerTest, CanEverFitIsTheWholePool) {
  KvCacheManager kv(Pool(4, 16));
  Scheduler s({.max_num_seqs = 4, .max_batched_tokens = 64}, &kv);
  EXPECT_TRUE(s.CanEverFit(64));
  EXPECT_FALSE(s.CanEverFit(65));
  EXPECT_FALSE(s.CanEverFit(0));
}

// Randomised property test: thousands of operations on tiny pools that force preemption, with
// prompts drawn from shared prefixes so that blocks are shared and evicted. After every step: no
// block leaked or held twice by one table, ref counts equal the tables holding each block, the
// free queue is exactly the unheld blocks, and - modelling each KV slot's content as the hash of
// the token prefix it was computed for - every context slot a step reads holds that sequence's
// own prefix. Every request ends exactly once.
TEST(SchedulerPropertyTest, NoLeaksNoDoubleOwnershipCorrectSharingEveryRequestEndsOnce) {
  int64_t total_preemptions = 0, total_hits = 0, total_evictions = 0;
  for (uint32_t seed = 0; seed < 30; ++seed) {
    std::mt19937 rng(seed);
    const int32_t block_size = 1 + rng() % 5;
    KvCacheManager kv(Pool(6 + rng() % 12, block_size, /*prefix_caching=*/seed % 5 != 4));
    const int32_t max_num_seqs = 1 + static_cast<int32_t>(rng() % 6);
    Scheduler s({.max_num_seqs = max_num_seqs,
                 .max_batched_tokens = max_num_seqs + static_cast<int32_t>(rng() % 24),
                 .long_prefill_chunk = static_cast<int32_t>(rng() % 8),
                 .max_long_partial_prefills = 1 + static_cast<int32_t>(rng() % 2)},
                &kv);
    std::vector<std::vector<int32_t>> prefixes;
    for (int i = 0; i < 3; ++i) prefixes.push_back(Iota(1 + rng() % 12, 10 * i));
    std::vector<uint64_t> slot_content(kv.num_blocks() * block_size, 0);
    auto prefix_hash = [](const Sequence& q, int32_t upto) {
      uint64_t h = std::hash<std::string>()(q.cache_salt);
      for (int32_t t = 0; t <= upto; ++t) h = h * 1000003u + static_cast<uint32_t>(q.tokens[t]);
      return h;
    };
    std::set<uint64_t> live;
    std::map<uint64_t, int> ended;
    uint64_t next = 1;
    for (int op = 0; op < 500; ++op) {
      const int kind = rng() % 10;
      if (kind < 3) {
        const int32_t cap = kv.num_blocks() * block_size;
        std::vector<int32_t> prompt = prefixes[rng() % prefixes.size()];
        const int32_t extra = rng() % 6;
        for (int32_t i = 0; i < extra; ++i) prompt.push_back(rng() % 3);
        if (static_cast<int32_t>(prompt.size()) >= cap) prompt.resize(cap / 2);
        const int32_t max_tokens = 1 + rng() % std::max<int32_t>(1, cap - prompt.size());
        auto q = MakeSeq(next, prompt, max_tokens, rng() % 3);
        if (rng() % 4 == 0) q->cache_salt = "salt";
        s.Add(std::move(q));
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
        ASSERT_EQ(s.last_report().num_prefill_tokens + s.last_report().num_decode_tokens,
                  b.num_tokens());
        for (int32_t i = 0; i < b.num_seqs(); ++i) {
          const ScheduledSequence& ss = b.seqs[i];
          Sequence* q = s.Find(ss.uid);
          const int32_t* table = b.block_table.data() + b.block_table_indptr[i];
          for (int32_t p = 0; p < ss.start_position; ++p) {
            const int64_t slot = int64_t{table[p / block_size]} * block_size + p % block_size;
            ASSERT_EQ(slot_content[slot], prefix_hash(*q, p))
                << "seed " << seed << " op " << op << " uid " << ss.uid << " reads a foreign "
                << "or stale slot at position " << p;
          }
          for (int32_t t = b.query_start[i]; t < b.query_start[i + 1]; ++t) {
            slot_content[b.slot_mapping[t]] = prefix_hash(*q, b.positions[t]);
          }
        }
        s.CommitStep(b);
        for (const auto& ss : b.seqs) {
          if (!ss.samples) continue;
          s.AppendToken(ss.uid, rng() % 3);
          Sequence* q = s.Find(ss.uid);
          if (q->num_generated() >= q->max_tokens) {
            ASSERT_TRUE(s.Remove(ss.uid));
            ++ended[ss.uid];
            live.erase(ss.uid);
          }
        }
      }
      // Invariants.
      std::vector<int32_t> owners(kv.num_blocks(), 0);
      for (uint64_t uid : live) {
        Sequence* q = s.Find(uid);
        ASSERT_NE(q, nullptr);
        std::set<int32_t> distinct(q->block_table.begin(), q->block_table.end());
        ASSERT_EQ(distinct.size(), q->block_table.size()) << "a table holds a block twice";
        for (int32_t b : q->block_table) ++owners[b];
        ASSERT_LE(q->num_computed_tokens, q->num_tokens());
        ASSERT_GE(static_cast<int32_t>(q->block_table.size()) * block_size, q->num_computed_tokens);
        if (q->state == SequenceState::kWaiting) {
          ASSERT_TRUE(q->block_table.empty());
        }
      }
      int32_t held = 0;
      for (int32_t b = 0; b < kv.num_blocks(); ++b) {
        ASSERT_EQ(owners[b], kv.ref_count(b)) << "block " << b << " seed " << seed;
        held += owners[b] > 0 ? 1 : 0;
      }
      ASSERT_EQ(held + kv.num_free_blocks(), kv.num_blocks()) << "leak, seed " << seed;
      ASSERT_EQ(kv.CheckConsistency(), "") << "seed " << seed << " op " << op;
      ASSERT_EQ(s.num_running() + s.num_waiting(), static_cast<int32_t>(live.size()));
      ASSERT_LE(s.num_running(), max_num_seqs);
    }
    for (uint64_t uid : std::set<uint64_t>(live)) {
      ASSERT_TRUE(s.Remove(uid));
      ++ended[uid];
    }
    EXPECT_EQ(kv.num_free_blocks(), kv.num_blocks());
    for (uint64_t uid = 1; uid < next; ++uid) EXPECT_EQ(ended[uid], 1) << "uid " << uid;
    total_preemptions += s.counters().preemptions;
    total_hits += s.counters().prefix_hit_tokens;
    total_evictions += kv.num_evictions();
  }
  // The test exercised what it claims to.
  EXPECT_GT(total_preemptions, 0);
  EXPECT_GT(total_hits, 0);
  EXPECT_GT(total_evictions, 0);
}

}  // namespace
}  // namespace kvasir
