#include "loss/thread_pool.hpp"

#include <unistd.h>

#include <memory>

namespace hbt::loss_detail {

ThreadPool& ThreadPool::instance() {
  static std::mutex guard;
  static std::unique_ptr<ThreadPool> pool;
  static pid_t owner = 0;
  std::lock_guard<std::mutex> lock(guard);
  if (!pool || owner != getpid()) {
    // In a forked child the old pool's threads are gone and joining them would fail: the
    // object is abandoned rather than destroyed.
    if (pool && owner != getpid()) pool.release();
    pool = std::make_unique<ThreadPool>();
    owner = getpid();
  }
  return *pool;
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(state_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& worker : workers_) worker.join();
}

void ThreadPool::grow(int num_workers) {
  while (static_cast<int>(workers_.size()) < num_workers) {
    const int index = static_cast<int>(workers_.size()) + 1;
    workers_.emplace_back([this, index] { worker_loop(index); });
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* work;
    {
      std::unique_lock<std::mutex> lock(state_);
      wake_.wait(lock, [&] { return stopping_ || (generation_ != seen && index <= active_workers_); });
      if (stopping_) return;
      seen = generation_;
      work = work_;
    }
    std::exception_ptr error;
    try {
      (*work)(index);
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(state_);
    if (error && !error_) error_ = error;
    if (--remaining_ == 0) done_.notify_one();
  }
}

void ThreadPool::run(int num_threads, const std::function<void(int)>& work) {
  if (num_threads <= 1) {
    work(0);
    return;
  }
  std::lock_guard<std::mutex> serial(submit_);
  {
    std::lock_guard<std::mutex> lock(state_);
    grow(num_threads - 1);  // before publishing the job: a failure here leaves nothing running
    work_ = &work;
    active_workers_ = num_threads - 1;
    remaining_ = num_threads - 1;
    error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  std::exception_ptr error;
  try {
    work(0);
  } catch (...) {
    error = std::current_exception();
  }
  std::unique_lock<std::mutex> lock(state_);
  done_.wait(lock, [&] { return remaining_ == 0; });
  if (!error) error = error_;
  if (error) std::rethrow_exception(error);
}

}  // namespace hbt::loss_detail
