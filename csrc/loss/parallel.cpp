#include "loss/parallel.hpp"

#include <omp.h>
#include <pthread.h>

#include <atomic>
#include <exception>
#include <mutex>

namespace hbt::loss_detail {
namespace {

// libgomp's team does not survive fork(): in the child, a parallel region after the parent
// has run one waits forever for threads that do not exist. A child therefore runs every part
// on its calling thread (the same results; worker processes mostly run one thread anyway).
std::atomic<bool> in_forked_child{false};
[[maybe_unused]] const int fork_handler =
    pthread_atfork(nullptr, nullptr, [] { in_forked_child.store(true); });

void run_parts_here(int num_parts, const std::function<void(int)>& work) {
  for (int part = 0; part < num_parts; ++part) work(part);
}

}  // namespace

void run_parallel(int num_parts, const std::function<void(int)>& work) {
  if (num_parts <= 1 || in_forked_child.load()) {
    run_parts_here(num_parts, work);
    return;
  }
  std::exception_ptr error;
  std::mutex error_guard;
  // An exception must not leave an OpenMP region: each part's is caught and the first kept.
#pragma omp parallel num_threads(num_parts)
  {
    const int team = omp_get_num_threads();
    for (int part = omp_get_thread_num(); part < num_parts; part += team) {
      try {
        work(part);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_guard);
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace hbt::loss_detail
