#include "server/engine_flags.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace kvasir::server {
namespace {

const FlagSpec kEngineFlags[] = {
    {"load-format", true, "FORMAT",
     "auto (read the weights) or dummy (make them up from the model's config: for benchmarks "
     "of everything but the model's numbers; --model may then be a config.json) (default auto)"},
    {"device", true, "DEVICE",
     "cpu, or cuda / cuda:N (the CUDA backend on device N; bf16 weights and KV cache) "
     "(default cpu)"},
    {"gpu-memory-utilization", true, "F",
     "cuda: share of the device memory to fill; the KV pool takes what weights and activations "
     "leave (default 0.9)"},
    {"no-cuda-graphs", false, "", "cuda: run decode steps eagerly, without CUDA graphs"},
    {"threads", true, "N", "CPU compute threads (default: all cores)"},
    {"max-num-seqs", true, "N", "running sequences per step (default 64)"},
    {"max-batched-tokens", true, "N",
     "tokens computed per step, prefill chunks + decodes; >= max-num-seqs (default 512)"},
    {"max-model-len", true, "N", "context limit (default: the model's, capped at 8192)"},
    {"kv-cache-bytes", true, "BYTES",
     "KV cache pool, e.g. 512M or 2G (default: max-num-seqs full contexts, at most 2G)"},
    {"block-size", true, "N", "tokens per KV block (default 16)"},
    {"no-prefix-caching", false, "", "do not reuse KV blocks of identical prompt prefixes"},
    {"long-prefill-chunk", true, "N",
     "prefill tokens per step of one prompt while others wait (default: max-batched-tokens/4)"},
    {"max-long-partial-prefills", true, "N",
     "prompts longer than long-prefill-chunk prefilling at once (default 1)"},
    {"stream-interval", true, "N",
     "tokens per streamed message of a request: 1 = every token at once; N > 1 sends the first "
     "at once, then every N (less front-end work per token, burstier streams) (default 1)"},
    {"max-waiting", true, "N",
     "requests waiting to be scheduled before new ones get RESOURCE_EXHAUSTED; 0 = no limit "
     "(default 1024)"},
};

}  // namespace

std::vector<FlagSpec> WithEngineFlags(absl::Span<const FlagSpec> command_flags) {
  std::vector<FlagSpec> all(command_flags.begin(), command_flags.end());
  all.insert(all.end(), std::begin(kEngineFlags), std::end(kEngineFlags));
  return all;
}

absl::Status ReadEngineFlags(const ParsedArgs& args, EngineOptions* o) {
  constexpr int64_t kMax32 = INT32_MAX;
  auto threads = args.GetInt("threads", o->num_threads, 0, 4096);
  auto max_num_seqs = args.GetInt("max-num-seqs", o->max_num_seqs, 1, 1 << 20);
  auto max_batched = args.GetInt("max-batched-tokens", o->max_batched_tokens, 1, kMax32);
  auto max_model_len = args.GetInt("max-model-len", o->max_model_len, 0, int64_t{1} << 40);
  auto kv_bytes = args.GetBytes("kv-cache-bytes", o->kv_cache_bytes);
  auto block_size = args.GetInt("block-size", o->block_size, 1, 1 << 16);
  auto chunk = args.GetInt("long-prefill-chunk", o->long_prefill_chunk, 0, kMax32);
  auto partial = args.GetInt("max-long-partial-prefills", o->max_long_partial_prefills, 1, kMax32);
  auto max_waiting = args.GetInt("max-waiting", o->max_waiting, 0, kMax32);
  auto stream_interval = args.GetInt("stream-interval", o->stream_interval, 1, 1 << 20);
  for (const absl::Status& s :
       {threads.status(), max_num_seqs.status(), max_batched.status(), max_model_len.status(),
        kv_bytes.status(), block_size.status(), chunk.status(), partial.status(),
        max_waiting.status(), stream_interval.status()}) {
    if (!s.ok()) return s;
  }
  o->num_threads = static_cast<int>(*threads);
  o->max_num_seqs = static_cast<int32_t>(*max_num_seqs);
  o->max_batched_tokens = static_cast<int32_t>(*max_batched);
  o->max_model_len = *max_model_len;
  o->kv_cache_bytes = *kv_bytes;
  o->block_size = static_cast<int32_t>(*block_size);
  o->long_prefill_chunk = static_cast<int32_t>(*chunk);
  o->max_long_partial_prefills = static_cast<int32_t>(*partial);
  o->max_waiting = static_cast<int32_t>(*max_waiting);
  o->stream_interval = static_cast<int32_t>(*stream_interval);
  if (args.Has("no-prefix-caching")) o->enable_prefix_caching = false;
  const std::string load_format = args.GetString("load-format", "auto");
  if (load_format != "auto" && load_format != "dummy") {
    return absl::InvalidArgumentError(
        absl::StrCat("--load-format must be auto or dummy, got '", load_format, "'"));
  }
  o->dummy_weights = load_format == "dummy";
  const std::string device = args.GetString("device", "cpu");
  if (device == "cpu") {
    o->device = Device::kCpu;
  } else if (device == "cuda" || absl::StartsWith(device, "cuda:")) {
    o->device = Device::kCuda;
    if (device != "cuda" &&
        (!absl::SimpleAtoi(device.substr(5), &o->cuda_device) || o->cuda_device < 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--device cuda:N needs a device number, got '", device, "'"));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--device must be cpu, cuda or cuda:N, got '", device, "'"));
  }
  auto utilization = args.GetDouble("gpu-memory-utilization", o->gpu_memory_utilization);
  if (!utilization.ok()) return utilization.status();
  if (!(*utilization > 0.0 && *utilization <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--gpu-memory-utilization must be in (0, 1], got ", *utilization));
  }
  o->gpu_memory_utilization = *utilization;
  if (args.Has("no-cuda-graphs")) o->cuda_graphs = false;
  // Consistency between flags (e.g. max_batched_tokens >= max_num_seqs) is Engine::Create's.
  return absl::OkStatus();
}

}  // namespace kvasir::server
