#include "loss/parallel.hpp"

#include <dirent.h>
#include <omp.h>
#include <pthread.h>

#include <atomic>
#include <exception>
#include <mutex>

namespace hbt::loss_detail {
namespace {

// libgomp's team does not survive fork(): in the child, a parallel region after the parent
// had a team waits forever for threads that do not exist. Whether the parent had one (torch's
// or ours) cannot be asked of OpenMP, so a child of a parent that had any thread besides the
// forking one runs every part on its calling thread (the same results); the child of a
// single-threaded parent (a launcher that forks before any work) keeps its threads.
std::atomic<bool> parent_had_threads{true};
std::atomic<bool> in_forked_child{false};

bool process_has_other_threads() {
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return true;  // cannot tell: assume a team may exist
  int count = 0;
  while (const dirent* entry = readdir(tasks))
    if (entry->d_name[0] != '.') ++count;
  closedir(tasks);
  return count > 1;
}

[[maybe_unused]] const int fork_handlers = pthread_atfork(
    [] { parent_had_threads.store(process_has_other_threads()); }, nullptr,
    [] { in_forked_child.store(in_forked_child.load() || parent_had_threads.load()); });

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
