// Single-stream speed of the whole engine on a model: prefill tokens/s for a prompt of N tokens
// and decode tokens/s for M greedy tokens after it, through Engine::Submit like a client.
//   single_stream_bench --model PATH [--prompt-tokens 128] [--decode-tokens 128] [--threads 2]
//                       [--repeats 3]
// Prints one JSON object (medians over the repeats). Not a test: it measures speed.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "bench/timing_sink.h"
#include "engine/engine.h"

namespace {

using kvasir::bench::Clock;
using kvasir::bench::Median;
using kvasir::bench::TimingSink;

}  // namespace

int main(int argc, char** argv) {
  std::string model;
  int prompt_tokens = 128, decode_tokens = 128, threads = 2, repeats = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* v = argv[i + 1];
    if (flag == "--model")
      model = v;
    else if (flag == "--prompt-tokens")
      prompt_tokens = std::atoi(v);
    else if (flag == "--decode-tokens")
      decode_tokens = std::atoi(v);
    else if (flag == "--threads")
      threads = std::atoi(v);
    else if (flag == "--repeats")
      repeats = std::atoi(v);
    else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (model.empty()) {
    std::fprintf(stderr, "usage: single_stream_bench --model PATH [...]\n");
    return 2;
  }
  kvasir::EngineOptions o;
  o.model_path = model;
  o.num_threads = threads;
  o.max_num_seqs = 1;
  o.max_batched_tokens = std::max(prompt_tokens, 512);
  auto engine = kvasir::Engine::Create(o);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  std::vector<double> prefill, decode;
  for (int r = 0; r <= repeats; ++r) {  // run 0 is a warm-up
    kvasir::EngineRequest req;
    req.id = "bench-" + std::to_string(r);
    for (int t = 0; t < prompt_tokens; ++t) req.prompt_ids.push_back(1000 + (t * 7919 + r) % 20000);
    req.max_tokens = decode_tokens + 1;
    req.ignore_eos = true;
    auto sink = std::make_shared<TimingSink>();
    const auto start = Clock::now();
    if (!(*engine)->Submit(req, sink).ok()) return 1;
    const std::vector<Clock::time_point> times = sink->Wait();
    if (r == 0) continue;
    const double ttft = std::chrono::duration<double>(times.front() - start).count();
    const double dec = std::chrono::duration<double>(times.back() - times.front()).count();
    prefill.push_back(prompt_tokens / ttft);
    decode.push_back(decode_tokens / dec);
  }
  std::printf(
      "{\"engine\": \"kvasir\", \"kernels\": \"%s\", \"threads\": %d, \"prompt_tokens\": %d, "
      "\"decode_tokens\": %d, \"prefill_tok_s\": %.1f, \"decode_tok_s\": %.1f}\n",
      (*engine)->model_info().kernels.c_str(), threads, prompt_tokens, decode_tokens,
      Median(prefill), Median(decode));
  return 0;
}
