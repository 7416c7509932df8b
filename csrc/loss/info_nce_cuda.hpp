#pragma once
// Fused InfoNCE loss on CUDA device buffers: the row-block algorithm of info_nce.hpp (same
// formula, masks, hard negatives and symmetric mode), with the matrix products on cuBLAS and
// the element-wise work in small kernels. Plain C++ header (no CUDA or Python headers), so the
// bindings compile without nvcc.
//
// Everything runs asynchronously on the caller's stream; nothing is allocated here: the caller
// provides the outputs and a workspace of info_nce_cuda_workspace_bytes() bytes (from its own
// caching allocator, so that memory accounting sees it). The logit scale is read from device
// memory, so a learnable temperature never forces a host synchronisation.
#include <cstddef>
#include <cstdint>
#include <string>

namespace hbt {

// Input element type. Every type accumulates in float32; similarities are kept in float32.
enum class CudaDtype : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

struct InfoNceCudaShape {
  int64_t num_queries = 0;   // B
  int64_t num_passages = 0;  // M >= B
  int64_t dim = 0;           // D
  CudaDtype dtype = CudaDtype::kFloat32;
  bool symmetric = false;
  bool compute_gradients = true;
  int64_t block_rows = 0;  // query rows per block; 0 picks it from a scratch-memory budget
};

// Device addresses (as integers from the caller) and where to run.
struct InfoNceCudaBuffers {
  uintptr_t queries = 0;         // [B, D] of dtype, row-major, contiguous
  uintptr_t passages = 0;        // [M, D] of dtype
  uintptr_t query_groups = 0;    // int64 [B], or 0 for no masking
  uintptr_t passage_groups = 0;  // int64 [M], given exactly when query_groups is
  uintptr_t scale = 0;           // float32 scalar: 1 / temperature
  uintptr_t result = 0;          // float32 [2]: loss, d loss / d scale (0 without gradients)
  uintptr_t grad_queries = 0;    // [B, D] of dtype, when computing gradients
  uintptr_t grad_passages = 0;   // [M, D] of dtype, when computing gradients
  uintptr_t workspace = 0;       // 256-byte aligned
  size_t workspace_bytes = 0;
  int device = 0;
  uintptr_t stream = 0;          // cudaStream_t; 0 is the legacy default stream
  bool allow_tf32 = false;       // float32 products may use TF32 tensor cores
};

// Rows per block the kernel will use for this shape.
int64_t info_nce_cuda_block_rows(const InfoNceCudaShape& shape);

// Workspace the call needs: O(block_rows * M + B) floats, plus an M x D float32 accumulator
// for the passages' gradient when dtype is 16-bit. Throws std::invalid_argument on bad shapes.
size_t info_nce_cuda_workspace_bytes(const InfoNceCudaShape& shape);

// Queues the loss (and gradients) on buffers.stream and returns without waiting. A NaN or inf
// in the inputs or the scale makes the loss, d loss / d scale and every gradient entry NaN.
// Throws std::invalid_argument on bad arguments (checked before any CUDA call) and
// std::runtime_error on CUDA or cuBLAS errors.
void info_nce_cuda(const InfoNceCudaShape& shape, const InfoNceCudaBuffers& buffers);

// Empty when the CUDA runtime linked into this module can use a device here, else why not
// (no driver, driver older than the runtime, no device).
std::string cuda_runtime_problem();

// What the module was built with: the CUDA runtime and cuBLAS versions (headers).
std::string info_nce_cuda_build_description();

}  // namespace hbt
