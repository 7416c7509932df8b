// A host cuBLAS for the emulator: the handle calls info_nce_cuda.cu makes and cublasGemmEx,
// written from cuBLAS's specification (column-major; C = alpha op(A) op(B) + beta C, op(X) = X
// or X^T, "if beta == 0, C does not have to be a valid input"), not from the code under test.
// Every operand must lie inside device memory (as the emulator's allocations define it), and
// argument errors return the statuses cuBLAS documents.
#include "cublas_stub.hpp"

#include <cublas_v2.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "cuda_emulation.hpp"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
};

namespace hbt_emu {
namespace {
BetaZero beta_zero_mode = BetaZero::kPessimistic;

size_t element_bytes(cudaDataType_t type) { return type == CUDA_R_32F ? 4 : 2; }

float load(const void* base, cudaDataType_t type, int64_t index) {
  switch (type) {
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(base)[index]);
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[index]);
    default: return static_cast<const float*>(base)[index];
  }
}

void store(void* base, cudaDataType_t type, int64_t index, float value) {
  switch (type) {
    case CUDA_R_16F: static_cast<__half*>(base)[index] = __float2half_rn(value); break;
    case CUDA_R_16BF:
      static_cast<__nv_bfloat16*>(base)[index] = __float2bfloat16_rn(value);
      break;
    default: static_cast<float*>(base)[index] = value;
  }
}

// A column-major rows x cols matrix with leading dimension ld must lie in device memory.
void require_matrix(const void* data, cudaDataType_t type, int rows, int cols, int ld,
                    const char* what) {
  if (rows == 0 || cols == 0) return;
  const size_t elements = static_cast<size_t>(cols - 1) * ld + rows;
  require_device_range(data, elements * element_bytes(type), what);
}

float scalar(const void* pointer, cublasPointerMode_t mode, const char* what) {
  if (mode == CUBLAS_POINTER_MODE_DEVICE) require_device_range(pointer, sizeof(float), what);
  return *static_cast<const float*>(pointer);
}
}  // namespace

void set_beta_zero_mode(BetaZero mode) { beta_zero_mode = mode; }
}  // namespace hbt_emu

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t, void* workspace, size_t bytes) {
  // cuBLAS requires 256-byte alignment of a user workspace.
  if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (bytes > 0) hbt_emu::require_device_range(workspace, bytes, "cublasSetWorkspace");
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode) {
  handle->pointer_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }

const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN (emulated)";
  }
}

cublasStatus_t cublasGetProperty(libraryPropertyType type, int* value) {
  *value = type == MAJOR_VERSION ? CUBLAS_VER_MAJOR : CUBLAS_VER_MINOR;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t) {
  const bool a_transposed = transa != CUBLAS_OP_N;
  const bool b_transposed = transb != CUBLAS_OP_N;
  // Stored shapes: A is m x k (k x m transposed), B is k x n (n x k transposed), C is m x n.
  const int a_rows = a_transposed ? k : m, a_cols = a_transposed ? m : k;
  const int b_rows = b_transposed ? n : k, b_cols = b_transposed ? k : n;
  if (m < 0 || n < 0 || k < 0 || lda < std::max(1, a_rows) || ldb < std::max(1, b_rows) ||
      ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  const bool types_supported =
      Atype == Btype &&
      ((Atype == CUDA_R_32F && Ctype == CUDA_R_32F &&
        (computeType == CUBLAS_COMPUTE_32F || computeType == CUBLAS_COMPUTE_32F_FAST_TF32)) ||
       ((Atype == CUDA_R_16F || Atype == CUDA_R_16BF) &&
        (Ctype == Atype || Ctype == CUDA_R_32F) && computeType == CUBLAS_COMPUTE_32F));
  if (!types_supported) return CUBLAS_STATUS_NOT_SUPPORTED;
  hbt_emu::record_stream(handle->stream);
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const float alpha_value = hbt_emu::scalar(alpha, handle->pointer_mode, "cublasGemmEx alpha");
  const float beta_value = hbt_emu::scalar(beta, handle->pointer_mode, "cublasGemmEx beta");
  hbt_emu::require_matrix(A, Atype, a_rows, a_cols, lda, "cublasGemmEx A");
  hbt_emu::require_matrix(B, Btype, b_rows, b_cols, ldb, "cublasGemmEx B");
  hbt_emu::require_matrix(C, Ctype, m, n, ldc, "cublasGemmEx C");
  // beta == 0: C need not be valid. Pessimistic: C holds NaN first, and a beta read from the
  // device is applied as it is (0 * NaN = NaN), as if the kernel read C before seeing beta.
  bool read_c = beta_value != 0.0f;
  if (beta_value == 0.0f && hbt_emu::beta_zero_mode == hbt_emu::BetaZero::kPessimistic) {
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i)
        hbt_emu::store(C, Ctype, static_cast<int64_t>(j) * ldc + i,
                       std::numeric_limits<float>::quiet_NaN());
    read_c = handle->pointer_mode == CUBLAS_POINTER_MODE_DEVICE;
  }
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      float sum = 0.0f;
      for (int l = 0; l < k; ++l) {
        const int64_t a_index = a_transposed ? static_cast<int64_t>(i) * lda + l
                                             : static_cast<int64_t>(l) * lda + i;
        const int64_t b_index = b_transposed ? static_cast<int64_t>(l) * ldb + j
                                             : static_cast<int64_t>(j) * ldb + l;
        sum += hbt_emu::load(A, Atype, a_index) * hbt_emu::load(B, Btype, b_index);
      }
      const int64_t c_index = static_cast<int64_t>(j) * ldc + i;
      float value = alpha_value * sum;
      if (read_c) value += beta_value * hbt_emu::load(C, Ctype, c_index);
      hbt_emu::store(C, Ctype, c_index, value);
    }
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
