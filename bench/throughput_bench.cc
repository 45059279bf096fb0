// Engine throughput with C concurrent streams on a real model: C requests submitted at once,
// each a distinct prompt of P tokens (no prefix sharing) generating D tokens, through
// Engine::Submit like a client. For each C prints one JSON line with output tokens/s over the
// whole run (prefill included), decode tokens/s (all streams together, measured while every
// stream was decoding), median TTFT and median inter-token latency (medians over --repeats runs).
//   throughput_bench --model PATH [--streams 1,8,32] [--prompt-tokens 128] [--decode-tokens 64]
//                    [--threads 2] [--repeats 3] [--max-batched-tokens 2048]
// Not a test: it measures speed.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "bench/timing_sink.h"
#include "engine/engine.h"

namespace {

using kvasir::bench::Clock;
using kvasir::bench::Median;
using kvasir::bench::TimingSink;

struct RunResult {
  double output_tok_s;  // all streams' generated tokens / wall time
  double decode_tok_s;  // tokens / time while every stream was decoding (0 if never)
  double ttft_s;        // median over streams
  double itl_s;         // median over streams of the mean gap between tokens
};

RunResult RunOnce(kvasir::Engine& engine, int streams, int prompt_tokens, int decode_tokens,
                  int run) {
  std::vector<std::shared_ptr<TimingSink>> sinks;
  const auto start = Clock::now();
  for (int s = 0; s < streams; ++s) {
    kvasir::EngineRequest req;
    req.id = "bench-" + std::to_string(run) + "-" + std::to_string(s);
    for (int t = 0; t < prompt_tokens; ++t) {
      req.prompt_ids.push_back(1000 + (t * 7919 + s * 104729 + run * 13) % 20000);
    }
    req.max_tokens = decode_tokens;
    req.ignore_eos = true;
    sinks.push_back(std::make_shared<TimingSink>());
    if (!engine.Submit(req, sinks.back()).ok()) std::abort();
  }
  std::vector<double> ttft, itl;
  std::vector<std::vector<Clock::time_point>> all;
  Clock::time_point end = start;
  Clock::time_point all_decoding = start, first_done = Clock::time_point::max();
  for (auto& sink : sinks) {
    const std::vector<Clock::time_point> times = sink->Wait();
    all.push_back(times);
    all_decoding = std::max(all_decoding, times.front());
    first_done = std::min(first_done, times.back());
    ttft.push_back(std::chrono::duration<double>(times.front() - start).count());
    if (times.size() > 1) {
      itl.push_back(std::chrono::duration<double>(times.back() - times.front()).count() /
                    static_cast<double>(times.size() - 1));
    }
    end = std::max(end, times.back());
  }
  const double wall = std::chrono::duration<double>(end - start).count();
  // Steady state: from the moment the last stream got its first token to the moment the first
  // stream finished, every stream was decoding; count the tokens produced in that window.
  double decode_rate = 0.0;
  if (first_done > all_decoding) {
    int64_t tokens = 0;
    for (const auto& times : all) {
      for (const auto& t : times) tokens += (t > all_decoding && t <= first_done) ? 1 : 0;
    }
    decode_rate = tokens / std::chrono::duration<double>(first_done - all_decoding).count();
  }
  return {streams * decode_tokens / wall, decode_rate, Median(ttft), Median(itl)};
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, streams_arg = "1,8,32";
  int prompt_tokens = 128, decode_tokens = 64, threads = 2, repeats = 3, max_batched = 2048;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* v = argv[i + 1];
    if (flag == "--model") {
      model = v;
    } else if (flag == "--streams") {
      streams_arg = v;
    } else if (flag == "--prompt-tokens") {
      prompt_tokens = std::atoi(v);
    } else if (flag == "--decode-tokens") {
      decode_tokens = std::atoi(v);
    } else if (flag == "--threads") {
      threads = std::atoi(v);
    } else if (flag == "--repeats") {
      repeats = std::atoi(v);
    } else if (flag == "--max-batched-tokens") {
      max_batched = std::atoi(v);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (model.empty()) {
    std::fprintf(stderr, "usage: throughput_bench --model PATH [...]\n");
    return 2;
  }
  std::vector<int> streams;
  std::stringstream ss(streams_arg);
  for (std::string item; std::getline(ss, item, ',');) streams.push_back(std::atoi(item.c_str()));
  const int max_streams = *std::max_element(streams.begin(), streams.end());

  kvasir::EngineOptions o;
  o.model_path = model;
  o.num_threads = threads;
  o.max_num_seqs = max_streams;
  o.max_batched_tokens = std::max(max_batched, max_streams);
  auto engine = kvasir::Engine::Create(o);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  int run = 0;
  RunOnce(**engine, 1, prompt_tokens, 8, run++);  // warm-up
  for (int c : streams) {
    std::vector<double> tput, decode, ttft, itl;
    for (int r = 0; r < repeats; ++r) {
      const RunResult res = RunOnce(**engine, c, prompt_tokens, decode_tokens, run++);
      tput.push_back(res.output_tok_s);
      decode.push_back(res.decode_tok_s);
      ttft.push_back(res.ttft_s);
      itl.push_back(res.itl_s);
    }
    std::printf(
        "{\"engine\": \"kvasir\", \"kernels\": \"%s\", \"threads\": %d, \"streams\": %d, "
        "\"prompt_tokens\": %d, \"decode_tokens\": %d, \"output_tok_s\": %.1f, "
        "\"decode_tok_s\": %.1f, \"ttft_ms\": %.1f, \"itl_ms\": %.2f}\n",
        (*engine)->model_info().kernels.c_str(), threads, c, prompt_tokens, decode_tokens,
        Median(tput), Median(decode), 1e3 * Median(ttft), 1e3 * Median(itl));
    std::fflush(stdout);
  }
  return 0;
}
