#pragma once
// Element-wise work on one row of a similarity block: the part of the fused InfoNCE loss that
// is not a matrix product. The float versions are vectorised and dispatched at run time on the
// CPU's instruction set (AVX-512 / AVX2 / baseline); the double versions are plain loops.
#include <cstdint>

namespace hbt::loss_detail {

// Which columns of a query's row are excluded: passages of the query's own group other than
// its positive (false negatives). Null passage_groups excludes nothing.
struct RowMask {
  const int64_t* passage_groups = nullptr;
  int64_t query_group = 0;
  int64_t positive = 0;
};

// A log-sum-exp of logits scale * s_j kept as scale * top + log_sum, top the largest s_j:
// probabilities are then exp(scale * (s_j - top) - log_sum), whose difference s_j - top is
// exact for close values, where exp(logit_j - lse) would lose digits to large logits.
template <typename T>
struct LogSumExp {
  T top;
  T log_sum;
};

// Of the unmasked entries of a row of raw similarities (logits / scale).
LogSumExp<float> row_log_sum_exp(const float* sims, int64_t n, float scale, const RowMask& mask);
LogSumExp<double> row_log_sum_exp(const double* sims, int64_t n, double scale,
                                  const RowMask& mask);

// Column statistics of the symmetric loss: col_top[j], col_log_sum[j] for j < num_cols.
template <typename T>
struct ColumnLogSumExp {
  const T* top = nullptr;
  const T* log_sum = nullptr;
  int64_t num_cols = 0;
  T weight = 0;
};

// Overwrites sims with the gradient of the loss with respect to this row's logits,
//   g_j = row_weight * (softmax_row_j - y_j) + cols.weight * (softmax_col_j - y_j)  (j < num_cols)
// with y the positive's indicator; returns sum_j g_j * sims_j (the row's share of
// d loss / d scale).
float row_gradient(float* sims, int64_t n, float scale, LogSumExp<float> row, float row_weight,
                   const RowMask& mask, const ColumnLogSumExp<float>& cols);
double row_gradient(double* sims, int64_t n, double scale, LogSumExp<double> row,
                    double row_weight, const RowMask& mask, const ColumnLogSumExp<double>& cols);

// The loss and gradient of one row of the one-directional loss (no column terms) in one
// exponential per entry: exp(scale * (s_j - top)) is stored in place and rescaled, where
// row_log_sum_exp + row_gradient compute it twice. Overwrites sims with the gradient of the
// loss with respect to the row's logits, row_weight * (softmax_row_j - y_j), and returns
// row_weight * (log sum_j exp(logit_j) - logit_positive) and the row's share of
// d loss / d scale, row_weight * sum_j (softmax_row_j - y_j) * s_j.
template <typename T>
struct RowLoss {
  T loss;
  T grad_scale;
};
RowLoss<float> row_loss_and_gradient(float* sims, int64_t n, float scale, float row_weight,
                                     const RowMask& mask);
RowLoss<double> row_loss_and_gradient(double* sims, int64_t n, double scale, double row_weight,
                                      const RowMask& mask);

// Column statistics for the symmetric loss, one row at a time: col_max[j] = max(col_max[j],
// sims[j]) over unmasked entries, then col_sum[j] += exp(scale * (sims[j] - col_max[j])).
void column_max_update(const float* sims, int64_t n, const RowMask& mask, float* col_max);
void column_max_update(const double* sims, int64_t n, const RowMask& mask, double* col_max);
void column_sum_update(const float* sims, int64_t n, float scale, const RowMask& mask,
                       const float* col_max, float* col_sum);
void column_sum_update(const double* sims, int64_t n, double scale, const RowMask& mask,
                       const double* col_max, double* col_sum);

bool all_finite(const float* values, int64_t n);
bool all_finite(const double* values, int64_t n);

}  // namespace hbt::loss_detail
