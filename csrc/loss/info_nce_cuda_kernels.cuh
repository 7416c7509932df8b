#pragma once
// Device kernels of the CUDA fused InfoNCE loss: everything that is not a matrix product.
// Similarities arrive as float32 blocks [rows, M] (row stride `ld` floats) from cuBLAS; all
// arithmetic is float32, per-row partial sums are reduced in a fixed order (no atomics), so a
// run's result does not depend on scheduling.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace hbt::cuda_loss {

constexpr int kRowThreads = 256;  // threads per row in the row kernels
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float minus_infinity() { return __int_as_float(0xff800000); }

template <typename T>
__device__ __forceinline__ float to_float(T value);
template <>
__device__ __forceinline__ float to_float(float value) { return value; }
template <>
__device__ __forceinline__ float to_float(__half value) { return __half2float(value); }
template <>
__device__ __forceinline__ float to_float(__nv_bfloat16 value) { return __bfloat162float(value); }

template <typename T>
__device__ __forceinline__ T from_float(float value);
template <>
__device__ __forceinline__ float from_float(float value) { return value; }
template <>
__device__ __forceinline__ __half from_float(float value) { return __float2half_rn(value); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float(float value) {
  return __float2bfloat16_rn(value);
}

// False negatives: passage `col` is not a negative of query `row` when their groups match
// (col != row). Null groups mask nothing.
struct GroupMask {
  const int64_t* query_groups = nullptr;
  const int64_t* passage_groups = nullptr;

  __device__ __forceinline__ bool masked(int64_t query_group, int64_t row, int64_t col) const {
    return passage_groups != nullptr && col != row && passage_groups[col] == query_group;
  }
  __device__ __forceinline__ int64_t group_of(int64_t row) const {
    return query_groups != nullptr ? query_groups[row] : 0;
  }
};

// A running log-sum-exp of logits scale * s kept as scale * top + log(sum), top the largest
// similarity seen (as the CPU kernel keeps it): s - top is exact for close values, where
// exp(logit - lse) would lose digits to large logits. Empty: top = -inf, sum = 0.
struct LogSumExp {
  float top;
  float sum;
};

__device__ __forceinline__ LogSumExp empty_log_sum_exp() { return {minus_infinity(), 0.0f}; }

__device__ __forceinline__ void add_value(LogSumExp& state, float value, float scale) {
  if (value > state.top) {  // exp(-inf) = 0 clears the empty state's sum
    state.sum = state.sum * expf(scale * (state.top - value)) + 1.0f;
    state.top = value;
  } else {
    state.sum += expf(scale * (value - state.top));
  }
}

// Commutative bit for bit (max, then a sum of two rounded products), so every lane of a
// butterfly ends with the same value: __fmul_rn is never contracted into an FMA, which would
// round one product and not the other.
__device__ __forceinline__ LogSumExp merge(LogSumExp a, LogSumExp b, float scale) {
  const float top = fmaxf(a.top, b.top);
  if (top == minus_infinity()) return empty_log_sum_exp();  // avoids -inf - -inf
  return {top, __fmul_rn(a.sum, expf(scale * (a.top - top))) +
                   __fmul_rn(b.sum, expf(scale * (b.top - top)))};
}

__device__ __forceinline__ LogSumExp warp_merge(LogSumExp state, float scale) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const LogSumExp other{__shfl_xor_sync(kFullMask, state.top, offset),
                          __shfl_xor_sync(kFullMask, state.sum, offset)};
    state = merge(state, other, scale);
  }
  return state;
}

// Merge over a block of kRowThreads threads; the result is valid in thread 0.
__device__ LogSumExp block_merge(LogSumExp state, float scale) {
  __shared__ LogSumExp partial[kRowThreads / kWarp];
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  state = warp_merge(state, scale);
  if (lane == 0) partial[warp] = state;
  __syncthreads();
  if (warp == 0) {
    state = lane < kRowThreads / kWarp ? partial[lane] : empty_log_sum_exp();
    state = warp_merge(state, scale);
  }
  return state;
}

// Sum over a block of kRowThreads threads in a fixed order; valid in thread 0.
__device__ float block_sum(float value) {
  __shared__ float partial[kRowThreads / kWarp];
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    value += __shfl_xor_sync(kFullMask, value, offset);
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  if (warp == 0) {
    value = lane < kRowThreads / kWarp ? partial[lane] : 0.0f;
    for (int offset = kWarp / 2; offset > 0; offset /= 2)
      value += __shfl_xor_sync(kFullMask, value, offset);
  }
  return value;
}

// Parameters shared by the row kernels for one block of query rows [row0, row0 + rows).
struct RowBlock {
  float* sims;  // [rows, ld] floats: similarities in, 16-bit or float gradients out
  int64_t ld;
  int64_t row0;
  int64_t num_queries;   // B
  int64_t num_passages;  // M
  GroupMask mask;
  const float* scale;
  float weight;  // 1, or 1/2 per direction for the symmetric loss (1/B is applied at the end)
  const float* col_top;      // symmetric only: column statistics of the B x B block
  const float* col_log_sum;
  int* non_finite;           // set when a similarity or a row's loss is NaN or inf
};

// One block of threads per row: the row's exact log-sum-exp over unmasked columns, and its
// loss term weight * (lse_row - logit_ii) (+ the column direction's term when symmetric).
// Finite inputs can still overflow float32 (similarities, or logits with a large scale): every
// similarity, masked or not, and the loss term are checked, so that such a batch gives NaN
// like a non-finite input does, not an inf loss.
__global__ void __launch_bounds__(kRowThreads)
    row_statistics_kernel(RowBlock block, float* row_top, float* row_log_sum, float* row_loss) {
  const int64_t r = blockIdx.x;
  const int64_t row = block.row0 + r;
  const float* sims = block.sims + r * block.ld;
  const float scale = *block.scale;
  const int64_t query_group = block.mask.group_of(row);
  LogSumExp state = empty_log_sum_exp();
  bool non_finite = false;
  for (int64_t j = threadIdx.x; j < block.num_passages; j += kRowThreads) {
    const float sim = sims[j];
    non_finite |= !isfinite(sim);
    if (!block.mask.masked(query_group, row, j)) add_value(state, sim, scale);
  }
  if (non_finite) atomicOr(block.non_finite, 1);
  state = block_merge(state, scale);
  if (threadIdx.x != 0) return;
  // The positive is never masked, so top is finite for finite similarities.
  const float log_sum = logf(state.sum);
  const float positive = sims[row];
  float loss = block.weight * (scale * (state.top - positive) + log_sum);
  if (block.col_top != nullptr)
    loss += block.weight * (scale * (block.col_top[row] - positive) + block.col_log_sum[row]);
  if (!isfinite(loss)) atomicOr(block.non_finite, 1);
  row_top[r] = state.top;
  row_log_sum[r] = log_sum;
  row_loss[row] = loss;
}

// One block of threads per row: overwrites the row's similarities with
//   factor * weight * ((softmax_row - y) + (softmax_col - y) for j < B when symmetric)
// (d loss / d logits times B * factor) in T, packed at the start of the row's memory, and
// writes the row's share of d loss / d scale (times B): sum_j grad_j * s_j, summed as
// sum_j grad_j * (s_j - top) (the column term relative to its column's top), as the CPU
// kernel's weighted_gap: equal, since each softmax's gradient sums to 0 over its row (column),
// but a peaked softmax's positive then adds (nearly) 0 instead of a large product that
// cancels the others' sum.
//
// A 16-bit store at index j lands in the float at index j / 2 of the same row, so the row is
// walked in chunks: every thread loads its chunk values before a barrier and stores after it.
// The stores of chunk c reach floats below (c + 1) * chunk / 2, which the loads of chunks
// 0..c have already consumed and no later chunk reads.
template <typename T, int kItems>
__global__ void __launch_bounds__(kRowThreads)
    row_gradient_kernel(RowBlock block, const float* row_top, const float* row_log_sum,
                        float factor, float* row_grad_scale) {
  const int64_t r = blockIdx.x;
  const int64_t row = block.row0 + r;
  float* sims = block.sims + r * block.ld;
  T* grads = reinterpret_cast<T*>(sims);
  const float scale = *block.scale;
  const float top = row_top[r];
  const float log_sum = row_log_sum[r];
  const int64_t query_group = block.mask.group_of(row);
  const bool symmetric = block.col_top != nullptr;
  constexpr int64_t kChunk = int64_t{kItems} * kRowThreads;
  float grad_scale = 0.0f;
  for (int64_t chunk = 0; chunk < block.num_passages; chunk += kChunk) {
    float grad[kItems];
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const int64_t j = chunk + k * kRowThreads + threadIdx.x;
      grad[k] = 0.0f;
      if (j >= block.num_passages || block.mask.masked(query_group, row, j)) continue;
      const float sim = sims[j];
      const float target = j == row ? 1.0f : 0.0f;
      float g = expf(scale * (sim - top) - log_sum) - target;
      float weighted_gap = g * (sim - top);
      if (symmetric && j < block.num_queries) {
        const float col_top = block.col_top[j];
        const float col_g = expf(scale * (sim - col_top) - block.col_log_sum[j]) - target;
        g += col_g;
        weighted_gap += col_g * (sim - col_top);
      }
      grad_scale += block.weight * weighted_gap;
      grad[k] = block.weight * g;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const int64_t j = chunk + k * kRowThreads + threadIdx.x;
      if (j < block.num_passages) grads[j] = from_float<T>(grad[k] * factor);
    }
  }
  grad_scale = block_sum(grad_scale);
  if (threadIdx.x == 0) row_grad_scale[row] = grad_scale;
}

constexpr int kColumnWidth = kWarp;  // columns per thread block
constexpr int kColumnSplit = 8;      // threads sharing one column's rows

// Symmetric loss: folds one block of rows into the running log-sum-exp of each of the first B
// columns (col_top, col_sum). Thread (x, y) of a block takes column x and rows y, y + 8, ...
// so a warp reads 32 consecutive floats of a row.
__global__ void __launch_bounds__(kColumnWidth * kColumnSplit)
    column_statistics_kernel(const float* sims, int64_t ld, int64_t row0, int64_t rows,
                             int64_t num_queries, GroupMask mask, const float* scale_ptr,
                             float* col_top, float* col_sum) {
  __shared__ LogSumExp partial[kColumnSplit][kColumnWidth];
  const int64_t col = int64_t{blockIdx.x} * kColumnWidth + threadIdx.x;
  const float scale = *scale_ptr;
  LogSumExp state = empty_log_sum_exp();
  if (col < num_queries) {
    for (int64_t r = threadIdx.y; r < rows; r += kColumnSplit) {
      const int64_t row = row0 + r;
      if (!mask.masked(mask.group_of(row), row, col)) add_value(state, sims[r * ld + col], scale);
    }
  }
  partial[threadIdx.y][threadIdx.x] = state;
  __syncthreads();
  if (threadIdx.y != 0 || col >= num_queries) return;
  LogSumExp total{col_top[col], col_sum[col]};
  for (int y = 0; y < kColumnSplit; ++y) total = merge(total, partial[y][threadIdx.x], scale);
  col_top[col] = total.top;
  col_sum[col] = total.sum;
}

// Every column holds its unmasked diagonal, so each sum is >= 1 for finite inputs. Grid-stride:
// the grid is capped (grid_for), B is not.
__global__ void column_log_kernel(float* col_sum, int64_t num_queries) {
  for (int64_t j = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; j < num_queries;
       j += int64_t{gridDim.x} * blockDim.x)
    col_sum[j] = logf(col_sum[j]);
}

__global__ void fill_kernel(float* values, int64_t n, float value) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    values[i] = value;
}

// Device-side constants for the gradient products, whose alpha depends on the scale, which
// stays on the device (cuBLAS pointer mode device; beta is always one there, see gemm).
struct Constants {
  float one;
  float grad_alpha;  // scale / (B * factor): undoes the factors left out of the stored gradient
  int non_finite;    // set when the scale, an input, a similarity or a row's loss is not finite
};

__global__ void prepare_constants_kernel(const float* scale, float inverse_rows_factor,
                                         Constants* constants) {
  const float value = *scale;
  constants->one = 1.0f;
  constants->grad_alpha = value * inverse_rows_factor;
  constants->non_finite = isfinite(value) ? 0 : 1;
}

template <typename T>
__global__ void find_non_finite_kernel(const T* values, int64_t n, int* non_finite) {
  bool bad = false;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    bad |= !isfinite(to_float(values[i]));
  if (__any_sync(kFullMask, bad) && threadIdx.x % kWarp == 0) atomicOr(non_finite, 1);
}

// One block: result = (sum(row_loss) / B, sum(row_grad_scale) / B), or NaN for non-finite
// inputs. Sums in double, in a fixed order.
__global__ void __launch_bounds__(kRowThreads)
    finalize_kernel(const float* row_loss, const float* row_grad_scale, int64_t num_queries,
                    const Constants* constants, float* result) {
  __shared__ double partial[2][kRowThreads];
  double loss = 0.0;
  double grad_scale = 0.0;
  for (int64_t i = threadIdx.x; i < num_queries; i += kRowThreads) {
    loss += row_loss[i];
    if (row_grad_scale != nullptr) grad_scale += row_grad_scale[i];
  }
  partial[0][threadIdx.x] = loss;
  partial[1][threadIdx.x] = grad_scale;
  __syncthreads();
  for (int stride = kRowThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      partial[0][threadIdx.x] += partial[0][threadIdx.x + stride];
      partial[1][threadIdx.x] += partial[1][threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x != 0) return;
  const bool bad = constants->non_finite != 0;
  const float nan = __int_as_float(0x7fc00000);
  result[0] = bad ? nan : static_cast<float>(partial[0][0] / num_queries);
  result[1] = bad ? nan : static_cast<float>(partial[1][0] / num_queries);
}

// Passages' gradient from its float32 accumulator into the output type (NaN for bad inputs).
template <typename T>
__global__ void store_gradient_kernel(const float* accumulator, T* out, int64_t n,
                                      const Constants* constants) {
  const bool bad = constants->non_finite != 0;
  const float nan = __int_as_float(0x7fc00000);
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    out[i] = from_float<T>(bad ? nan : accumulator[i]);
}

// Overwrites a gradient with NaN when the inputs were not finite; otherwise does nothing.
template <typename T>
__global__ void poison_gradient_kernel(T* out, int64_t n, const Constants* constants) {
  if (constants->non_finite == 0) return;
  const T nan = from_float<T>(__int_as_float(0x7fc00000));
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    out[i] = nan;
}

}  // namespace hbt::cuda_loss
