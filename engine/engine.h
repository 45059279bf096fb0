// Engine: loads a model and runs the engine loop on a thread of its own.
//
// Threads: Submit/Abort are called from any thread (gRPC reactors, the CLI); they only validate and
// enqueue, under one lock, and never wait for the loop. The loop thread owns the scheduler, the KV
// cache and the model runner; it calls each request's RequestSink with its outputs.
#ifndef KVASIR_ENGINE_ENGINE_H_
#define KVASIR_ENGINE_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/events.h"
#include "engine/model_runner.h"
#include "engine/request.h"

namespace kvasir {

class ChatTemplate;
class Tokenizer;

struct EngineOptions {
  std::string model_path;  // GGUF file, or a directory (config.json + *.safetensors)
  // Made-up weights of the model's config (benchmarks of everything but the model's numbers);
  // model_path then needs only the config: see LoadOptions in engine/model_loader.h.
  bool dummy_weights = false;
  Device device = Device::kCpu;  // where the model runs (engine/model_runner.h)
  int cuda_device = 0;
  double gpu_memory_utilization = 0.9;  // CUDA: share of the device memory to fill
  bool cuda_graphs = true;              // CUDA: record and replay decode steps
  int num_threads = 0;                  // CPU compute threads; 0 = all cores
  int32_t max_num_seqs = 64;            // running sequences per step
  // Tokens computed per step (prefill chunks + decodes). It bounds how long decodes wait while
  // prompts are prefilled: 512 tokens is about a second on 2 CPU cores.
  int32_t max_batched_tokens = 512;
  int32_t block_size = 16;            // tokens per KV block
  int64_t kv_cache_bytes = 0;         // KV pool size; 0 = enough for max_num_seqs full contexts,
                                      // capped at 2 GiB
  int64_t max_model_len = 0;          // context limit; 0 = the model's, capped at 8192
  bool enable_prefix_caching = true;  // reuse the KV blocks of identical prompt prefixes
  // Admission control: Submit refuses (ResourceExhausted) while this many requests wait to be
  // scheduled. 0 = no limit.
  int32_t max_waiting = 1024;
  int32_t long_prefill_chunk = 0;         // prefill chunk cap while others wait; 0 = budget / 4
  int32_t max_long_partial_prefills = 1;  // long prompts prefilling at once
  // Tokens per streamed output of a choice: 1 sends every token as it is sampled; N > 1 sends
  // the first token at once, then every N tokens (and the rest with the last), which divides
  // the per-message cost of the front end by N at the price of burstier streams.
  int32_t stream_interval = 1;
  // Receives request and step events on the engine thread (metrics); may be null.
  std::shared_ptr<EngineObserver> observer;
};

struct ModelInfo {
  std::string name;          // file or directory name
  std::string architecture;  // e.g. LlamaForCausalLM
  std::string format;        // "gguf" or "safetensors"
  std::string weight_dtype;  // e.g. Q4_1
  int64_t vocab_size = 0;
  int64_t max_model_len = 0;  // the effective context limit (prompt + generated tokens)
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  std::vector<int32_t> stop_ids;  // tokens that end a request unless ignore_eos
  std::string kernels;            // the CPU ISA the kernels dispatched to
  int32_t kv_block_size = 0;      // tokens per KV block
  int32_t kv_num_blocks = 0;      // blocks in the pool
  int64_t kv_bytes_per_token = 0;
  bool prefix_caching = false;
  int32_t max_num_seqs = 0;
  int32_t max_batched_tokens = 0;
};

// A snapshot of the engine's load, for routers and health checks.
struct EngineLoads {
  int32_t num_running = 0;
  int32_t num_waiting = 0;  // queued in the scheduler or not yet picked up by the loop
  double kv_usage = 0.0;    // fraction of KV blocks held by sequences
  int64_t prefix_query_tokens = 0;
  int64_t prefix_hit_tokens = 0;
  int64_t num_preemptions = 0;
  int64_t num_steps = 0;
  bool loop_alive = false;  // the loop thread is running (not stopped, not crashed)
  // Seconds since the loop last finished a step, while it has work; 0 when idle.
  double stalled_seconds = 0.0;
};

class Engine {
 public:
  // Loads the model and starts the loop thread. Errors name the file and what is wrong.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options);
  // Stops the loop; every request still live gets a final output (kAbort).
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and enqueues. On OK the sink receives one or more outputs, the last one final.
  // InvalidArgument naming the field: empty prompt, token id outside the vocabulary, max_tokens <
  // 1, prompt + max_tokens longer than max_model_len or than the whole KV pool, bad sampling
  // values, duplicate id. ResourceExhausted when max_waiting requests are already waiting.
  // FailedPrecondition after Shutdown.
  absl::Status Submit(EngineRequest request, std::shared_ptr<RequestSink> sink);
  // Ends the request with kAbort within one step. Unknown or finished ids are ignored.
  void Abort(const std::string& request_id);
  // Stops accepting, aborts everything live, joins the loop. Idempotent.
  void Shutdown();

  // Thread-safe; cheap (one lock).
  EngineLoads GetLoads() const;

  const ModelInfo& model_info() const;
  // Null when the model has no tokenizer files (a bare safetensors directory).
  const Tokenizer* tokenizer() const;
  // The model's chat template, parsed once at load. FailedPrecondition when the model has none
  // (or no tokenizer); InvalidArgument naming the line when it does not parse.
  absl::StatusOr<const ChatTemplate*> chat_template() const;

 private:
  class Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvasir

#endif  // KVASIR_ENGINE_ENGINE_H_
