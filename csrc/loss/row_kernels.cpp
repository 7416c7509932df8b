#include "loss/row_kernels.hpp"

#include <cmath>
#include <cstring>
#include <limits>

// One build serves every x86-64 CPU: the compiler emits AVX-512, AVX2 and baseline copies of
// each float kernel and the loader picks one at start-up (no -march=native in the wheel).
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define HBT_CPU_DISPATCH __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HBT_CPU_DISPATCH
#endif

#if defined(__GNUC__)
#define HBT_INLINE inline __attribute__((always_inline))
#else
#define HBT_INLINE inline
#endif

namespace hbt::loss_detail {
namespace {

// exp for float that the compiler can vectorise (std::exp is a library call): Cephes' expf,
// relative error below 2e-7. Inputs are clamped to the normal range: the values used are
// x <= ~0, where the clamp only turns underflow into a negligible 1e-38 (not 0), and under
// `omp simd` a masked entry's exponential is computed too and then discarded, whatever its
// value; the clamp keeps it defined. NaN stays NaN (it comes from similarities that
// overflowed to inf, and must reach the loss).
HBT_INLINE float vector_exp(float x) {
  // The clamp also keeps the float -> int conversion below defined; a NaN is passed through.
  const float clamped = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  const float y = clamped == clamped ? clamped : 0.0f;
  const float n = (y * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(y / ln 2)
  const float r = y - n * 0.693359375f + n * 2.12194440e-4f;
  float poly = 1.9875691500e-4f;
  poly = poly * r + 1.3981999507e-3f;
  poly = poly * r + 8.3334519073e-3f;
  poly = poly * r + 4.1665795894e-2f;
  poly = poly * r + 1.6666665459e-1f;
  poly = poly * r + 5.0000001201e-1f;
  poly = poly * r * r + r + 1.0f;
  const int32_t exponent_bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_to_n;
  std::memcpy(&two_to_n, &exponent_bits, sizeof two_to_n);
  return x == x ? poly * two_to_n : x;
}

HBT_INLINE double vector_exp(double x) { return std::exp(x); }

template <typename T>
constexpr T kMinusInf = -std::numeric_limits<T>::infinity();

template <bool kMasked>
HBT_INLINE bool is_masked(const RowMask& mask, int64_t j) {
  return kMasked && mask.passage_groups[j] == mask.query_group && j != mask.positive;
}

// The largest unmasked similarity of a row (the positive is never masked, so it is finite for
// finite inputs).
template <typename T, bool kMasked>
HBT_INLINE T row_max(const T* sims, int64_t n, const RowMask& mask) {
  T top = kMinusInf<T>;
#pragma omp simd reduction(max : top)
  for (int64_t j = 0; j < n; ++j) {
    const T value = is_masked<kMasked>(mask, j) ? kMinusInf<T> : sims[j];
    top = value > top ? value : top;
  }
  return top;
}

template <typename T, bool kMasked>
HBT_INLINE LogSumExp<T> row_log_sum_exp_impl(const T* sims, int64_t n, T scale,
                                             const RowMask& mask) {
  const T top = row_max<T, kMasked>(sims, n, mask);
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    const T term = vector_exp(scale * (sims[j] - top));
    sum += is_masked<kMasked>(mask, j) ? T(0) : term;
  }
  return {top, std::log(sum)};
}

template <typename T, bool kMasked, bool kColumns>
HBT_INLINE T row_gradient_range(T* sims, int64_t begin, int64_t end, T scale, LogSumExp<T> row,
                                T row_weight, const RowMask& mask,
                                const ColumnLogSumExp<T>& cols) {
  T grad_scale = 0;
#pragma omp simd reduction(+ : grad_scale)
  for (int64_t j = begin; j < end; ++j) {
    const bool masked = is_masked<kMasked>(mask, j);
    const T target = j == mask.positive ? T(1) : T(0);
    const T row_prob = masked ? T(0) : vector_exp(scale * (sims[j] - row.top) - row.log_sum);
    const T row_grad = row_weight * (row_prob - target);
    // d loss / d scale taken relative to each softmax's top (the row's, and the column's):
    // the same sum, since each softmax's gradient sums to zero, but without terms ~1 that
    // cancel down to its size when the softmax sits on the positive.
    T scale_term = row_grad * (sims[j] - row.top);
    T grad = row_grad;
    if constexpr (kColumns) {
      const T col_prob =
          masked ? T(0) : vector_exp(scale * (sims[j] - cols.top[j]) - cols.log_sum[j]);
      const T col_grad = cols.weight * (col_prob - target);
      scale_term += col_grad * (sims[j] - cols.top[j]);
      grad += col_grad;
    }
    grad_scale += scale_term;
    sims[j] = grad;
  }
  return grad_scale;
}

template <typename T, bool kMasked>
HBT_INLINE T row_gradient_impl(T* sims, int64_t n, T scale, LogSumExp<T> row, T row_weight,
                               const RowMask& mask, const ColumnLogSumExp<T>& cols) {
  return row_gradient_range<T, kMasked, true>(sims, 0, cols.num_cols, scale, row, row_weight,
                                              mask, cols) +
         row_gradient_range<T, kMasked, false>(sims, cols.num_cols, n, scale, row, row_weight,
                                               mask, cols);
}

template <typename T, bool kMasked>
HBT_INLINE RowLoss<T> row_loss_and_gradient_impl(T* sims, int64_t n, T scale, T row_weight,
                                                 const RowMask& mask) {
  const T top = row_max<T, kMasked>(sims, n, mask);
  const T positive_gap = sims[mask.positive] - top;
  // sum_j e_j (s_j - top) with e_j = exp(scale (s_j - top)): d loss / d scale relative to top,
  // which keeps its digits when the softmax sits on the positive.
  T sum = 0;
  T weighted_gap = 0;
#pragma omp simd reduction(+ : sum, weighted_gap)
  for (int64_t j = 0; j < n; ++j) {
    const T gap = sims[j] - top;
    const T term = is_masked<kMasked>(mask, j) ? T(0) : vector_exp(scale * gap);
    sum += term;
    weighted_gap += term * gap;
    sims[j] = term;
  }
  const T to_gradient = row_weight / sum;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) sims[j] *= to_gradient;
  sims[mask.positive] -= row_weight;
  return {row_weight * (std::log(sum) - scale * positive_gap),
          row_weight * (weighted_gap / sum - positive_gap)};
}

template <typename T, bool kMasked>
HBT_INLINE void column_max_impl(const T* sims, int64_t n, const RowMask& mask, T* col_max) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T value = is_masked<kMasked>(mask, j) ? kMinusInf<T> : sims[j];
    col_max[j] = value > col_max[j] ? value : col_max[j];
  }
}

template <typename T, bool kMasked>
HBT_INLINE void column_sum_impl(const T* sims, int64_t n, T scale, const RowMask& mask,
                                const T* col_max, T* col_sum) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T term = vector_exp(scale * (sims[j] - col_max[j]));
    col_sum[j] += is_masked<kMasked>(mask, j) ? T(0) : term;
  }
}

template <typename Bits, typename T>
HBT_INLINE bool all_finite_impl(const T* values, int64_t n, Bits exponent_mask) {
  Bits non_finite = 0;
#pragma omp simd reduction(| : non_finite)
  for (int64_t i = 0; i < n; ++i) {
    Bits bits;
    std::memcpy(&bits, &values[i], sizeof bits);
    non_finite |= static_cast<Bits>((bits & exponent_mask) == exponent_mask);
  }
  return non_finite == 0;
}

}  // namespace

HBT_CPU_DISPATCH LogSumExp<float> row_log_sum_exp(const float* sims, int64_t n, float scale,
                                                  const RowMask& mask) {
  return mask.passage_groups ? row_log_sum_exp_impl<float, true>(sims, n, scale, mask)
                             : row_log_sum_exp_impl<float, false>(sims, n, scale, mask);
}
LogSumExp<double> row_log_sum_exp(const double* sims, int64_t n, double scale,
                                  const RowMask& mask) {
  return mask.passage_groups ? row_log_sum_exp_impl<double, true>(sims, n, scale, mask)
                             : row_log_sum_exp_impl<double, false>(sims, n, scale, mask);
}

HBT_CPU_DISPATCH float row_gradient(float* sims, int64_t n, float scale, LogSumExp<float> row,
                                    float row_weight, const RowMask& mask,
                                    const ColumnLogSumExp<float>& cols) {
  return mask.passage_groups
             ? row_gradient_impl<float, true>(sims, n, scale, row, row_weight, mask, cols)
             : row_gradient_impl<float, false>(sims, n, scale, row, row_weight, mask, cols);
}
double row_gradient(double* sims, int64_t n, double scale, LogSumExp<double> row,
                    double row_weight, const RowMask& mask, const ColumnLogSumExp<double>& cols) {
  return mask.passage_groups
             ? row_gradient_impl<double, true>(sims, n, scale, row, row_weight, mask, cols)
             : row_gradient_impl<double, false>(sims, n, scale, row, row_weight, mask, cols);
}

HBT_CPU_DISPATCH RowLoss<float> row_loss_and_gradient(float* sims, int64_t n, float scale,
                                                      float row_weight, const RowMask& mask) {
  return mask.passage_groups
             ? row_loss_and_gradient_impl<float, true>(sims, n, scale, row_weight, mask)
             : row_loss_and_gradient_impl<float, false>(sims, n, scale, row_weight, mask);
}
RowLoss<double> row_loss_and_gradient(double* sims, int64_t n, double scale, double row_weight,
                                      const RowMask& mask) {
  return mask.passage_groups
             ? row_loss_and_gradient_impl<double, true>(sims, n, scale, row_weight, mask)
             : row_loss_and_gradient_impl<double, false>(sims, n, scale, row_weight, mask);
}

HBT_CPU_DISPATCH void column_max_update(const float* sims, int64_t n, const RowMask& mask,
                                        float* col_max) {
  mask.passage_groups ? column_max_impl<float, true>(sims, n, mask, col_max)
                      : column_max_impl<float, false>(sims, n, mask, col_max);
}
void column_max_update(const double* sims, int64_t n, const RowMask& mask, double* col_max) {
  mask.passage_groups ? column_max_impl<double, true>(sims, n, mask, col_max)
                      : column_max_impl<double, false>(sims, n, mask, col_max);
}

HBT_CPU_DISPATCH void column_sum_update(const float* sims, int64_t n, float scale,
                                        const RowMask& mask, const float* col_max,
                                        float* col_sum) {
  mask.passage_groups ? column_sum_impl<float, true>(sims, n, scale, mask, col_max, col_sum)
                      : column_sum_impl<float, false>(sims, n, scale, mask, col_max, col_sum);
}
void column_sum_update(const double* sims, int64_t n, double scale, const RowMask& mask,
                       const double* col_max, double* col_sum) {
  mask.passage_groups ? column_sum_impl<double, true>(sims, n, scale, mask, col_max, col_sum)
                      : column_sum_impl<double, false>(sims, n, scale, mask, col_max, col_sum);
}

HBT_CPU_DISPATCH bool all_finite(const float* values, int64_t n) {
  return all_finite_impl<uint32_t>(values, n, 0x7f800000u);
}
bool all_finite(const double* values, int64_t n) {
  return all_finite_impl<uint64_t>(values, n, 0x7ff0000000000000ull);
}

}  // namespace hbt::loss_detail
