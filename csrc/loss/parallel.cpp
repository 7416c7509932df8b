#include "loss/parallel.hpp"

#include <omp.h>

#include <exception>
#include <mutex>

namespace hbt::loss_detail {

void run_parallel(int num_parts, const std::function<void(int)>& work) {
  if (num_parts <= 1) {
    work(0);
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
