// Whole model steps on the CUDA backend (engine/cuda_ops.cc) with dummy bf16 weights made on the
// device, each next to its ceiling measured in the same run (device/METHOD.md):
//   ceilings  device-to-device copy GB/s (bytes read + written), cuBLASLt bf16 GEMM 8192^3 TFLOP/s
//   decode    Llama-3-8B (bench/models/llama3_8b) decode steps at batch 1, 8, 64, 256 with 1024
//             tokens of context each: time per step (metadata upload, CUDA graph replay, logits
//             to the host) vs the HBM roofline, the bytes a step must read (every weight but the
//             embedding table, plus every sequence's K/V) over the measured copy bandwidth
//   prefill   Llama-3-8B, one 2048-token prompt: tokens/s and MFU, the step's FLOPs (2 x the
//             non-embedding parameters x tokens + causal attention) over the measured GEMM peak
//   moe       Qwen3-30B-A3B (bench/models/qwen3_30b_a3b) decode steps at batch 1 and 64 vs the
//             roofline of the weights they touch (attention, router, lm_head, and the experts the
//             batch's tokens can reach: E (1 - (1 - k/E)^B) of E per layer in expectation)
// Each figure is the median over timed steps after warm-up steps (which record the graphs); a
// step's time is wall clock around ModelRunner::ExecuteAndSample with greedy rows, what the engine
// runs for such a step (metadata upload, the forward or its graph, sampling on the device, the
// token ids back to the host), which ends synchronised.
// Usage: model_step_bench [--quick] [--csv PATH]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/model_loader.h"
#include "engine/model_runner.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops.h"

namespace kvasir {
namespace {

#define CHECK_OK(expr)                                                                            \
  do {                                                                                            \
    const absl::Status s_ = (expr);                                                               \
    if (!s_.ok()) {                                                                               \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, std::string(s_.message()).c_str()); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

struct Csv {
  std::FILE* f = nullptr;
  void Row(const std::string& s) {
    if (f) std::fprintf(f, "%s\n", s.c_str());
  }
};

struct Ceilings {
  double copy_gbs = 0;
  double gemm_tflops = 0;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median milliseconds of f() over `reps` runs timed with events, after 3 warm-ups.
template <typename F>
double EventMs(F f, int reps) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < 3; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(a);
    f();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return Median(t);
}

Ceilings MeasureCeilings(Csv& csv, bool quick) {
  Ceilings c;
  const size_t bytes = size_t{2} << 30;
  auto src = cuda::DeviceBuffer::Allocate(bytes);
  auto dst = cuda::DeviceBuffer::Allocate(bytes);
  CHECK_OK(src.status());
  CHECK_OK(dst.status());
  cudaMemset(src->data(), 1, bytes);
  const double copy_ms =
      EventMs([&] { cudaMemcpyAsync(dst->data(), src->data(), bytes, cudaMemcpyDeviceToDevice); },
              quick ? 5 : 20);
  c.copy_gbs = 2.0 * bytes / (copy_ms * 1e-3) / 1e9;

  const int64_t n = 8192;
  auto gemm = cuda::CublasLtGemm::Create();
  CHECK_OK(gemm.status());
  auto x = cuda::DeviceBuffer::Allocate(n * n * 2), w = cuda::DeviceBuffer::Allocate(n * n * 2),
       y = cuda::DeviceBuffer::Allocate(n * n * 2);
  CHECK_OK(x.status());
  CHECK_OK(w.status());
  CHECK_OK(y.status());
  // Random (never zero) operands: the bench's own dummy-weight kernel fills them.
  CHECK_OK(cuda::FillDummy(x->as<cuda::bf16>(), n * n, 1, false, 1.0, nullptr));
  CHECK_OK(cuda::FillDummy(w->as<cuda::bf16>(), n * n, 2, false, 1.0, nullptr));
  cuda::GemmArgs a;
  a.x = x->as<cuda::bf16>();
  a.w = w->as<cuda::bf16>();
  a.y = y->data();
  a.m = a.n = a.k = n;
  const double gemm_ms = EventMs([&] { CHECK_OK((*gemm)->Run(a, nullptr)); }, quick ? 5 : 20);
  c.gemm_tflops = 2.0 * n * n * n / (gemm_ms * 1e-3) / 1e12;
  std::printf("ceilings: copy %.0f GB/s (read + write), bf16 GEMM 8192^3 %.0f TFLOP/s\n\n",
              c.copy_gbs, c.gemm_tflops);
  csv.Row(absl::StrFormat("ceiling,copy_gbs,%.1f", c.copy_gbs));
  csv.Row(absl::StrFormat("ceiling,gemm_tflops,%.1f", c.gemm_tflops));
  return c;
}

// A step of `seqs` sequences, each computing `tokens` new tokens at the end of a context of
// `context` tokens (pages of block_size, sequence s owning its own run of blocks); logits for
// each sequence's last token.
StepBatch MakeStep(int32_t seqs, int32_t tokens, int32_t context, int32_t block_size) {
  StepBatch b;
  b.query_start.push_back(0);
  b.block_table_indptr.push_back(0);
  const int32_t pages = (context + block_size - 1) / block_size;
  for (int32_t s = 0; s < seqs; ++s) {
    const int32_t first_block = s * pages;
    b.seqs.push_back({.uid = static_cast<uint64_t>(s) + 1,
                      .start_position = context - tokens,
                      .num_new_tokens = tokens,
                      .samples = true});
    for (int32_t t = 0; t < tokens; ++t) {
      const int32_t pos = context - tokens + t;
      b.token_ids.push_back((s * 7919 + t * 104729) % 32000);
      b.positions.push_back(pos);
      b.slot_mapping.push_back(int64_t{first_block + pos / block_size} * block_size +
                               pos % block_size);
    }
    b.logits_indices.push_back(b.num_tokens() - 1);
    b.query_start.push_back(b.num_tokens());
    b.seq_lens.push_back(context);
    for (int32_t p = 0; p < pages; ++p) b.block_table.push_back(first_block + p);
    b.block_table_indptr.push_back(static_cast<int32_t>(b.block_table.size()));
  }
  return b;
}

// Median wall milliseconds of a greedy step (ExecuteAndSample) after warm-up (the first decode
// steps of a bucket run eagerly, the second records its graph).
double StepMs(ModelRunner& runner, const StepBatch& batch, int reps) {
  SampleRowsRequest greedy;
  for (size_t r = 0; r < batch.logits_indices.size(); ++r) {
    greedy.temperature.push_back(0.0f);
    greedy.top_k.push_back(0);
    greedy.top_p.push_back(1.0f);
    greedy.min_p.push_back(0.0f);
    greedy.seed.push_back(r);
    greedy.step.push_back(0);
  }
  for (int i = 0; i < 3; ++i) runner.ExecuteAndSample(batch, greedy);
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    runner.ExecuteAndSample(batch, greedy);
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                    .count());
  }
  return Median(t);
}

struct Sizes {
  double attn_params = 0;    // per layer: q, k, v, o (+ q/k norms)
  double mlp_params = 0;     // per layer: dense gate, up, down
  double expert_params = 0;  // one expert's gate, up, down
  double embed = 0, lm_head = 0, kv_bytes_per_token = 0;
};

Sizes SizesOf(const ModelConfig& c) {
  Sizes s;
  const double h = c.hidden_size, hd = c.head_dim;
  s.attn_params = h * c.num_heads * hd * 2 + h * c.num_kv_heads * hd * 2 + 2 * h;
  s.mlp_params = 3 * h * c.intermediate_size;
  s.expert_params = 3 * h * c.moe.expert_intermediate_size;
  s.embed = h * c.vocab_size;
  s.lm_head = h * c.vocab_size;
  s.kv_bytes_per_token = c.num_layers * 2.0 * c.num_kv_heads * hd * 2;
  return s;
}

std::unique_ptr<ModelRunner> Load(const std::string& config_path, const LoadedModel& model,
                                  int32_t max_seqs, int32_t max_tokens, int32_t max_len) {
  RunnerOptions o;
  o.device = Device::kCuda;
  o.max_num_seqs = max_seqs;
  o.max_batched_tokens = max_tokens;
  o.max_model_len = max_len;
  o.block_size = 16;
  o.gpu_memory_utilization = 0.9;
  const auto start = std::chrono::steady_clock::now();
  auto runner = ModelRunner::Create(model.config, *model.weights, o);
  CHECK_OK(runner.status());
  std::printf("%s: loaded in %.1f s on %s, KV pool %d blocks of 16\n", config_path.c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
              (*runner)->Describe().c_str(), (*runner)->kv_spec().num_blocks);
  return std::move(*runner);
}

void BenchLlama(const Ceilings& c, Csv& csv, bool quick) {
  const std::string path = std::string(KVASIR_BENCH_MODELS_DIR) + "/llama3_8b/config.json";
  auto model = LoadModel(path, {.dummy_weights = true, .dummy_on_device = true});
  CHECK_OK(model.status());
  const Sizes s = SizesOf(model->config);
  const double layers = model->config.num_layers;
  auto runner = Load(path, *model, 256, 2048, 4096);
  const int32_t context = 1024;
  std::printf("\nLlama-3-8B decode, %d tokens of context per sequence\n", context);
  std::printf("%6s %10s %12s %12s %10s\n", "batch", "ms/step", "tokens/s", "roofline ms",
              "% roofl.");
  for (int32_t batch : {1, 8, 64, 256}) {
    const StepBatch step = MakeStep(batch, 1, context, 16);
    const double ms = StepMs(*runner, step, quick ? 5 : 30);
    const double bytes = 2.0 * (layers * (s.attn_params + s.mlp_params) + s.lm_head) +
                         double{batch} * context * s.kv_bytes_per_token;
    const double roof_ms = bytes / (c.copy_gbs * 1e9) * 1e3;
    std::printf("%6d %10.3f %12.0f %12.3f %9.1f%%\n", batch, ms, batch / (ms * 1e-3), roof_ms,
                100 * roof_ms / ms);
    csv.Row(absl::StrFormat("llama3_8b_decode,%d,%d,%.4f,%.4f", batch, context, ms, roof_ms));
  }
  const int32_t prompt = 2048;
  const StepBatch step = MakeStep(1, prompt, prompt, 16);
  const double ms = StepMs(*runner, step, quick ? 3 : 10);
  const double hd = model->config.head_dim, heads = model->config.num_heads;
  const double flops = 2.0 * (layers * (s.attn_params + s.mlp_params)) * prompt +
                       2.0 * s.lm_head +  // one logits row
                       layers * 4.0 * heads * hd * (double{prompt} * (prompt + 1) / 2);
  const double tflops = flops / (ms * 1e-3) / 1e12;
  std::printf(
      "\nLlama-3-8B prefill, one %d-token prompt: %.2f ms, %.0f tokens/s, %.0f TFLOP/s = "
      "MFU %.1f%% of the measured GEMM peak\n",
      prompt, ms, prompt / (ms * 1e-3), tflops, 100 * tflops / c.gemm_tflops);
  csv.Row(absl::StrFormat("llama3_8b_prefill,1,%d,%.4f,%.1f", prompt, ms, tflops));
}

void BenchQwenMoe(const Ceilings& c, Csv& csv, bool quick) {
  const std::string path = std::string(KVASIR_BENCH_MODELS_DIR) + "/qwen3_30b_a3b/config.json";
  auto model = LoadModel(path, {.dummy_weights = true, .dummy_on_device = true});
  CHECK_OK(model.status());
  const Sizes s = SizesOf(model->config);
  const double layers = model->config.num_layers;
  const double e = model->config.moe.routing.num_experts, k = model->config.moe.routing.top_k;
  const double router = model->config.hidden_size * e;
  auto runner = Load(path, *model, 64, 2048, 4096);
  const int32_t context = 1024;
  std::printf("\nQwen3-30B-A3B decode, %d tokens of context per sequence\n", context);
  std::printf("%6s %10s %12s %12s %10s\n", "batch", "ms/step", "tokens/s", "roofline ms",
              "% roofl.");
  for (int32_t batch : {1, 64}) {
    const StepBatch step = MakeStep(batch, 1, context, 16);
    const double ms = StepMs(*runner, step, quick ? 5 : 30);
    const double touched = e * (1.0 - std::pow(1.0 - k / e, batch));
    const double bytes =
        2.0 * (layers * (s.attn_params + router + touched * s.expert_params) + s.lm_head) +
        double{batch} * context * s.kv_bytes_per_token;
    const double roof_ms = bytes / (c.copy_gbs * 1e9) * 1e3;
    std::printf("%6d %10.3f %12.0f %12.3f %9.1f%%   (%.1f experts of %.0f per layer)\n", batch, ms,
                batch / (ms * 1e-3), roof_ms, 100 * roof_ms / ms, touched, e);
    csv.Row(absl::StrFormat("qwen3_30b_a3b_decode,%d,%d,%.4f,%.4f", batch, context, ms, roof_ms));
  }
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
      std::fprintf(stderr, "usage: model_step_bench [--quick] [--csv PATH]\n");
      return 2;
    }
  }
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    std::fprintf(stderr, "model_step_bench: no CUDA device\n");
    return 1;
  }
  std::printf("device: %s, %d SMs, %.1f GiB\n", prop.name, prop.multiProcessorCount,
              prop.totalGlobalMem / double(1 << 30));
  Csv csv;
  if (!csv_path.empty()) csv.f = std::fopen(csv_path.c_str(), "w");
  const Ceilings c = MeasureCeilings(csv, quick);
  BenchLlama(c, csv, quick);
  BenchQwenMoe(c, csv, quick);
  if (csv.f) std::fclose(csv.f);
  return 0;
}

}  // namespace
}  // namespace kvasir

int main(int argc, char** argv) { return kvasir::Main(argc, argv); }
