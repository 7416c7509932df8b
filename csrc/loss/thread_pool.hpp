#pragma once
// A persistent pool of worker threads for the fused loss. Starting threads on every call cost
// more than the whole loss at the batch sizes people train with (B ~ 100), so workers are
// started once, on first use, and then sleep between calls.
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace hbt::loss_detail {

class ThreadPool {
 public:
  // The process's pool. A child made by fork() gets a fresh one (the parent's workers do not
  // exist there).
  static ThreadPool& instance();

  ThreadPool() = default;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool();

  // Runs work(t) for every t in [0, num_threads), t = 0 on the calling thread, and returns when
  // all have finished. Calls from several threads are served one after another. The first
  // exception thrown by any part is rethrown here.
  void run(int num_threads, const std::function<void(int)>& work);

 private:
  void grow(int num_workers);
  void worker_loop(int index);

  std::mutex submit_;  // one run() at a time
  std::mutex state_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* work_ = nullptr;
  int active_workers_ = 0;  // workers 1 .. active_workers_ take part in this generation
  int remaining_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

// Half-open range [begin, end) of part `index` when n items are cut into `parts` near-equal
// contiguous parts.
struct Range {
  int64_t begin;
  int64_t end;
  int64_t size() const { return end - begin; }
};
inline Range part_of(int64_t n, int parts, int index) {
  return {n * index / parts, n * (index + 1) / parts};
}

}  // namespace hbt::loss_detail
