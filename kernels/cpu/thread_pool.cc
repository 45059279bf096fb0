#include "kernels/cpu/thread_pool.h"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace kvasir::cpu {
namespace {

// How long an idle worker spins before sleeping. Decode steps call the pool every few
// microseconds, so a worker that sleeps between calls would pay a futex wake-up (~5-20 us) each.
constexpr auto kSpinTime = std::chrono::microseconds(300);

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(num_threads < 1 ? 1 : num_threads) {
  workers_.reserve(num_threads_ - 1);
  for (int t = 1; t < num_threads_; ++t) workers_.emplace_back([this, t] { WorkerLoop(t); });
}

ThreadPool::~ThreadPool() {
  if (workers_.empty()) return;
  stop_ = true;
  generation_.fetch_add(1, std::memory_order_seq_cst);
  {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  for (std::thread& w : workers_) w.join();
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (num_threads_ == 1 || n == 1) {
    fn(0, n);
    return;
  }
  Run(n, &fn, nullptr);
}

void ThreadPool::ParallelForTasks(int64_t num_tasks, const std::function<void(int64_t)>& fn) {
  if (num_tasks <= 0) return;
  if (num_threads_ == 1 || num_tasks == 1) {
    for (int64_t i = 0; i < num_tasks; ++i) fn(i);
    return;
  }
  next_task_.store(0, std::memory_order_relaxed);
  Run(num_tasks, nullptr, &fn);
}

void ThreadPool::Run(int64_t n, const std::function<void(int64_t, int64_t)>* range_fn,
                     const std::function<void(int64_t)>* task_fn) {
  job_n_ = n;
  range_fn_ = range_fn;
  task_fn_ = task_fn;
  pending_.store(num_threads_ - 1, std::memory_order_relaxed);
  // seq_cst on both sides (here and in WaitForGeneration) guarantees that either we see the
  // sleeper and notify, or the sleeper sees the new generation before it waits.
  generation_.fetch_add(1, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  RunShare(0);
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < 100000) {
      CpuRelax();
    } else {
      std::this_thread::yield();  // a worker was descheduled; don't burn its core
    }
  }
}

void ThreadPool::RunShare(int thread_index) {
  const int64_t n = job_n_;
  if (range_fn_ != nullptr) {
    const int64_t begin = n * thread_index / num_threads_;
    const int64_t end = n * (thread_index + 1) / num_threads_;
    if (begin < end) (*range_fn_)(begin, end);
    return;
  }
  for (int64_t i = next_task_.fetch_add(1, std::memory_order_relaxed); i < n;
       i = next_task_.fetch_add(1, std::memory_order_relaxed)) {
    (*task_fn_)(i);
  }
}

uint32_t ThreadPool::WaitForGeneration(uint32_t seen) {
  const auto deadline = std::chrono::steady_clock::now() + kSpinTime;
  for (int i = 1;; ++i) {
    const uint32_t g = generation_.load(std::memory_order_acquire);
    if (g != seen) return g;
    CpuRelax();
    if (i % 256 == 0 && std::chrono::steady_clock::now() > deadline) break;
  }
  std::unique_lock<std::mutex> lock(mu_);
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  cv_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
  return generation_.load(std::memory_order_acquire);
}

void ThreadPool::WorkerLoop(int thread_index) {
  uint32_t seen = 0;
  while (true) {
    // A generation can't be skipped: the caller waits for every worker before publishing the next.
    seen = WaitForGeneration(seen);
    if (stop_) return;
    RunShare(thread_index);
    pending_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace kvasir::cpu
