#pragma once
// Row-major GEMM on OpenBLAS from the scipy-openblas32 wheel (symbols prefixed scipy_, 32-bit
// integers). The fused loss runs it single-threaded inside its OpenMP row-block threads.
#include <cblas.h>

#include <cstdint>
#include <mutex>

namespace hbt::loss_detail {

// C = alpha * op(A) op(B) + beta * C, all row-major.
inline void gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                 float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                 float beta, float* c, int64_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
                    transpose_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
                    static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
                    static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
                    static_cast<blasint>(ldc));
}

inline void gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                 double alpha, const double* a, int64_t lda, const double* b, int64_t ldb,
                 double beta, double* c, int64_t ldc) {
  scipy_cblas_dgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
                    transpose_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
                    static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
                    static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
                    static_cast<blasint>(ldc));
}

// This OpenBLAS copy belongs to hbt_fast alone; the loss threads over row blocks itself (each
// thread's products then stay large, and the element-wise work is parallel too), so the
// library's own pool is switched off once instead of oversubscribing the cores.
inline void use_single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] { scipy_openblas_set_num_threads(1); });
}

// Largest dimension the 32-bit BLAS interface takes.
constexpr int64_t kMaxBlasDim = 2147483647;

}  // namespace hbt::loss_detail
