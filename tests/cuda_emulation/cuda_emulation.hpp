#pragma once
// Host emulator of the CUDA execution model, to run this project's CUDA sources unmodified on
// the CPU: csrc/loss/info_nce_cuda_kernels.cuh and the host code of info_nce_cuda.cu (whose
// launches go through HBT_LAUNCH). Compiled with g++; the CUDA headers are used for their types
// only (__half, __nv_bfloat16 and their conversions, dim3, the runtime API's declarations).
//
// Model, and what it catches:
// - A launch runs on the calling thread's "stream" at once (stream order is call order). Its
//   blocks run one after another; each block's threads run concurrently, one std::thread per
//   CUDA thread (a pool reused across blocks). __shared__ is one static per declaration, valid
//   because blocks do not overlap.
// - __syncthreads is a std::barrier of the block's threads; a thread that returns leaves it
//   (arrive_and_drop), as exited threads stop counting on a GPU.
// - Warp shuffles and votes exchange values through per-warp slots between two phases of a
//   warp barrier. A full-mask shuffle or vote that reads a lane which has exited or does not
//   exist (a partial warp) aborts; other masks are not emulated and abort too.
// - Nothing orders two threads but these barriers and atomics, so ThreadSanitizer reports a
//   missing barrier between a write and another thread's read (shared or global memory).
// - Launch configurations are checked as the runtime checks them (cudaErrorInvalidConfiguration
//   from cudaGetLastError).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <utility>
#include <vector>

#undef __global__
#undef __device__
#undef __shared__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __shared__ static
#define __forceinline__ inline
#define __launch_bounds__(...)

namespace hbt_emu {

struct Block;
struct Warp;

// Where the calling std::thread is in the launch it runs for.
struct ThreadPlace {
  uint3 thread_index{0, 0, 0};
  uint3 block_index{0, 0, 0};
  dim3 block_dim{1, 1, 1};
  dim3 grid_dim{1, 1, 1};
  int lane = 0;
  Block* block = nullptr;
  Warp* warp = nullptr;
};
ThreadPlace& this_thread();

// Runs body once per thread of each block of grid x block (checked already), blocks in order.
void run_grid(dim3 grid, dim3 block, const std::function<void()>& body);
// Records a launch's stream and checks its configuration: false (and the runtime's last error
// set) when it would not launch.
bool accept_launch(dim3 grid, dim3 block, cudaStream_t stream);

void sync_block();
void warp_exchange(uint64_t value, unsigned mask, uint64_t* all_lanes);

template <typename T>
uint64_t to_bits(T value) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffles move at most 64 bits");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  return bits;
}

template <typename T>
T from_bits(uint64_t bits) {
  T value;
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

// HBT_LAUNCH(grid, block, stream, kernel)(args...): the arguments are converted to the
// kernel's parameter types once (as a launch copies them) and every thread gets its own copy.
template <typename... Params>
auto launcher(dim3 grid, dim3 block, cudaStream_t stream, void (*kernel)(Params...)) {
  return [=](auto&&... args) {
    if (!accept_launch(grid, block, stream)) return;
    const std::tuple<Params...> params(std::forward<decltype(args)>(args)...);
    run_grid(grid, block, [&] {
      std::tuple<Params...> own = params;
      std::apply(kernel, own);
    });
  };
}

// ---- The emulated device's state, shared by the runtime and cuBLAS stubs and the tests.
// Device memory is host memory from device_malloc, registered as device 0's and filled with
// 0xff bytes (NaN in float32, float16 and bfloat16), so that reading what nothing wrote shows.
void* device_malloc(size_t bytes);
void device_free(void* pointer);
// Aborts unless [pointer, pointer + bytes) lies inside one device allocation.
void require_device_range(const void* pointer, size_t bytes, const char* what);
void set_last_error(cudaError_t error);
// Every stream a launch, memset or product was queued on, in order; clear_streams forgets them.
void record_stream(cudaStream_t stream);
const std::vector<cudaStream_t>& recorded_streams();
void clear_streams();
[[noreturn]] void fail(const char* what);

}  // namespace hbt_emu

#define HBT_LAUNCH(grid, block, stream, ...) \
  ::hbt_emu::launcher(dim3(grid), dim3(block), stream, &__VA_ARGS__)

#define threadIdx (::hbt_emu::this_thread().thread_index)
#define blockIdx (::hbt_emu::this_thread().block_index)
#define blockDim (::hbt_emu::this_thread().block_dim)
#define gridDim (::hbt_emu::this_thread().grid_dim)

inline void __syncthreads() { ::hbt_emu::sync_block(); }

template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  if (width != 32) std::abort();  // not emulated
  uint64_t lanes[32];
  ::hbt_emu::warp_exchange(::hbt_emu::to_bits(value), mask, lanes);
  return ::hbt_emu::from_bits<T>(lanes[::hbt_emu::this_thread().lane ^ lane_mask]);
}

inline int __any_sync(unsigned mask, int predicate) {
  uint64_t lanes[32];
  ::hbt_emu::warp_exchange(predicate != 0, mask, lanes);
  int any = 0;
  for (const uint64_t lane : lanes) any |= lane != 0;
  return any;
}

inline int atomicOr(int* address, int value) {
  return __atomic_fetch_or(address, value, __ATOMIC_RELAXED);
}

inline float __int_as_float(int bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// A product rounded on its own: never contracted with an addition into an FMA.
inline float __fmul_rn(float a, float b) {
  volatile float product = a * b;
  return product;
}

using std::isfinite;
