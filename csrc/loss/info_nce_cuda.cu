// Host side of the CUDA fused InfoNCE loss: argument checks, the workspace layout, and the
// row-block loop (cuBLAS products + the kernels of info_nce_cuda_kernels.cuh), all queued on
// the caller's stream. Mirrors info_nce.cpp; see info_nce.hpp for the formula.
#include "loss/info_nce_cuda.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/check.hpp"
#include "loss/info_nce_cuda_kernels.cuh"

// kernel<<<grid, block, 0, stream>>>(args) as HBT_LAUNCH(grid, block, stream, kernel)(args), so
// that the host emulator of the tests (tests/cuda_emulation) runs this file on the CPU.
#ifndef HBT_LAUNCH
#define HBT_LAUNCH(grid, block, stream, ...) __VA_ARGS__<<<grid, block, 0, stream>>>
#endif

namespace hbt {
namespace {

using cuda_loss::Constants;
using cuda_loss::GroupMask;
using cuda_loss::RowBlock;

// Similarities of one block stay within this budget; blocks are never thinner than
// kMinBlockRows rows (the passages' gradient product has the block height as its inner
// dimension and turns memory-bound below a few hundred) and are cut at multiples of
// kBlockRowsMultiple to keep the products on full tensor-core tiles.
constexpr int64_t kSimilarityBudgetBytes = int64_t{128} << 20;
constexpr int64_t kMinBlockRows = 256;
constexpr int64_t kBlockRowsMultiple = 128;
// cuBLAS gets its workspace from ours, so that it is stream-ordered with the caller's
// allocator (a handle's default workspace would be shared by every stream the handle serves).
constexpr size_t kCublasWorkspaceBytes = size_t{8} << 20;
constexpr size_t kAlignment = 256;
constexpr int kElementwiseThreads = 256;
constexpr int kRowGradientItems = 4;
// 16-bit gradients are stored as factor * B * d loss / d logits, |value| <= factor: float16
// then keeps probabilities down to ~1e-8 in its normal range (B * d loss / d logits <= 1).
constexpr float kFloat16GradientFactor = 4096.0f;

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("info_nce_cuda: ") + what + ": " +
                             cudaGetErrorString(status));
}

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("info_nce_cuda: ") + what + ": " +
                             cublasGetStatusString(status));
}

void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }


cudaDataType_t cuda_type(CudaDtype dtype) {
  switch (dtype) {
    case CudaDtype::kFloat16: return CUDA_R_16F;
    case CudaDtype::kBFloat16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

void validate_shape(const InfoNceCudaShape& shape) {
  require(shape.num_queries >= 1, "info_nce_cuda needs at least one query, got ",
          shape.num_queries);
  require(shape.num_passages >= shape.num_queries, "info_nce_cuda needs at least as many passages (",
          shape.num_passages, ") as queries (", shape.num_queries, ")");
  require(shape.dim >= 1, "info_nce_cuda needs embedding dimension >= 1, got ", shape.dim);
  // cuBLAS takes int sizes; a 16-bit gradient row is addressed with stride 2 * M.
  require(shape.num_passages <= INT_MAX / 2 && shape.dim <= INT_MAX,
          "info_nce_cuda sizes must fit cuBLAS's 32-bit indices, got M = ", shape.num_passages,
          ", D = ", shape.dim);
  const int code = static_cast<int>(shape.dtype);
  require(code >= 0 && code <= 2, "info_nce_cuda dtype code must be 0 (float32), 1 (float16) ",
          "or 2 (bfloat16), got ", code);
  require(shape.block_rows >= 0, "block_rows must be >= 0, got ", shape.block_rows);
}

size_t aligned(size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

// Where each scratch array lives inside the workspace (byte offsets; absent arrays are empty).
struct Layout {
  size_t cublas = 0, constants = 0, sims = 0, row_top = 0, row_log_sum = 0, row_loss = 0,
         row_grad_scale = 0, col_top = 0, col_sum = 0, accumulator = 0, total = 0;
};

Layout layout_of(const InfoNceCudaShape& shape, int64_t block_rows) {
  const auto floats = [](int64_t n) { return aligned(static_cast<size_t>(n) * sizeof(float)); };
  const int64_t num_queries = shape.num_queries;
  const bool grads = shape.compute_gradients;
  Layout layout;
  size_t offset = 0;
  const auto take = [&offset](size_t bytes) {
    const size_t at = offset;
    offset += aligned(bytes);
    return at;
  };
  layout.cublas = take(kCublasWorkspaceBytes);
  layout.constants = take(sizeof(Constants));
  layout.sims = take(floats(block_rows * shape.num_passages));
  layout.row_top = take(floats(block_rows));
  layout.row_log_sum = take(floats(block_rows));
  layout.row_loss = take(floats(num_queries));
  layout.row_grad_scale = take(grads ? floats(num_queries) : 0);
  layout.col_top = take(shape.symmetric ? floats(num_queries) : 0);
  layout.col_sum = take(shape.symmetric ? floats(num_queries) : 0);
  const bool accumulate = grads && shape.dtype != CudaDtype::kFloat32;
  layout.accumulator = take(accumulate ? floats(shape.num_passages * shape.dim) : 0);
  layout.total = offset;
  return layout;
}

// Restores the calling thread's current device on exit.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check_cuda(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// One cuBLAS handle per host thread and device: a handle must not be reconfigured (stream,
// workspace) by two threads at once. Handles live as long as the thread; destroying them at
// exit can run after the CUDA driver has shut down.
cublasHandle_t handle_for(int device) {
  thread_local std::vector<cublasHandle_t> handles;
  if (static_cast<int>(handles.size()) <= device) handles.resize(device + 1, nullptr);
  if (handles[device] == nullptr) {
    check_cublas(cublasCreate(&handles[device]), "cublasCreate");
    // fp16/bf16 outputs must not be reduced in 16 bits inside split-K products.
    check_cublas(cublasSetMathMode(handles[device],
                                   static_cast<cublasMath_t>(
                                       CUBLAS_DEFAULT_MATH |
                                       CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)),
                 "cublasSetMathMode");
  }
  return handles[device];
}

// A raw address must be device memory of the call's device: a host or foreign address would
// otherwise be read or written by the kernels.
void require_device_pointer(uintptr_t address, int device, const char* name) {
  if (address == 0) return;
  cudaPointerAttributes attributes{};
  check_cuda(cudaPointerGetAttributes(&attributes, reinterpret_cast<const void*>(address)),
             "cudaPointerGetAttributes");
  const bool on_device = attributes.type == cudaMemoryTypeDevice ||
                         attributes.type == cudaMemoryTypeManaged;
  require(on_device && attributes.device == device, "info_nce_cuda: ", name,
          " is not device memory of CUDA device ", device);
}

void validate_buffers(const InfoNceCudaShape& shape, const InfoNceCudaBuffers& buffers,
                      size_t needed) {
  require(buffers.queries != 0 && buffers.passages != 0, "info_nce_cuda got a null input buffer");
  require(buffers.scale != 0 && buffers.result != 0, "info_nce_cuda needs scale and result buffers");
  require((buffers.query_groups == 0) == (buffers.passage_groups == 0),
          "query_groups and passage_groups must be given together");
  require(!shape.compute_gradients || (buffers.grad_queries != 0 && buffers.grad_passages != 0),
          "info_nce_cuda needs gradient buffers when computing gradients");
  require(buffers.workspace != 0 && buffers.workspace % kAlignment == 0,
          "info_nce_cuda needs a workspace aligned to ", kAlignment, " bytes");
  require(buffers.workspace_bytes >= needed, "info_nce_cuda needs a workspace of ", needed,
          " bytes, got ", buffers.workspace_bytes);
  require(buffers.device >= 0, "CUDA device must be >= 0, got ", buffers.device);
}

// C = alpha * op(A) op(B) + beta * C on row-major matrices (cuBLAS is column-major: the
// row-major product is computed as its transpose, C^T = op(B)^T op(A)^T); accumulation is
// float32.
struct Matrix {
  const void* data;
  cudaDataType_t type;
  int64_t ld;
};

// alpha and beta of one product: both in host memory, or both in device memory.
struct Scalars {
  const float* alpha;
  const float* beta;
  cublasPointerMode_t mode;
};

// A product that overwrites C takes its zero beta from the host, where cuBLAS knows before the
// launch that C is not read (uninitialised C may hold NaNs). Device scalars are only used with
// beta = 1 on initialised C, so no result depends on how a kernel treats a beta it reads as 0.
constexpr float kHostOne = 1.0f;
constexpr float kHostZero = 0.0f;
constexpr Scalars kOverwrite{&kHostOne, &kHostZero, CUBLAS_POINTER_MODE_HOST};

void gemm(cublasHandle_t handle, bool transpose_a, bool transpose_b, int64_t m, int64_t n,
          int64_t k, Scalars scalars, Matrix a, Matrix b, void* c, cudaDataType_t c_type,
          int64_t ldc, cublasComputeType_t compute) {
  if (m == 0 || n == 0) return;
  check_cublas(cublasSetPointerMode(handle, scalars.mode), "cublasSetPointerMode");
  const float* alpha = scalars.alpha;
  const float* beta = scalars.beta;
  check_cublas(cublasGemmEx(handle, transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                            transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(n),
                            static_cast<int>(m), static_cast<int>(k), alpha, b.data, b.type,
                            static_cast<int>(b.ld), a.data, a.type, static_cast<int>(a.ld), beta,
                            c, c_type, static_cast<int>(ldc), compute, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
}

int grid_for(int64_t n) {
  return static_cast<int>(std::clamp<int64_t>((n + kElementwiseThreads - 1) / kElementwiseThreads,
                                              1, 4096));
}

// The symmetric loss's column sums into their logs (any B: the kernel is grid-stride).
void take_column_logs(float* col_sum, int64_t num_queries, cudaStream_t stream) {
  HBT_LAUNCH(grid_for(num_queries), kElementwiseThreads, stream, cuda_loss::column_log_kernel)(
      col_sum, num_queries);
  check_launch("column_log_kernel");
}

// One call's state: typed views of the buffers and the workspace, and the steps of the
// algorithm. T is float, __half or __nv_bfloat16.
template <typename T>
class Run {
 public:
  Run(const InfoNceCudaShape& shape, const InfoNceCudaBuffers& buffers, int64_t block_rows,
      const Layout& layout, cublasHandle_t handle)
      : shape_(shape), buffers_(buffers), block_rows_(block_rows), handle_(handle),
        stream_(reinterpret_cast<cudaStream_t>(buffers.stream)) {
    char* workspace = reinterpret_cast<char*>(buffers.workspace);
    const auto at = [workspace](size_t offset) { return reinterpret_cast<float*>(workspace + offset); };
    cublas_workspace_ = workspace + layout.cublas;
    constants_ = reinterpret_cast<Constants*>(workspace + layout.constants);
    sims_ = at(layout.sims);
    row_top_ = at(layout.row_top);
    row_log_sum_ = at(layout.row_log_sum);
    row_loss_ = at(layout.row_loss);
    row_grad_scale_ = shape.compute_gradients ? at(layout.row_grad_scale) : nullptr;
    col_top_ = shape.symmetric ? at(layout.col_top) : nullptr;
    col_sum_ = shape.symmetric ? at(layout.col_sum) : nullptr;
    queries_ = reinterpret_cast<const T*>(buffers.queries);
    passages_ = reinterpret_cast<const T*>(buffers.passages);
    grad_queries_ = reinterpret_cast<T*>(buffers.grad_queries);
    grad_passages_ = reinterpret_cast<T*>(buffers.grad_passages);
    // float32 inputs accumulate straight into their gradient buffer.
    accumulator_ = shape.dtype == CudaDtype::kFloat32 ? reinterpret_cast<float*>(grad_passages_)
                                                      : at(layout.accumulator);
    mask_.query_groups = reinterpret_cast<const int64_t*>(buffers.query_groups);
    mask_.passage_groups = reinterpret_cast<const int64_t*>(buffers.passage_groups);
    scale_ = reinterpret_cast<const float*>(buffers.scale);
    factor_ = shape.dtype == CudaDtype::kFloat16 ? kFloat16GradientFactor : 1.0f;
    compute_ = shape.dtype == CudaDtype::kFloat32 && buffers.allow_tf32
                   ? CUBLAS_COMPUTE_32F_FAST_TF32
                   : CUBLAS_COMPUTE_32F;
  }

  void operator()() {
    check_cublas(cublasSetStream(handle_, stream_), "cublasSetStream");
    check_cublas(cublasSetWorkspace(handle_, cublas_workspace_, kCublasWorkspaceBytes),
                 "cublasSetWorkspace");
    prepare();
    if (shape_.symmetric) column_statistics();
    const int64_t num_blocks = (shape_.num_queries + block_rows_ - 1) / block_rows_;
    for (int64_t block = 0; block < num_blocks; ++block) row_block(block);
    finish();
  }

 private:
  int64_t rows_in(int64_t row0) const { return std::min(block_rows_, shape_.num_queries - row0); }
  int64_t sims_ld() const { return shape_.num_passages; }
  // The gradient of a block sits in the similarities' memory: same bytes per row, in T.
  int64_t grads_ld() const { return shape_.num_passages * static_cast<int64_t>(sizeof(float) / sizeof(T)); }
  Matrix input(const T* data) const { return {data, cuda_type(shape_.dtype), shape_.dim}; }

  void prepare() {
    const float inverse = 1.0f / (static_cast<float>(shape_.num_queries) * factor_);
    HBT_LAUNCH(1, 1, stream_, cuda_loss::prepare_constants_kernel)(scale_, inverse, constants_);
    check_launch("prepare_constants_kernel");
    const int64_t query_elements = shape_.num_queries * shape_.dim;
    const int64_t passage_elements = shape_.num_passages * shape_.dim;
    HBT_LAUNCH(grid_for(query_elements), kElementwiseThreads, stream_,
               cuda_loss::find_non_finite_kernel<T>)(queries_, query_elements,
                                                     &constants_->non_finite);
    check_launch("find_non_finite_kernel");
    HBT_LAUNCH(grid_for(passage_elements), kElementwiseThreads, stream_,
               cuda_loss::find_non_finite_kernel<T>)(passages_, passage_elements,
                                                     &constants_->non_finite);
    check_launch("find_non_finite_kernel");
    if (!shape_.compute_gradients) return;
    // The gradient products add into their outputs (see Scalars): both start at zero.
    check_cuda(cudaMemsetAsync(grad_queries_, 0, query_elements * sizeof(T), stream_),
               "cudaMemsetAsync");
    check_cuda(cudaMemsetAsync(accumulator_, 0, passage_elements * sizeof(float), stream_),
               "cudaMemsetAsync");
  }

  // sims[r, j] = <q[row0 + r], p[col0 + j]> for j < cols, written at column col0 of the block.
  void similarities(int64_t row0, int64_t rows, int64_t col0, int64_t cols) {
    gemm(handle_, false, true, rows, cols, shape_.dim, kOverwrite,
         input(queries_ + row0 * shape_.dim), input(passages_ + col0 * shape_.dim),
         sims_ + col0, CUDA_R_32F, sims_ld(), compute_);
  }

  // The symmetric loss's first B columns are one product of their own in both passes, so
  // both see bit-identical similarities (cuBLAS is deterministic for identical calls).
  void block_similarities(int64_t row0, int64_t rows) {
    if (shape_.symmetric) {
      similarities(row0, rows, 0, shape_.num_queries);
      similarities(row0, rows, shape_.num_queries, shape_.num_passages - shape_.num_queries);
    } else {
      similarities(row0, rows, 0, shape_.num_passages);
    }
  }

  void column_statistics() {
    const int64_t num_queries = shape_.num_queries;
    HBT_LAUNCH(grid_for(num_queries), kElementwiseThreads, stream_, cuda_loss::fill_kernel)(
        col_top_, num_queries, -std::numeric_limits<float>::infinity());
    check_launch("fill_kernel");
    check_cuda(cudaMemsetAsync(col_sum_, 0, num_queries * sizeof(float), stream_),
               "cudaMemsetAsync");
    const dim3 threads(cuda_loss::kColumnWidth, cuda_loss::kColumnSplit);
    const auto blocks = static_cast<unsigned>((num_queries + cuda_loss::kColumnWidth - 1) /
                                              cuda_loss::kColumnWidth);
    for (int64_t row0 = 0; row0 < num_queries; row0 += block_rows_) {
      const int64_t rows = rows_in(row0);
      similarities(row0, rows, 0, num_queries);
      HBT_LAUNCH(blocks, threads, stream_, cuda_loss::column_statistics_kernel)(
          sims_, sims_ld(), row0, rows, num_queries, mask_, scale_, col_top_, col_sum_);
      check_launch("column_statistics_kernel");
    }
    take_column_logs(col_sum_, num_queries, stream_);
  }

  void row_block(int64_t block) {
    const int64_t row0 = block * block_rows_;
    const int64_t rows = rows_in(row0);
    block_similarities(row0, rows);
    RowBlock params{sims_, sims_ld(), row0, shape_.num_queries, shape_.num_passages, mask_,
                    scale_, shape_.symmetric ? 0.5f : 1.0f, col_top_, col_sum_,
                    &constants_->non_finite};
    const auto grid = static_cast<unsigned>(rows);
    HBT_LAUNCH(grid, cuda_loss::kRowThreads, stream_, cuda_loss::row_statistics_kernel)(
        params, row_top_, row_log_sum_, row_loss_);
    check_launch("row_statistics_kernel");
    if (!shape_.compute_gradients) return;
    HBT_LAUNCH(grid, cuda_loss::kRowThreads, stream_,
               cuda_loss::row_gradient_kernel<T, kRowGradientItems>)(
        params, row_top_, row_log_sum_, factor_, row_grad_scale_);
    check_launch("row_gradient_kernel");
    const Matrix grads{sims_, cuda_type(shape_.dtype), grads_ld()};
    const Scalars accumulate{&constants_->grad_alpha, &constants_->one,
                             CUBLAS_POINTER_MODE_DEVICE};
    // dQ[block] = 0 + grad_alpha * G p, each row once.
    gemm(handle_, false, false, rows, shape_.dim, shape_.num_passages, accumulate, grads,
         input(passages_), grad_queries_ + row0 * shape_.dim, cuda_type(shape_.dtype),
         shape_.dim, compute_);
    // dP += grad_alpha * G^T q[block], accumulated over blocks in float32.
    gemm(handle_, true, false, shape_.num_passages, shape_.dim, rows, accumulate, grads,
         input(queries_ + row0 * shape_.dim), accumulator_, CUDA_R_32F, shape_.dim, compute_);
  }

  void finish() {
    HBT_LAUNCH(1, cuda_loss::kRowThreads, stream_, cuda_loss::finalize_kernel)(
        row_loss_, row_grad_scale_, shape_.num_queries, constants_,
        reinterpret_cast<float*>(buffers_.result));
    check_launch("finalize_kernel");
    if (!shape_.compute_gradients) return;
    const int64_t query_elements = shape_.num_queries * shape_.dim;
    const int64_t passage_elements = shape_.num_passages * shape_.dim;
    HBT_LAUNCH(grid_for(query_elements), kElementwiseThreads, stream_,
               cuda_loss::poison_gradient_kernel<T>)(grad_queries_, query_elements, constants_);
    check_launch("poison_gradient_kernel");
    if (shape_.dtype == CudaDtype::kFloat32) {
      HBT_LAUNCH(grid_for(passage_elements), kElementwiseThreads, stream_,
                 cuda_loss::poison_gradient_kernel<T>)(grad_passages_, passage_elements,
                                                       constants_);
      check_launch("poison_gradient_kernel");
    } else {
      HBT_LAUNCH(grid_for(passage_elements), kElementwiseThreads, stream_,
                 cuda_loss::store_gradient_kernel<T>)(accumulator_, grad_passages_,
                                                      passage_elements, constants_);
      check_launch("store_gradient_kernel");
    }
  }

  const InfoNceCudaShape& shape_;
  const InfoNceCudaBuffers& buffers_;
  int64_t block_rows_;
  cublasHandle_t handle_;
  cudaStream_t stream_;
  void* cublas_workspace_;
  Constants* constants_;
  float* sims_;
  float* row_top_;
  float* row_log_sum_;
  float* row_loss_;
  float* row_grad_scale_;
  float* col_top_;
  float* col_sum_;
  float* accumulator_;
  const T* queries_;
  const T* passages_;
  T* grad_queries_;
  T* grad_passages_;
  GroupMask mask_;
  const float* scale_;
  float factor_;
  cublasComputeType_t compute_;
};

}  // namespace

int64_t info_nce_cuda_block_rows(const InfoNceCudaShape& shape) {
  validate_shape(shape);
  int64_t rows = shape.block_rows;
  if (rows == 0) {
    rows = kSimilarityBudgetBytes / (shape.num_passages * static_cast<int64_t>(sizeof(float)));
    rows = std::max(kMinBlockRows, rows / kBlockRowsMultiple * kBlockRowsMultiple);
  }
  return std::clamp<int64_t>(rows, 1, shape.num_queries);
}

size_t info_nce_cuda_workspace_bytes(const InfoNceCudaShape& shape) {
  return layout_of(shape, info_nce_cuda_block_rows(shape)).total;
}

void info_nce_cuda(const InfoNceCudaShape& shape, const InfoNceCudaBuffers& buffers) {
  const int64_t block_rows = info_nce_cuda_block_rows(shape);
  const Layout layout = layout_of(shape, block_rows);
  validate_buffers(shape, buffers, layout.total);

  DeviceGuard guard(buffers.device);
  for (const auto& [address, name] :
       {std::pair{buffers.queries, "q"}, {buffers.passages, "p"},
        {buffers.query_groups, "query_groups"}, {buffers.passage_groups, "passage_groups"},
        {buffers.scale, "scale"}, {buffers.result, "result"}, {buffers.grad_queries, "grad_q"},
        {buffers.grad_passages, "grad_p"}, {buffers.workspace, "workspace"}})
    require_device_pointer(address, buffers.device, name);
  cublasHandle_t handle = handle_for(buffers.device);
  switch (shape.dtype) {
    case CudaDtype::kFloat16: Run<__half>(shape, buffers, block_rows, layout, handle)(); break;
    case CudaDtype::kBFloat16:
      Run<__nv_bfloat16>(shape, buffers, block_rows, layout, handle)();
      break;
    default: Run<float>(shape, buffers, block_rows, layout, handle)(); break;
  }
}

std::string cuda_runtime_problem() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // not sticky, but leave no error behind for the caller's next call
    return cudaGetErrorString(status);
  }
  return count > 0 ? std::string() : std::string("no CUDA device");
}

std::string info_nce_cuda_build_description() {
  const auto version = [](int v) {
    return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
  };
  std::string text = "CUDA runtime " + version(CUDART_VERSION) + " (static), cuBLAS " +
                     std::to_string(CUBLAS_VER_MAJOR) + "." + std::to_string(CUBLAS_VER_MINOR);
  int major = 0, minor = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(MINOR_VERSION, &minor) == CUBLAS_STATUS_SUCCESS)
    text += " (loaded " + std::to_string(major) + "." + std::to_string(minor) + ")";
  return text;
}

}  // namespace hbt
