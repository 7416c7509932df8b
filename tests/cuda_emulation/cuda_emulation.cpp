// The emulator's execution engine (see cuda_emulation.hpp) and the few CUDA runtime calls
// info_nce_cuda.cu makes, on host memory.
#include "cuda_emulation.hpp"

#include <barrier>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace hbt_emu {

constexpr int kWarpSize = 32;
constexpr int kMaxBlockThreads = 1024;

struct Warp {
  explicit Warp(int lanes) : barrier(lanes) {
    for (int lane = 0; lane < lanes; ++lane) present[lane] = true;
  }
  std::barrier<> barrier;
  uint64_t slots[kWarpSize] = {};
  std::atomic<bool> present[kWarpSize] = {};  // the lane exists and has not returned
};

struct Block {
  explicit Block(int threads) : barrier(threads) {
    for (int first = 0; first < threads; first += kWarpSize)
      warps.push_back(std::make_unique<Warp>(std::min(kWarpSize, threads - first)));
  }
  std::barrier<> barrier;
  std::vector<std::unique_ptr<Warp>> warps;
};

void fail(const char* what) {
  std::fprintf(stderr, "cuda emulation: %s\n", what);
  std::abort();
}

namespace {

thread_local ThreadPlace place;

// One std::thread per CUDA thread of a block, kept across blocks and launches. A block starts
// with one wake-up of every worker (a new generation), not one per worker. The generation and
// the number of workers taking part are one atomic word: read apart, a worker idle in one block
// could pair the next block's count with the old generation, run the next block's job, and run
// it again when it saw that block's generation (a thread run twice, the block freed while
// another of its threads still ran).
class Pool {
 public:
  ~Pool() {
    stopping_ = true;
    start(0);
    for (std::thread& worker : workers_) worker.join();
  }

  // job(i) on worker i for every i < n; returns when all have finished.
  void run(int n, const std::function<void(int)>& job) {
    while (static_cast<int>(workers_.size()) < n) {
      const int index = static_cast<int>(workers_.size());
      const uint64_t seen = state_.load();
      workers_.emplace_back([this, index, seen] { work(index, seen); });
    }
    // Safe to replace: every worker of the previous block has finished with it.
    job_ = &job;
    remaining_ = n;
    start(n);
    for (int left = remaining_.load(); left != 0; left = remaining_.load()) remaining_.wait(left);
  }

 private:
  // A new generation with `active` workers (only the launching thread writes state_).
  void start(int active) {
    state_.store(((state_.load() >> 32) + 1) << 32 | static_cast<uint32_t>(active));
    state_.notify_all();
  }

  void work(int index, uint64_t seen) {
    for (;;) {
      state_.wait(seen);
      seen = state_.load();
      if (stopping_) return;
      if (index >= static_cast<int>(seen & 0xffffffffu)) continue;
      (*job_)(index);
      if (remaining_.fetch_sub(1) == 1) remaining_.notify_all();  // a member: outlives run()
    }
  }

  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> state_{0};  // generation << 32 | workers taking part
  std::atomic<int> remaining_{0};
  std::atomic<bool> stopping_{false};
};

Pool& pool() {
  static Pool instance;
  return instance;
}

struct Device {
  std::mutex mutex;
  std::map<uintptr_t, size_t> allocations;  // start -> bytes
  std::vector<cudaStream_t> streams;
};

Device& device() {
  static Device instance;
  return instance;
}

thread_local cudaError_t last_error = cudaSuccess;
thread_local int current_device = 0;

}  // namespace

ThreadPlace& this_thread() { return place; }

void run_grid(dim3 grid, dim3 block, const std::function<void()>& body) {
  const int threads = static_cast<int>(block.x * block.y * block.z);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        Block state(threads);
        pool().run(threads, [&](int linear) {
          const auto id = static_cast<unsigned>(linear);
          place.thread_index = {id % block.x, id / block.x % block.y, id / (block.x * block.y)};
          place.block_index = {x, y, z};
          place.block_dim = block;
          place.grid_dim = grid;
          place.lane = linear % kWarpSize;
          place.block = &state;
          place.warp = state.warps[linear / kWarpSize].get();
          body();
          // The thread returns: it leaves its warp's and its block's barriers.
          place.warp->present[place.lane] = false;
          place.warp->barrier.arrive_and_drop();
          place.block->barrier.arrive_and_drop();
          place.block = nullptr;
          place.warp = nullptr;
        });
      }
}

bool accept_launch(dim3 grid, dim3 block, cudaStream_t stream) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  const bool valid = threads >= 1 && threads <= kMaxBlockThreads && block.z <= 64 &&
                     grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.x <= INT_MAX &&
                     grid.y <= 65535 && grid.z <= 65535;
  if (!valid) {
    set_last_error(cudaErrorInvalidConfiguration);
    return false;
  }
  record_stream(stream);
  return true;
}

void sync_block() {
  if (place.block == nullptr) fail("__syncthreads outside a kernel");
  place.block->barrier.arrive_and_wait();
}

void warp_exchange(uint64_t value, unsigned mask, uint64_t* all_lanes) {
  if (place.warp == nullptr) fail("warp shuffle or vote outside a kernel");
  if (mask != 0xffffffffu) fail("only full-mask shuffles and votes are emulated");
  Warp& warp = *place.warp;
  warp.slots[place.lane] = value;
  warp.barrier.arrive_and_wait();
  for (int lane = 0; lane < kWarpSize; ++lane) {
    if (!warp.present[lane])
      fail("a full-mask shuffle or vote names a lane that has exited or does not exist");
    all_lanes[lane] = warp.slots[lane];
  }
  warp.barrier.arrive_and_wait();  // nobody overwrites a slot before every lane has read it
}

void* device_malloc(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  void* pointer = std::aligned_alloc(256, rounded);
  if (pointer == nullptr) fail("out of host memory");
  std::memset(pointer, 0xff, rounded);
  std::lock_guard lock(device().mutex);
  device().allocations[reinterpret_cast<uintptr_t>(pointer)] = bytes;
  return pointer;
}

void device_free(void* pointer) {
  {
    std::lock_guard lock(device().mutex);
    device().allocations.erase(reinterpret_cast<uintptr_t>(pointer));
  }
  std::free(pointer);
}

namespace {
// The allocation holding address, as (start, bytes), or (0, 0).
std::pair<uintptr_t, size_t> allocation_of(uintptr_t address) {
  std::lock_guard lock(device().mutex);
  auto it = device().allocations.upper_bound(address);
  if (it == device().allocations.begin()) return {0, 0};
  --it;
  if (address >= it->first + std::max<size_t>(it->second, 1)) return {0, 0};
  return *it;
}
}  // namespace

void require_device_range(const void* pointer, size_t bytes, const char* what) {
  const auto address = reinterpret_cast<uintptr_t>(pointer);
  const auto [start, size] = allocation_of(address);
  if (start == 0 || address + bytes > start + size) {
    std::fprintf(stderr, "cuda emulation: %s: %zu bytes at %p are not inside one device "
                 "allocation\n", what, bytes, pointer);
    std::abort();
  }
}

void set_last_error(cudaError_t error) { last_error = error; }

void record_stream(cudaStream_t stream) {
  std::lock_guard lock(device().mutex);
  device().streams.push_back(stream);
}

const std::vector<cudaStream_t>& recorded_streams() { return device().streams; }

void clear_streams() {
  std::lock_guard lock(device().mutex);
  device().streams.clear();
}

}  // namespace hbt_emu

// ---- CUDA runtime calls (one emulated device, number 0)
extern "C" {

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  *device = hbt_emu::current_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  hbt_emu::current_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
  const cudaError_t error = hbt_emu::last_error;
  hbt_emu::last_error = cudaSuccess;
  return error;
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    default: return "unknown error (emulated runtime)";
  }
}

cudaError_t cudaMemsetAsync(void* pointer, int value, size_t bytes, cudaStream_t stream) {
  hbt_emu::require_device_range(pointer, bytes, "cudaMemsetAsync");
  hbt_emu::record_stream(stream);
  std::memset(pointer, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* pointer) {
  *attributes = cudaPointerAttributes{};
  const auto [start, size] = hbt_emu::allocation_of(reinterpret_cast<uintptr_t>(pointer));
  attributes->type = start != 0 ? cudaMemoryTypeDevice : cudaMemoryTypeUnregistered;
  attributes->device = 0;
  if (start != 0) attributes->devicePointer = const_cast<void*>(pointer);
  return cudaSuccess;
}

}  // extern "C"
