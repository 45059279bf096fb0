// Shared by the engine benchmarks: a RequestSink that records when each token arrives, and a
// median.
#ifndef KVASIR_BENCH_TIMING_SINK_H_
#define KVASIR_BENCH_TIMING_SINK_H_

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "engine/request.h"

namespace kvasir::bench {

using Clock = std::chrono::steady_clock;

class TimingSink : public RequestSink {
 public:
  void OnOutput(RequestOutput out) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < out.token_ids.size(); ++i) times_.push_back(Clock::now());
    if (out.finish_reason != FinishReason::kNone) {
      done_ = true;
      cv_.notify_all();
    }
  }
  // Waits for the final output; the arrival time of every token.
  std::vector<Clock::time_point> Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    return times_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Clock::time_point> times_;
  bool done_ = false;
};

inline double Median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace kvasir::bench

#endif  // KVASIR_BENCH_TIMING_SINK_H_
