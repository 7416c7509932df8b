#pragma once
// Threads for the fused loss: OpenMP's team, not a pool of our own. Where torch also loads
// libgomp under its soname (torch's CPU wheels), the process holds one copy of it, so this is
// the team torch's own operations run on: during training its threads are awake (spinning)
// after the encoder's pass, and a second pool would have to wait for them to give up the
// cores, which costs more than the loss itself at the batch sizes people train with. Here the
// same threads take the loss's work at once. (Where torch brings another OpenMP runtime, the
// two sets of threads compete again: hbt_fast.info() says which case a process is in.)
#include <cstdint>
#include <functional>

namespace hbt::loss_detail {

// Runs work(part) for every part in [0, num_parts), part 0 on the calling thread, spread over
// up to num_parts threads, and returns when all have finished. Works with a smaller team too
// (inside another parallel region, say): each thread then takes several parts. The first
// exception thrown by any part is rethrown here, after every part has ended. Several threads
// may call it at once: each becomes the master of its own team. On one thread (num_parts 1,
// or a process forked from a threaded parent, where libgomp's team does not survive) the parts
// run in order and the first exception ends the call.
void run_parallel(int num_parts, const std::function<void(int)>& work);

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
