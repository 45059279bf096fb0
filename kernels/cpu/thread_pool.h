// A fixed pool of worker threads for data-parallel kernels.
//
// Built for many short calls (a decode step makes ~250): between calls workers spin briefly on a
// generation counter, then sleep on a condition variable; the caller runs a share itself and spins
// until the workers finish. Results of the kernels never depend on how work is split, but the split
// of ParallelFor is static and deterministic anyway.
//
// Threading contract: one thread at a time calls ParallelFor/ParallelForTasks (the engine thread);
// calls must not nest (fn must not call back into the same pool). fn must not throw.
#ifndef KVASIR_KERNELS_CPU_THREAD_POOL_H_
#define KVASIR_KERNELS_CPU_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kvasir::cpu {

class ThreadPool {
 public:
  // num_threads counts the calling thread; 1 (or less) runs everything inline with no workers.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Splits [0, n) into num_threads() contiguous chunks, chunk t = [n*t/T, n*(t+1)/T); the caller
  // runs chunk 0. Empty chunks are skipped. Returns when every chunk is done.
  void ParallelFor(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn);

  // Runs fn(task) for every task in [0, num_tasks), handed out dynamically (for uneven work).
  // Returns when all are done.
  void ParallelForTasks(int64_t num_tasks, const std::function<void(int64_t task)>& fn);

 private:
  void Run(int64_t n, const std::function<void(int64_t, int64_t)>* range_fn,
           const std::function<void(int64_t)>* task_fn);
  void RunShare(int thread_index);
  void WorkerLoop(int thread_index);
  uint32_t WaitForGeneration(uint32_t seen);

  const int num_threads_;
  std::vector<std::thread> workers_;

  // The published job; written by the caller before generation_ is bumped.
  int64_t job_n_ = 0;
  const std::function<void(int64_t, int64_t)>* range_fn_ = nullptr;
  const std::function<void(int64_t)>* task_fn_ = nullptr;
  bool stop_ = false;

  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<int> pending_{0};
  alignas(64) std::atomic<int64_t> next_task_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace kvasir::cpu

#endif  // KVASIR_KERNELS_CPU_THREAD_POOL_H_
