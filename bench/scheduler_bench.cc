// Scheduler and KV cache manager costs, without a model (Google Benchmark; not a test).
//   BM_SchedulerDecodeStep/N: one engine step's worth of scheduler work with N running decodes:
//     Schedule + CommitStep (registers blocks that became full in the prefix cache) + one
//     AppendToken per sequence. Target: < 50 us at N = 256.
//   BM_KvAllocateFree: a 64-block table allocated and freed (blocks/s in items_per_second).
//   BM_KvPrefixHit: lookup + allocation of a 1,024-token cached prefix (64 blocks).
#include <memory>
#include <vector>

#include "benchmark/benchmark.h"
#include "scheduler/kv_cache_manager.h"
#include "scheduler/scheduler.h"

namespace kvasir {
namespace {

constexpr int32_t kBlockSize = 16;
constexpr int32_t kPrompt = 128;
constexpr int32_t kMaxTokens = 4096;

struct DecodingScheduler {
  std::unique_ptr<KvCacheManager> kv;
  std::unique_ptr<Scheduler> scheduler;
  int64_t steps = 0;

  explicit DecodingScheduler(int32_t n, bool prefix_caching) {
    const int32_t blocks_per_seq = (kPrompt + kMaxTokens) / kBlockSize + 1;
    kv = std::make_unique<KvCacheManager>(KvCacheConfig{.num_blocks = n * blocks_per_seq,
                                                        .block_size = kBlockSize,
                                                        .enable_prefix_caching = prefix_caching,
                                                        .hash_seed = 1});
    scheduler = std::make_unique<Scheduler>(
        SchedulerConfig{.max_num_seqs = n, .max_batched_tokens = std::max(n, 8192)}, kv.get());
    for (int32_t i = 0; i < n; ++i) {
      auto s = std::make_unique<Sequence>();
      s->uid = i + 1;
      s->arrival = i + 1;
      for (int32_t t = 0; t < kPrompt; ++t) s->tokens.push_back(i * 7919 + t);
      s->num_prompt_tokens = kPrompt;
      s->max_tokens = kMaxTokens;
      scheduler->Add(std::move(s));
    }
    // Prefill everyone, until a step is all decodes.
    while (Step() != n || scheduler->num_waiting() > 0) {
    }
  }
  // Returns the number of sequences that sampled.
  int32_t Step() {
    StepBatch b = scheduler->Schedule();
    scheduler->CommitStep(b);
    int32_t sampled = 0;
    for (const ScheduledSequence& ss : b.seqs) {
      if (!ss.samples) continue;
      scheduler->AppendToken(ss.uid, static_cast<int32_t>(ss.uid + steps));
      ++sampled;
    }
    ++steps;
    return sampled;
  }
};

void BM_SchedulerDecodeStep(benchmark::State& state) {
  const int32_t n = static_cast<int32_t>(state.range(0));
  const bool prefix_caching = state.range(1) != 0;
  auto ds = std::make_unique<DecodingScheduler>(n, prefix_caching);
  for (auto _ : state) {
    if (ds->steps >= kMaxTokens - 64) {  // sequences near their end: start afresh, untimed
      state.PauseTiming();
      ds = std::make_unique<DecodingScheduler>(n, prefix_caching);
      state.ResumeTiming();
    }
    benchmark::DoNotOptimize(ds->Step());
  }
  state.counters["seqs"] = n;
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_SchedulerDecodeStep)
    ->ArgsProduct({{16, 64, 256, 1024}, {0, 1}})
    ->ArgNames({"seqs", "prefix_caching"})
    ->Unit(benchmark::kMicrosecond);

void BM_KvAllocateFree(benchmark::State& state) {
  KvCacheManager kv({.num_blocks = 4096, .block_size = kBlockSize, .enable_prefix_caching = true});
  Sequence s;
  s.tokens.assign(64 * kBlockSize, 1);
  for (auto _ : state) {
    kv.Allocate(s, {}, 64 * kBlockSize);
    kv.Free(s);
  }
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_KvAllocateFree);

void BM_KvPrefixHit(benchmark::State& state) {
  KvCacheManager kv({.num_blocks = 4096, .block_size = kBlockSize, .hash_seed = 1});
  Sequence first;
  for (int32_t t = 0; t < 64 * kBlockSize + 1; ++t) first.tokens.push_back(t);
  kv.Allocate(first, {}, first.num_tokens());
  first.num_computed_tokens = first.num_tokens();
  kv.CacheComputedBlocks(first);
  for (auto _ : state) {
    Sequence s;
    s.tokens = first.tokens;  // hashes are computed afresh, as for a new request
    std::vector<int32_t> hit = kv.FindCachedPrefix(s);
    kv.Allocate(s, hit, s.num_tokens());
    kv.Free(s);
    benchmark::DoNotOptimize(hit.data());
  }
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_KvPrefixHit);

}  // namespace
}  // namespace kvasir

BENCHMARK_MAIN();
