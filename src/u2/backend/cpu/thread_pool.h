// The CPU backend's one fork-join pool: GEMM tiles, attention heads and the row-wise kernels all
// run on it (OpenBLAS is kept single-threaded, so no second pool competes for the cores). When
// another caller is already using the pool (several server workers), work runs inline on the
// calling thread instead of queueing: the cores are busy anyway. A ParallelFor issued from inside
// a parallel region also runs inline. Idle workers spin for kSpin (50 µs) before they sleep, and so
// does the caller waiting for them: regions come back to back, and a futex wake-up of an idle
// vCPU costs tens of microseconds.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace u2::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) on disjoint ranges covering [0, n). Ranges hold at least `grain` items
  // (except the last); n <= grain runs inline. Chunks are handed out dynamically.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) const;

 private:
  // How long a thread spins (checking `ready`) before it blocks on a condition variable.
  static constexpr std::chrono::microseconds kSpin{50};
  template <typename Ready>
  static bool SpinUntil(Ready ready);
  void WorkerLoop();
  void RunChunks() const;

  std::vector<std::thread> workers_;
  mutable std::mutex run_mutex_;  // one parallel region at a time
  mutable std::mutex mutex_;
  mutable std::condition_variable wake_;
  mutable std::condition_variable done_;
  mutable std::atomic<uint64_t> generation_{0};
  mutable std::atomic<bool> stop_{false};
  // The current job.
  mutable const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  mutable int64_t n_ = 0;
  mutable int64_t chunk_ = 1;
  mutable std::atomic<int64_t> next_{0};
  mutable std::atomic<int> active_{0};
};

}  // namespace u2::cpu
