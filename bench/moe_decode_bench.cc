// CPU decode throughput of a small Qwen3-MoE-shaped model with dummy weights (64 experts, top-8,
// expert intermediate 256, hidden 512, 4 layers) against its dense peer of the same active size
// (Qwen3, intermediate 8 x 256 = 2048), at batch 1 and 32, with the share of the step spent in
// Ops::Moe. One iteration = one decode step of `batch` sequences at context 128 (Google Benchmark).
//   moe_decode_bench [--benchmark_min_time=2] [--benchmark_filter=...]
// The model runs directly on the ops (no scheduler or sampler), wrapped in an Ops decorator that
// times the MoE op. Not a test: it measures speed.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "benchmark/benchmark.h"
#include "engine/model_loader.h"
#include "engine/models/model.h"
#include "engine/ops.h"

namespace kvasir {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int32_t kContext = 128;  // tokens already in each sequence's cache
constexpr int32_t kBlockSize = 16;
constexpr int kThreads = 2;

// Forwards every op to the CPU backend; adds up the wall time spent in Moe.
class MoeTimingOps : public Ops {
 public:
  explicit MoeTimingOps(std::unique_ptr<Ops> inner) : inner_(std::move(inner)) {}
  double moe_seconds = 0;

  std::string Describe() const override { return inner_->Describe(); }
  absl::StatusOr<Weight> Upload(const TensorView& t) override { return inner_->Upload(t); }
  absl::Status AllocateKvCache(const KvCacheSpec& s) override { return inner_->AllocateKvCache(s); }
  void BeginStep(const StepBatch& b) override { inner_->BeginStep(b); }
  Tensor Alloc(int64_t rows, int64_t cols) override { return inner_->Alloc(rows, cols); }
  void Embedding(const Weight& t, Tensor out) override { inner_->Embedding(t, out); }
  void RmsNorm(Tensor x, const Weight& w, float eps, Tensor out) override {
    inner_->RmsNorm(x, w, eps, out);
  }
  void MatMul(Tensor x, const Weight& w, const Weight* b, Tensor out) override {
    inner_->MatMul(x, w, b, out);
  }
  void Add(Tensor a, Tensor b) override { inner_->Add(a, b); }
  void SiluMul(Tensor g, Tensor u, Tensor out) override { inner_->SiluMul(g, u, out); }
  Tensor RopeTable(const Weight& f, int32_t dim, RopeAngles a, float factor) override {
    return inner_->RopeTable(f, dim, a, factor);
  }
  void Rope(Tensor x, int32_t hd, int32_t offset, Tensor table, RopeLayout l) override {
    inner_->Rope(x, hd, offset, table, l);
  }
  void Attention(int32_t layer, Tensor q, Tensor k, Tensor v, float s, Tensor out) override {
    inner_->Attention(layer, q, k, v, s, out);
  }
  void MlaAttention(int32_t layer, Tensor q, Tensor latent, Tensor k_rope, const Weight& kv_b,
                    const MlaDims& dims, float s, Tensor out) override {
    inner_->MlaAttention(layer, q, latent, k_rope, kv_b, dims, s, out);
  }
  void Moe(Tensor x, const MoeWeights& w, Tensor out) override {
    const auto start = Clock::now();
    inner_->Moe(x, w, out);
    moe_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  }
  void GatherLogitsRows(Tensor x, Tensor out) override { inner_->GatherLogitsRows(x, out); }
  std::span<const float> ToHost(Tensor x) override { return inner_->ToHost(x); }
  SampledRows SampleRows(Tensor logits, const SampleRowsRequest& r) override {
    return inner_->SampleRows(logits, r);
  }
  absl::StatusOr<Weight> UploadFloats(const std::vector<float>& v) override {
    return inner_->UploadFloats(v);
  }

 private:
  std::unique_ptr<Ops> inner_;
};

// `batch` sequences; sequence s owns blocks [s * per_seq, (s + 1) * per_seq) and computes
// tokens [start, start + n) this step, sampling at the last.
StepBatch MakeBatch(int32_t batch, int32_t start, int32_t n, int64_t vocab) {
  const int32_t per_seq = (kContext + 1 + kBlockSize - 1) / kBlockSize;
  StepBatch b;
  b.query_start.push_back(0);
  b.block_table_indptr.push_back(0);
  for (int32_t s = 0; s < batch; ++s) {
    b.seqs.push_back({static_cast<uint64_t>(s), start, n, true, 0});
    for (int32_t p = start; p < start + n; ++p) {
      b.token_ids.push_back(static_cast<int32_t>((s * 7919 + p * 104729) % vocab));
      b.positions.push_back(p);
      b.slot_mapping.push_back(int64_t{s * per_seq + p / kBlockSize} * kBlockSize + p % kBlockSize);
    }
    b.query_start.push_back(b.num_tokens());
    b.seq_lens.push_back(start + n);
    for (int32_t i = 0; i < per_seq; ++i) b.block_table.push_back(s * per_seq + i);
    b.block_table_indptr.push_back(static_cast<int32_t>(b.block_table.size()));
    b.logits_indices.push_back(b.num_tokens() - 1);
  }
  return b;
}

void BM_Decode(benchmark::State& state, const std::string& model_dir) {
  const int32_t batch = static_cast<int32_t>(state.range(0));
  auto loaded =
      LoadModel(std::string(KVASIR_BENCH_MODELS_DIR) + "/" + model_dir, {.dummy_weights = true});
  if (!loaded.ok()) return state.SkipWithError(loaded.status().ToString().c_str());
  auto model = ModelRegistry::Get().Create(loaded->config);
  if (!model.ok()) return state.SkipWithError(model.status().ToString().c_str());
  MoeTimingOps ops(MakeCpuOps(kThreads));
  if (auto s = (*model)->Load(*loaded->weights, ops); !s.ok()) {
    return state.SkipWithError(s.ToString().c_str());
  }
  KvCacheSpec spec = (*model)->KvSpec();
  spec.block_size = kBlockSize;
  spec.num_blocks = batch * ((kContext + 1 + kBlockSize - 1) / kBlockSize);
  if (auto s = ops.AllocateKvCache(spec); !s.ok()) return state.SkipWithError(s.ToString().c_str());
  const int64_t vocab = loaded->config.vocab_size;
  const StepBatch prefill = MakeBatch(batch, 0, kContext, vocab);
  ops.BeginStep(prefill);
  (*model)->Forward(prefill, ops);
  const StepBatch decode = MakeBatch(batch, kContext, 1, vocab);
  ops.moe_seconds = 0;
  double total_seconds = 0;
  for (auto _ : state) {
    const auto start = Clock::now();
    ops.BeginStep(decode);
    Tensor logits = (*model)->Forward(decode, ops);
    benchmark::DoNotOptimize(logits.data);
    total_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(batch) * state.iterations(),
                                               benchmark::Counter::kIsRate);
  state.counters["moe_share"] = total_seconds > 0 ? ops.moe_seconds / total_seconds : 0.0;
}

BENCHMARK_CAPTURE(BM_Decode, qwen3_moe_small, std::string("qwen3_moe_small_dummy"))
    ->Arg(1)
    ->Arg(32)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, dense_peer, std::string("qwen3_dense_small_dummy"))
    ->Arg(1)
    ->Arg(32)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace kvasir

BENCHMARK_MAIN();
