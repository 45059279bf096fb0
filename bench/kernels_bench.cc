// CPU kernel benchmarks at SmolLM2-135M shapes: MatMul (decode m=1, prefill m=128) and paged
// attention decode; MLA decode (absorbed vs expanded) at DeepSeek-V3's head shapes. Threads =
// hardware concurrency unless KVASIR_BENCH_THREADS is set.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/mla.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/thread_pool.h"

namespace kvasir::cpu {
namespace {

ThreadPool& Pool() {
  static ThreadPool pool([] {
    const char* env = std::getenv("KVASIR_BENCH_THREADS");
    return env != nullptr ? std::atoi(env) : static_cast<int>(std::thread::hardware_concurrency());
  }());
  return pool;
}

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Args: m, k, n, dtype.
void BM_MatMul(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const DType wt = static_cast<DType>(state.range(3));
  const std::vector<float> src = Random(n * k, 1);
  std::vector<uint8_t> w(n * RowBytes(wt, k));
  for (int64_t j = 0; j < n; ++j) {
    QuantizeRow(src.data() + j * k, wt, k, w.data() + j * RowBytes(wt, k));
  }
  const std::vector<float> x = Random(m * k, 2);
  std::vector<float> y(m * n);
  for (auto _ : state) {
    MatMul(x.data(), m, k, w.data(), wt, n, nullptr, y.data(), &Pool());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(DTypeName(wt)) + " threads=" + std::to_string(Pool().num_threads()));
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * m * n * k * state.iterations(), benchmark::Counter::kIsRate,
                         benchmark::Counter::kIs1000);
  state.counters["weight_GB/s"] =
      benchmark::Counter(static_cast<double>(w.size()) * state.iterations(),
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void MatMulArgs(benchmark::internal::Benchmark* b) {
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {576, 576}, {576, 192}, {576, 1536}, {1536, 576}};
  for (int64_t m : {1, 128}) {
    for (DType t : {DType::kQ4_1, DType::kQ8_0, DType::kF32}) {
      for (auto [k, n] : shapes) b->Args({m, k, n, static_cast<int64_t>(t)});
    }
    b->Args({m, 576, 49152, static_cast<int64_t>(DType::kQ8_0)});  // LM head
  }
}
BENCHMARK(BM_MatMul)->Apply(MatMulArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);

// One decode token per sequence; Args: context length, number of sequences. SmolLM2 layer:
// 9 heads, 3 kv heads, head_dim 64.
void BM_PagedAttentionDecode(benchmark::State& state) {
  const int context = static_cast<int>(state.range(0));
  const int num_seqs = static_cast<int>(state.range(1));
  const int heads = 9, kv_heads = 3, dim = 64, block_size = 16;
  const int blocks_per_seq = (context + block_size - 1) / block_size;
  const int num_blocks = blocks_per_seq * num_seqs;
  const std::vector<float> k_cache = Random(int64_t{num_blocks} * block_size * kv_heads * dim, 3);
  const std::vector<float> v_cache = Random(k_cache.size(), 4);
  const std::vector<float> q = Random(int64_t{num_seqs} * heads * dim, 5);
  std::vector<float> out(q.size());
  std::vector<int32_t> query_start(num_seqs + 1), seq_lens(num_seqs, context);
  std::vector<int32_t> indptr(num_seqs + 1), table(num_blocks);
  for (int s = 0; s <= num_seqs; ++s) {
    query_start[s] = s;
    indptr[s] = s * blocks_per_seq;
  }
  for (int b = 0; b < num_blocks; ++b) table[b] = (b * 7919) % num_blocks;  // scattered blocks
  PagedAttentionArgs a{q.data(),
                       k_cache.data(),
                       v_cache.data(),
                       num_seqs,
                       heads,
                       kv_heads,
                       dim,
                       block_size,
                       0.125f,
                       query_start.data(),
                       seq_lens.data(),
                       indptr.data(),
                       table.data(),
                       out.data()};
  for (auto _ : state) {
    PagedAttention(a, &Pool());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["kv_GB/s"] = benchmark::Counter(
      2.0 * num_seqs * context * kv_heads * dim * sizeof(float) * state.iterations(),
      benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_PagedAttentionDecode)
    ->Args({512, 1})
    ->Args({4096, 1})
    ->Args({512, 8})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// One MLA decode query; Args: context length, form (0 absorbed, 1 expanded). DeepSeek-V3's
// head shapes (kv_lora_rank 512, nope 128, rope 64, v 128) with 16 heads (128 over 8 ranks).
void BM_MlaDecode(benchmark::State& state) {
  const int context = static_cast<int>(state.range(0));
  const MlaForm form = state.range(1) == 0 ? MlaForm::kAbsorbed : MlaForm::kExpanded;
  const int heads = 16, rank = 512, nope = 128, rope = 64, v = 128, block_size = 16;
  const int num_blocks = (context + block_size - 1) / block_size;
  const std::vector<float> cache = Random(int64_t{num_blocks} * block_size * (rank + rope), 3);
  const std::vector<float> kv_b = Random(int64_t{heads} * (nope + v) * rank, 4);
  const std::vector<float> q = Random(int64_t{heads} * (nope + rope), 5);
  std::vector<float> out(heads * v);
  std::vector<int32_t> table(num_blocks);
  for (int b = 0; b < num_blocks; ++b) table[b] = (b * 7919) % num_blocks;
  const int32_t query_start[2] = {0, 1}, indptr[2] = {0, num_blocks};
  MlaAttentionArgs a;
  a.q = q.data();
  a.cache = cache.data();
  a.kv_b = kv_b.data();
  a.num_heads = heads;
  a.nope_dim = nope;
  a.rope_dim = rope;
  a.v_dim = v;
  a.kv_lora_rank = rank;
  a.block_size = block_size;
  a.scale = 0.1f;
  a.num_seqs = 1;
  a.query_start = query_start;
  a.seq_lens = &context;
  a.block_table_indptr = indptr;
  a.block_table = table.data();
  a.out = out.data();
  MlaScratch scratch;
  for (auto _ : state) {
    MlaAttention(a, form, &scratch, &Pool());
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_MlaDecode)
    ->Args({512, 0})
    ->Args({512, 1})
    ->Args({2048, 0})
    ->Args({2048, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace kvasir::cpu

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("kernels", kvasir::cpu::DescribeKernels());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
