// GPU kernel benchmarks with their ceilings measured in the same run (device/METHOD.md):
//   ceilings  device-to-device copy GB/s (bytes read + written), cuBLASLt bf16 GEMM 8192^3 TFLOP/s
//   gemm      y = x * W^T at Llama-3-8B layer shapes, M = 1, 8, 64, 256 (decode) and 2048 (prefill)
//   decode    paged decode attention GB/s (K/V bytes read) vs the copy bandwidth, batch 1..256,
//             context 512..8192, Llama-3-8B heads (32 q, 8 kv, head_dim 128, 16-token pages)
//   prefill   paged prefill attention TFLOP/s for one 2048-token prompt
//   sampler   Sample, 256 rows x 151936 vocab, T 1, top_k 50, top_p 0.9: us per batch and GB/s
//             of logits read once (the kernel reads each row several times) vs the copy
//   mla       MLA decode (kernels/cuda/mla.h) GB/s of latent cache read vs the copy bandwidth:
//             DeepSeek-V3 dims, 128 heads, batch 64, context 4096, 64-token pages (FlashMLA's
//             reference point: ~3000 GB/s on an H800)
//   moe       MoeForward at Qwen3-30B-A3B's MoE layer (hidden 2048, expert inter 768, 128 experts,
//             top 8) for 1 and 64 tokens: GB/s of the expert weights the routing touched
// Each figure is the median over samples after warm-up; a sample is one pair of CUDA events around
// R back-to-back repetitions, divided by R (so launch latency overlaps the kernels before it, as in
// a real step); inputs are random (never zeros) and rotate over ~512 MiB of copies so that L2
// cannot hold them.
// Usage: gpu_bench [--csv PATH] [--quick]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/mla.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/sampler.h"

namespace kvasir::cuda {
namespace {

#define CHECK_OK(expr)                                                                \
  do {                                                                                \
    const ::absl::Status s_ = (expr);                                                 \
    if (!s_.ok()) {                                                                   \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, s_.ToString().c_str()); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)
#define CHECK_CUDA(call) CHECK_OK(CudaStatus((call), #call))

constexpr size_t kRotateBytes = size_t{512} << 20;  // > 10x the H100's 50 MB L2

DeviceBuffer Alloc(size_t bytes) {
  auto b = DeviceBuffer::Allocate(bytes);
  CHECK_OK(b.status());
  return std::move(*b);
}

// Fills n bf16 with uniform [-1, 1) values: a 1M-element random block, copied over the range.
void FillRandomBf16(void* dst, size_t n, uint32_t seed) {
  const size_t block = std::min<size_t>(n, 1 << 20);
  std::vector<uint16_t> h(block);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (uint16_t& x : h) x = cpu::Fp32ToBf16(dist(rng));
  for (size_t off = 0; off < n; off += block) {
    CHECK_CUDA(cudaMemcpy(static_cast<uint16_t*>(dst) + off, h.data(), std::min(block, n - off) * 2,
                          cudaMemcpyHostToDevice));
  }
}

// Median milliseconds of one fn(rep) call: `samples` event pairs, each around per_pair consecutive
// calls (rep keeps counting, so rotating inputs keep rotating), divided by per_pair.
double MedianMs(const std::function<void(int)>& fn, int warmup, int samples, int per_pair) {
  for (int i = 0; i < warmup; ++i) fn(i);
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<cudaEvent_t> ev(2 * samples);
  for (cudaEvent_t& e : ev) CHECK_CUDA(cudaEventCreate(&e));
  int rep = warmup;
  for (int i = 0; i < samples; ++i) {
    CHECK_CUDA(cudaEventRecord(ev[2 * i]));
    for (int r = 0; r < per_pair; ++r) fn(rep++);
    CHECK_CUDA(cudaEventRecord(ev[2 * i + 1]));
  }
  CHECK_CUDA(cudaDeviceSynchronize());
  CHECK_CUDA(cudaGetLastError());
  std::vector<double> ms(samples);
  for (int i = 0; i < samples; ++i) {
    float t = 0;
    CHECK_CUDA(cudaEventElapsedTime(&t, ev[2 * i], ev[2 * i + 1]));
    ms[i] = double{t} / per_pair;
  }
  for (cudaEvent_t& e : ev) cudaEventDestroy(e);
  std::sort(ms.begin(), ms.end());
  return ms[samples / 2];
}

// Calls per event pair for the kernel benchmarks (the 1 GiB copy and 8192^3 GEMM ceilings, long
// enough on their own, use 1).
constexpr int kPerPair = 10;

struct Csv {
  FILE* f = nullptr;
  void Row(const std::string& line) {
    if (f) std::fprintf(f, "%s\n", line.c_str());
  }
};

struct Ceilings {
  double copy_gbs = 0, gemm_tflops = 0;
};

Ceilings MeasureCeilings(CublasLtGemm& gemm, Csv& csv, bool quick) {
  Ceilings c;
  const size_t bytes = size_t{1} << 30;
  DeviceBuffer src = Alloc(bytes), dst = Alloc(bytes);
  FillRandomBf16(src.data(), bytes / 2, 1);
  const double copy_ms = MedianMs(
      [&](int) {
        CHECK_CUDA(cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice));
      },
      3, quick ? 5 : 20, 1);
  c.copy_gbs = 2.0 * bytes / (copy_ms * 1e-3) / 1e9;
  const int64_t n = 8192;
  DeviceBuffer a = Alloc(n * n * 2), b = Alloc(n * n * 2), y = Alloc(n * n * 2);
  FillRandomBf16(a.data(), n * n, 2);
  FillRandomBf16(b.data(), n * n, 3);
  GemmArgs g;
  g.x = a.as<bf16>();
  g.w = b.as<bf16>();
  g.y = y.data();
  g.m = g.n = g.k = n;
  const double gemm_ms =
      MedianMs([&](int) { CHECK_OK(gemm.Run(g, nullptr)); }, 3, quick ? 5 : 20, 1);
  c.gemm_tflops = 2.0 * n * n * n / (gemm_ms * 1e-3) / 1e12;
  std::printf(
      "ceilings: device-to-device copy %.0f GB/s (1 GiB, read + write); cuBLASLt bf16 GEMM "
      "8192^3 %.0f TFLOP/s\n\n",
      c.copy_gbs, c.gemm_tflops);
  csv.Row(absl::StrFormat("ceiling,copy_gbs,%.1f", c.copy_gbs));
  csv.Row(absl::StrFormat("ceiling,gemm_tflops,%.1f", c.gemm_tflops));
  return c;
}

void BenchGemm(CublasLtGemm& gemm, const Ceilings& c, Csv& csv, bool quick) {
  const int64_t shapes[][2] = {{4096, 4096}, {14336, 4096}, {4096, 14336}};  // N x K
  const int64_t ms[] = {1, 8, 64, 256, 2048};
  std::printf("%-6s %-12s %10s %9s %8s %9s %8s\n", "M", "N x K", "us", "TFLOP/s", "%peak", "GB/s",
              "%copy");
  for (const auto& s : shapes) {
    const int64_t n = s[0], k = s[1];
    const size_t w_bytes = n * k * 2;
    const int copies = static_cast<int>(std::max<size_t>(2, kRotateBytes / w_bytes));
    DeviceBuffer w = Alloc(w_bytes * copies);
    FillRandomBf16(w.data(), n * k * copies, 10);
    for (int64_t m : ms) {
      DeviceBuffer x = Alloc(m * k * 2 * copies), y = Alloc(m * n * 2 * copies);
      FillRandomBf16(x.data(), m * k * copies, 11);
      auto run = [&](int rep) {
        const int i = rep % copies;
        GemmArgs g;
        g.x = x.as<bf16>() + i * m * k;
        g.w = w.as<bf16>() + i * n * k;
        g.y = y.as<bf16>() + i * m * n;
        g.m = m;
        g.n = n;
        g.k = k;
        CHECK_OK(gemm.Run(g, nullptr));
      };
      const double t = MedianMs(run, 5, quick ? 5 : 20, kPerPair);
      const double tflops = 2.0 * m * n * k / (t * 1e-3) / 1e12;
      const double gbs = (w_bytes + (m * k + m * n) * 2.0) / (t * 1e-3) / 1e9;
      std::printf("%-6lld %5lldx%-6lld %10.1f %9.1f %7.1f%% %9.0f %7.1f%%\n",
                  static_cast<long long>(m), static_cast<long long>(n), static_cast<long long>(k),
                  t * 1e3, tflops, 100 * tflops / c.gemm_tflops, gbs, 100 * gbs / c.copy_gbs);
      csv.Row(absl::StrFormat("gemm,%d,%d,%d,%.2f,%.2f,%.1f", m, n, k, t * 1e3, tflops, gbs));
    }
  }
  std::printf("\n");
}

// A paged KV cache of `layers` layers for batch sequences of ctx tokens, pages shuffled.
struct KvPool {
  int layers = 0;
  int64_t layer_elems = 0;
  DeviceBuffer k, v, indptr, indices, lens;
};

KvPool MakePool(int batch, int ctx, int kv_heads, int head_dim, int block) {
  KvPool p;
  const int pages_per_seq = (ctx + block - 1) / block;
  const int64_t pages = int64_t{batch} * pages_per_seq;
  p.layer_elems = pages * block * kv_heads * head_dim;
  const size_t layer_bytes = p.layer_elems * 2;
  // K and V of all layers together ~kRotateBytes (at least one layer), so that even the smallest
  // configuration cycles through far more than L2.
  p.layers = static_cast<int>(std::max<size_t>(1, kRotateBytes / (2 * layer_bytes)));
  p.k = Alloc(layer_bytes * p.layers);
  p.v = Alloc(layer_bytes * p.layers);
  FillRandomBf16(p.k.data(), p.layer_elems * p.layers, 20);
  FillRandomBf16(p.v.data(), p.layer_elems * p.layers, 21);
  std::vector<int32_t> indptr(batch + 1), ids(pages), lens(batch, ctx);
  for (int s = 0; s <= batch; ++s) indptr[s] = s * pages_per_seq;
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(22));
  p.indptr = Alloc(indptr.size() * 4);
  p.indices = Alloc(ids.size() * 4);
  p.lens = Alloc(lens.size() * 4);
  CHECK_CUDA(cudaMemcpy(p.indptr.data(), indptr.data(), indptr.size() * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(p.indices.data(), ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(p.lens.data(), lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));
  return p;
}

PagedKv View(const KvPool& p, int layer, int kv_heads, int head_dim, int block) {
  PagedKv kv;
  kv.k_cache = p.k.as<bf16>() + layer * p.layer_elems;
  kv.v_cache = p.v.as<bf16>() + layer * p.layer_elems;
  kv.block_size = block;
  kv.num_kv_heads = kv_heads;
  kv.head_dim = head_dim;
  kv.kv_indptr = p.indptr.as<int32_t>();
  kv.kv_indices = p.indices.as<int32_t>();
  kv.seq_lens = p.lens.as<int32_t>();
  return kv;
}

void BenchDecodeAttention(const Ceilings& c, Csv& csv, bool quick) {
  const int heads = 32, kv_heads = 8, d = 128, block = 16;
  int dev = 0, sms = 0;
  CHECK_CUDA(cudaGetDevice(&dev));
  CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  std::printf("decode attention (32 q heads, 8 kv heads, head_dim 128, 16-token pages)\n");
  std::printf("%-6s %-6s %10s %11s %9s %8s\n", "batch", "ctx", "us", "partitions", "GB/s", "%copy");
  for (int batch : {1, 8, 64, 256}) {
    for (int ctx : {512, 2048, 8192}) {
      KvPool pool = MakePool(batch, ctx, kv_heads, d, block);
      DeviceBuffer q = Alloc(int64_t{batch} * heads * d * 2),
                   out = Alloc(int64_t{batch} * heads * d * 2);
      FillRandomBf16(q.data(), int64_t{batch} * heads * d, 23);
      const DecodeAttentionPlan plan = PlanDecodeAttention(batch, heads, kv_heads, d, ctx, sms);
      DeviceBuffer ws = Alloc(std::max<size_t>(plan.workspace_bytes, 16));
      auto run = [&](int rep) {
        DecodeAttentionArgs a;
        a.q = q.as<bf16>();
        a.out = out.as<bf16>();
        a.num_seqs = batch;
        a.num_heads = heads;
        a.scale = 1.0f / std::sqrt(static_cast<float>(d));
        a.kv = View(pool, rep % pool.layers, kv_heads, d, block);
        a.plan = plan;
        a.workspace = ws.data();
        CHECK_OK(DecodeAttention(a, nullptr));
      };
      const double t = MedianMs(run, 5, quick ? 5 : 20, kPerPair);
      const double bytes = 2.0 * batch * ctx * kv_heads * d * 2 + 2.0 * batch * heads * d * 2;
      const double gbs = bytes / (t * 1e-3) / 1e9;
      std::printf("%-6d %-6d %10.1f %5d x %-4d %9.0f %7.1f%%\n", batch, ctx, t * 1e3,
                  plan.num_partitions, plan.partition_tokens, gbs, 100 * gbs / c.copy_gbs);
      csv.Row(absl::StrFormat("decode_attention,%d,%d,%.2f,%.1f", batch, ctx, t * 1e3, gbs));
    }
  }
  std::printf("\n");
}

void BenchPrefillAttention(const Ceilings& c, Csv& csv, bool quick) {
  const int heads = 32, kv_heads = 8, d = 128, block = 16, len = 2048;
  KvPool pool = MakePool(1, len, kv_heads, d, block);
  DeviceBuffer q = Alloc(int64_t{len} * heads * d * 2), out = Alloc(int64_t{len} * heads * d * 2);
  FillRandomBf16(q.data(), int64_t{len} * heads * d, 30);
  const int32_t qs_host[2] = {0, len};
  DeviceBuffer qs = Alloc(8);
  CHECK_CUDA(cudaMemcpy(qs.data(), qs_host, 8, cudaMemcpyHostToDevice));
  auto run = [&](int rep) {
    PrefillAttentionArgs a;
    a.q = q.as<bf16>();
    a.out = out.as<bf16>();
    a.query_start = qs.as<int32_t>();
    a.num_seqs = 1;
    a.num_heads = heads;
    a.max_query_len = len;
    a.scale = 1.0f / std::sqrt(static_cast<float>(d));
    a.kv = View(pool, rep % pool.layers, kv_heads, d, block);
    CHECK_OK(PrefillAttention(a, nullptr));
  };
  const double t = MedianMs(run, 3, quick ? 3 : 10, kPerPair);
  // Causal: query i attends i + 1 positions; 4 flops per (query, position, dim) for QK and PV.
  const double flops = 4.0 * heads * d * (double{len} * (len + 1) / 2);
  const double tflops = flops / (t * 1e-3) / 1e12;
  std::printf(
      "prefill attention, one 2048-token prompt (32/8 heads, d 128): %.1f us, %.1f TFLOP/s "
      "(%.1f%% of the GEMM ceiling; SIMT kernel, no tensor cores yet)\n",
      t * 1e3, tflops, 100 * tflops / c.gemm_tflops);
  csv.Row(absl::StrFormat("prefill_attention,1,%d,%.2f,%.2f", len, t * 1e3, tflops));
}

void BenchSampler(const Ceilings& c, Csv& csv, bool quick) {
  const int32_t rows = 256, vocab = 151936;
  const size_t n = size_t{rows} * vocab;
  const int copies = 3;  // 3 x 155 MB: more than L2
  DeviceBuffer logits = Alloc(n * 4 * copies);
  {
    std::vector<float> h(n);
    std::mt19937 rng(40);
    std::normal_distribution<float> dist(0.0f, 3.0f);
    for (float& x : h) x = dist(rng);
    for (int i = 0; i < copies; ++i) {
      CHECK_CUDA(cudaMemcpy(logits.as<float>() + i * n, h.data(), n * 4, cudaMemcpyHostToDevice));
    }
  }
  auto upload = [](const auto& v) {
    DeviceBuffer b = Alloc(v.size() * sizeof(v[0]));
    CHECK_CUDA(cudaMemcpy(b.data(), v.data(), v.size() * sizeof(v[0]), cudaMemcpyHostToDevice));
    return b;
  };
  std::vector<uint64_t> seeds(rows), steps(rows, 0);
  std::iota(seeds.begin(), seeds.end(), 1);
  DeviceBuffer t = upload(std::vector<float>(rows, 1.0f)),
               k = upload(std::vector<int32_t>(rows, 50)),
               p = upload(std::vector<float>(rows, 0.9f)), sd = upload(seeds), st = upload(steps),
               ids = Alloc(rows * 4);
  auto run = [&](int rep) {
    SampleArgs a;
    a.logits = logits.as<float>() + (rep % copies) * n;
    a.rows = rows;
    a.vocab = vocab;
    a.params.temperature = t.as<float>();
    a.params.top_k = k.as<int32_t>();
    a.params.top_p = p.as<float>();
    a.params.seed = sd.as<uint64_t>();
    a.params.step = st.as<uint64_t>();
    a.ids = ids.as<int32_t>();
    CHECK_OK(Sample(a, nullptr));
  };
  const double ms = MedianMs(run, 2, quick ? 3 : 10, kPerPair);
  const double gbs = n * 4.0 / (ms * 1e-3) / 1e9;
  std::printf(
      "\nsampler, 256 x 151936, top_k 50, top_p 0.9: %.1f us per batch, %.0f GB/s of logits "
      "(read once; %.1f%% of copy)\n",
      ms * 1e3, gbs, 100 * gbs / c.copy_gbs);
  csv.Row(absl::StrFormat("sampler,%d,%d,%.2f,%.1f", rows, vocab, ms * 1e3, gbs));
}

// The whole MlaDecode call (q absorption, attention over the latent, merge, W_UV) timed, and the
// latent cache bytes it must read divided by that time.
void BenchMlaDecode(const Ceilings& c, Csv& csv, bool quick) {
  const MlaShape shape{128, 128, 64, 128, 512};
  const int batch = 64, ctx = 4096, block = 64, width = 512 + 64;
  int dev = 0, sms = 0;
  CHECK_CUDA(cudaGetDevice(&dev));
  CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int pages_per_seq = ctx / block;
  const int64_t cache_elems = int64_t{batch} * ctx * width;
  DeviceBuffer cache = Alloc(cache_elems * 2);
  FillRandomBf16(cache.data(), cache_elems, 40);
  std::vector<int32_t> indptr(batch + 1), ids(int64_t{batch} * pages_per_seq), lens(batch, ctx);
  for (int s = 0; s <= batch; ++s) indptr[s] = s * pages_per_seq;
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(41));
  DeviceBuffer d_indptr = Alloc(indptr.size() * 4), d_ids = Alloc(ids.size() * 4),
               d_lens = Alloc(lens.size() * 4);
  CHECK_CUDA(cudaMemcpy(d_indptr.data(), indptr.data(), indptr.size() * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_ids.data(), ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_lens.data(), lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));
  const int64_t q_elems = int64_t{batch} * shape.num_heads * (shape.nope_dim + shape.rope_dim);
  const int64_t kv_b_elems =
      int64_t{shape.num_heads} * (shape.nope_dim + shape.v_dim) * shape.kv_lora_rank;
  DeviceBuffer q = Alloc(q_elems * 2), kv_b = Alloc(kv_b_elems * 2),
               out = Alloc(int64_t{batch} * shape.num_heads * shape.v_dim * 2);
  FillRandomBf16(q.data(), q_elems, 42);
  FillRandomBf16(kv_b.data(), kv_b_elems, 43);
  const MlaPlan plan = PlanMla(shape, batch, ctx, sms);
  DeviceBuffer ws = Alloc(plan.workspace_bytes);
  MlaAttentionArgs a;
  a.q = q.as<bf16>();
  a.kv_b = kv_b.as<bf16>();
  a.out = out.as<bf16>();
  a.shape = shape;
  a.scale = 1.0f / std::sqrt(192.0f);
  a.num_seqs = a.num_tokens = batch;
  a.cache = cache.as<bf16>();
  a.block_size = block;
  a.kv_indptr = d_indptr.as<int32_t>();
  a.kv_indices = d_ids.as<int32_t>();
  a.seq_lens = d_lens.as<int32_t>();
  a.plan = plan;
  a.workspace = ws.data();
  // One layer's cache (302 MB) is far beyond L2, so no rotation is needed.
  const double t =
      MedianMs([&](int) { CHECK_OK(MlaDecode(a, nullptr)); }, 3, quick ? 3 : 10, kPerPair);
  const double gbs = cache_elems * 2.0 / (t * 1e-3) / 1e9;
  std::printf(
      "\nMLA decode (V3 dims, 128 heads, batch 64, context 4096, 64-token pages, %d x %d "
      "partitions): %.1f us, latent cache %.0f GB/s (%.1f%% of copy; FlashMLA ~3000 GB/s on "
      "H800; fp32 SIMT kernel, no tensor cores yet)\n",
      plan.num_partitions, plan.partition_tokens, t * 1e3, gbs, 100 * gbs / c.copy_gbs);
  csv.Row(absl::StrFormat("mla_decode,%d,%d,%.2f,%.1f", batch, ctx, t * 1e3, gbs));
}

// MoeForward on a Qwen3-30B-A3B MoE layer; 16 sets of random router logits rotate so that each
// call touches other experts (all 128 experts' weights, 1.2 GB, are far beyond L2). Bytes are the
// weights of the distinct experts each set routes to (counted from MoeRoute on the same logits),
// plus x and out.
void BenchMoe(const Ceilings& c, Csv& csv, bool quick) {
  const int64_t hidden = 2048, inter = 768;
  MoeRouting r;
  r.num_experts = 128;
  r.top_k = 8;
  r.renormalize = true;
  const int64_t expert_elems = 3 * inter * hidden;
  DeviceBuffer gate_up = Alloc(r.num_experts * 2 * inter * hidden * 2);
  DeviceBuffer down = Alloc(r.num_experts * hidden * inter * 2);
  FillRandomBf16(gate_up.data(), r.num_experts * 2 * inter * hidden, 40);
  FillRandomBf16(down.data(), r.num_experts * hidden * inter, 41);
  constexpr int kSets = 16;
  std::printf("moe layer (Qwen3-30B-A3B: hidden 2048, inter 768, 128 experts, top 8)\n");
  std::printf("%-6s %10s %9s %9s %8s\n", "tokens", "us", "experts", "GB/s", "%copy");
  for (int tokens : {1, 64}) {
    const size_t logit_count = size_t{kSets} * tokens * r.num_experts;
    std::vector<float> logits(logit_count);
    std::mt19937 rng(42 + tokens);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (float& l : logits) l = dist(rng);
    DeviceBuffer dlogits = Alloc(logit_count * 4), x = Alloc(tokens * hidden * 2),
                 out = Alloc(tokens * hidden * 2);
    DeviceBuffer ids = Alloc(size_t{kSets} * tokens * r.top_k * 4),
                 w = Alloc(size_t{kSets} * tokens * r.top_k * 4);
    CHECK_CUDA(cudaMemcpy(dlogits.data(), logits.data(), logit_count * 4, cudaMemcpyHostToDevice));
    FillRandomBf16(x.data(), tokens * hidden, 43);
    CHECK_OK(MoeRoute(dlogits.as<float>(), kSets * tokens, r, nullptr, ids.as<int32_t>(),
                      w.as<float>(), nullptr));
    std::vector<int32_t> host_ids(size_t{kSets} * tokens * r.top_k);
    CHECK_CUDA(
        cudaMemcpy(host_ids.data(), ids.data(), host_ids.size() * 4, cudaMemcpyDeviceToHost));
    double experts = 0;  // distinct experts per set, averaged
    for (int s = 0; s < kSets; ++s) {
      std::vector<bool> used(r.num_experts, false);
      for (int i = 0; i < tokens * r.top_k; ++i) {
        used[host_ids[static_cast<size_t>(s) * tokens * r.top_k + i]] = true;
      }
      experts += std::count(used.begin(), used.end(), true) / double{kSets};
    }
    const size_t ws_bytes = MoeWorkspaceBytes(tokens, r.top_k, r.num_experts, hidden, inter);
    DeviceBuffer ws = Alloc(std::max<size_t>(ws_bytes, 256));
    auto run = [&](int rep) {
      MoeForwardArgs a;
      a.x = x.as<bf16>();
      a.router_logits =
          dlogits.as<float>() + static_cast<size_t>(rep % kSets) * tokens * r.num_experts;
      a.num_tokens = tokens;
      a.hidden = hidden;
      a.inter = inter;
      a.routing = r;
      a.gate = {nullptr, gate_up.as<bf16>(), 2 * inter * hidden};
      a.up = {nullptr, gate_up.as<bf16>() + inter * hidden, 2 * inter * hidden};
      a.down = {nullptr, down.as<bf16>(), hidden * inter};
      a.out = out.as<bf16>();
      a.workspace = ws.data();
      a.workspace_bytes = ws_bytes;
      CHECK_OK(MoeForward(a, nullptr));
    };
    const double t = MedianMs(run, 5, quick ? 5 : 20, kPerPair);
    const double bytes = experts * expert_elems * 2 + 2.0 * tokens * hidden * 2;
    const double gbs = bytes / (t * 1e-3) / 1e9;
    std::printf("%-6d %10.1f %9.1f %9.0f %7.1f%%\n", tokens, t * 1e3, experts, gbs,
                100 * gbs / c.copy_gbs);
    csv.Row(absl::StrFormat("moe,%d,%.2f,%.1f,%.1f", tokens, t * 1e3, experts, gbs));
  }
  std::printf("\n");
}

int Main(int argc, char** argv) {
  std::string csv_path;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--csv") == 0 && i + 1 < argc) {
      csv_path = argv[++i];
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: gpu_bench [--csv PATH] [--quick]\n");
      return 2;
    }
  }
  int dev = 0;
  cudaDeviceProp prop;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
    std::fprintf(stderr, "gpu_bench: no CUDA device\n");
    return 1;
  }
  std::printf("device: %s, %d SMs, %.0f MB L2, %.1f GiB\n\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize / 1e6, prop.totalGlobalMem / double(1 << 30));
  Csv csv;
  if (!csv_path.empty()) csv.f = std::fopen(csv_path.c_str(), "w");
  auto gemm = CublasLtGemm::Create();
  CHECK_OK(gemm.status());
  const Ceilings c = MeasureCeilings(**gemm, csv, quick);
  BenchGemm(**gemm, c, csv, quick);
  BenchDecodeAttention(c, csv, quick);
  BenchPrefillAttention(c, csv, quick);
  BenchSampler(c, csv, quick);
  BenchMlaDecode(c, csv, quick);
  BenchMoe(c, csv, quick);
  if (csv.f) std::fclose(csv.f);
  return 0;
}

}  // namespace
}  // namespace kvasir::cuda

int main(int argc, char** argv) { return kvasir::cuda::Main(argc, argv); }
