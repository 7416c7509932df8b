#include "loss/info_nce.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "common/check.hpp"
#include "loss/blas.hpp"
#include "loss/row_kernels.hpp"

namespace hbt {
namespace {

using loss_detail::ColumnLogSumExp;
using loss_detail::LogSumExp;
using loss_detail::RowMask;

// A block's similarities stay within this many bytes per thread; blocks are never thinner
// than kMinBlockRows rows, below which the products lose BLAS efficiency.
constexpr int64_t kScratchBytesPerThread = int64_t{32} << 20;
constexpr int64_t kMinBlockRows = 128;

void validate(const InfoNceInputs& in, const InfoNceOptions& options, const void* queries,
              const void* passages, const void* grad_queries, const void* grad_passages) {
  require(in.num_queries >= 1, "info_nce needs at least one query, got ", in.num_queries);
  require(in.num_passages >= in.num_queries, "info_nce needs at least as many passages (",
          in.num_passages, ") as queries (", in.num_queries, ")");
  require(in.dim >= 1, "info_nce needs embedding dimension >= 1, got ", in.dim);
  require(in.num_passages <= loss_detail::kMaxBlasDim && in.dim <= loss_detail::kMaxBlasDim,
          "info_nce sizes must fit 32-bit BLAS indices");
  require(queries != nullptr && passages != nullptr, "info_nce got a null input buffer");
  require((in.query_groups == nullptr) == (in.passage_groups == nullptr),
          "query_groups and passage_groups must be given together");
  require(std::isfinite(options.scale) && options.scale > 0,
          "info_nce scale (1 / temperature) must be finite and > 0, got ", options.scale);
  require(options.num_threads >= 1, "num_threads must be >= 1, got ", options.num_threads);
  require(options.block_rows >= 0, "block_rows must be >= 0, got ", options.block_rows);
  require(!options.compute_gradients || (grad_queries != nullptr && grad_passages != nullptr),
          "info_nce needs gradient buffers when computing gradients");
}

int64_t choose_block_rows(const InfoNceInputs& in, const InfoNceOptions& options,
                          size_t element_size) {
  int64_t rows = options.block_rows;
  if (rows == 0) {
    const int64_t row_bytes = in.num_passages * static_cast<int64_t>(element_size);
    rows = std::max(kMinBlockRows, kScratchBytesPerThread / row_bytes);
    // Every thread gets a block even for small batches.
    rows = std::min(rows, (in.num_queries + options.num_threads - 1) / options.num_threads);
  }
  return std::clamp<int64_t>(rows, 1, in.num_queries);
}

// Runs work(thread, block) for every block; thread t takes blocks t, t + threads, ... so that
// every result, summation order included, is the same from run to run.
template <typename Work>
void for_each_block(int num_threads, int64_t num_blocks, const Work& work) {
  auto run_thread = [&](int thread) {
    for (int64_t block = thread; block < num_blocks; block += num_threads) work(thread, block);
  };
  std::vector<std::thread> helpers;
  helpers.reserve(num_threads - 1);
  for (int thread = 1; thread < num_threads; ++thread) helpers.emplace_back(run_thread, thread);
  run_thread(0);
  for (auto& helper : helpers) helper.join();
}

// sims[r * stride + j] = <queries[r], passages[j]> for r < rows, j < cols.
template <typename T>
void similarities(const T* queries, int64_t rows, const T* passages, int64_t cols, int64_t dim,
                  T* sims, int64_t stride) {
  if (cols > 0)
    loss_detail::gemm(false, true, rows, cols, dim, T(1), queries, dim, passages, dim, T(0), sims,
                      stride);
}

RowMask row_mask(const InfoNceInputs& in, int64_t row) {
  RowMask mask;
  mask.positive = row;
  if (in.query_groups != nullptr) {
    mask.passage_groups = in.passage_groups;
    mask.query_group = in.query_groups[row];
  }
  return mask;
}

// Shared shape of a run: how the B query rows are cut into blocks and spread over threads.
struct BlockPlan {
  int64_t block_rows;
  int64_t num_blocks;
  int num_threads;

  int64_t first_row(int64_t block) const { return block * block_rows; }
  int64_t rows_in(int64_t block, int64_t num_queries) const {
    return std::min(block_rows, num_queries - first_row(block));
  }
};

// Column statistics of the symmetric loss: top and log_sum (see LogSumExp) of each column of
// the B x B logits block (queries against the first B passages).
template <typename T>
struct ColumnStatistics {
  std::vector<T> top;
  std::vector<T> log_sum;
};

// One pass over row blocks; each thread keeps a running (max, sum of exp(scale * (s - max)))
// per column, rescaled when a block raises the max; the threads' partials are merged at the end.
template <typename T>
ColumnStatistics<T> column_log_sum_exp(const T* queries, const T* passages, const InfoNceInputs& in,
                                  T scale, const BlockPlan& plan,
                                  std::vector<std::vector<T>>& tiles) {
  const int64_t cols = in.num_queries;
  const int64_t dim = in.dim;
  constexpr T kMinusInf = -std::numeric_limits<T>::infinity();
  std::vector<std::vector<T>> running_max(plan.num_threads, std::vector<T>(cols, kMinusInf));
  std::vector<std::vector<T>> running_sum(plan.num_threads, std::vector<T>(cols, T(0)));
  std::vector<std::vector<T>> block_max(plan.num_threads, std::vector<T>(cols));

  for_each_block(plan.num_threads, plan.num_blocks, [&](int thread, int64_t block) {
    const int64_t row0 = plan.first_row(block);
    const int64_t rows = plan.rows_in(block, in.num_queries);
    // Laid out as in the main pass, so both passes see bit-identical similarities.
    const int64_t stride = in.num_passages;
    T* sims = tiles[thread].data();
    similarities(queries + row0 * dim, rows, passages, cols, dim, sims, stride);
    T* top = block_max[thread].data();
    T* max = running_max[thread].data();
    T* sum = running_sum[thread].data();
    std::fill(top, top + cols, kMinusInf);
    for (int64_t r = 0; r < rows; ++r)
      loss_detail::column_max_update(sims + r * stride, cols, row_mask(in, row0 + r), top);
    for (int64_t j = 0; j < cols; ++j) {
      const T raised = std::max(max[j], top[j]);
      if (raised != kMinusInf) sum[j] *= std::exp(scale * (max[j] - raised));
      max[j] = raised;
    }
    for (int64_t r = 0; r < rows; ++r)
      loss_detail::column_sum_update(sims + r * stride, cols, scale, row_mask(in, row0 + r), max,
                                     sum);
  });

  // Every column holds its unmasked diagonal, so some thread saw a finite max for it.
  ColumnStatistics<T> stats{std::vector<T>(cols), std::vector<T>(cols)};
  for (int64_t j = 0; j < cols; ++j) {
    T top = kMinusInf;
    for (int t = 0; t < plan.num_threads; ++t) top = std::max(top, running_max[t][j]);
    T total = 0;
    for (int t = 0; t < plan.num_threads; ++t)
      if (running_max[t][j] != kMinusInf)
        total += running_sum[t][j] * std::exp(scale * (running_max[t][j] - top));
    stats.top[j] = top;
    stats.log_sum[j] = std::log(total);
  }
  return stats;
}

template <typename T>
InfoNceResult non_finite_result(const InfoNceInputs& in, const InfoNceOptions& options,
                                T* grad_queries, T* grad_passages) {
  constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();
  InfoNceResult result;
  result.loss = std::numeric_limits<double>::quiet_NaN();
  if (options.compute_gradients) {
    result.grad_scale = result.loss;
    std::fill(grad_queries, grad_queries + in.num_queries * in.dim, kNaN);
    std::fill(grad_passages, grad_passages + in.num_passages * in.dim, kNaN);
  }
  return result;
}

}  // namespace

template <typename T>
InfoNceResult info_nce(const T* queries, const T* passages, const InfoNceInputs& in,
                       const InfoNceOptions& options, T* grad_queries, T* grad_passages) {
  validate(in, options, queries, passages, grad_queries, grad_passages);
  const int64_t num_queries = in.num_queries;
  const int64_t num_passages = in.num_passages;
  const int64_t dim = in.dim;
  if (!loss_detail::all_finite(queries, num_queries * dim) ||
      !loss_detail::all_finite(passages, num_passages * dim))
    return non_finite_result(in, options, grad_queries, grad_passages);
  loss_detail::use_single_threaded_blas();

  BlockPlan plan;
  plan.block_rows = choose_block_rows(in, options, sizeof(T));
  plan.num_blocks = (num_queries + plan.block_rows - 1) / plan.block_rows;
  plan.num_threads = static_cast<int>(std::min<int64_t>(options.num_threads, plan.num_blocks));

  // All memory is taken here, before any thread starts, so an allocation failure surfaces as
  // an ordinary exception.
  std::vector<std::vector<T>> tiles(plan.num_threads,
                                    std::vector<T>(plan.block_rows * num_passages));
  const bool grads = options.compute_gradients;
  std::vector<std::vector<T>> helper_grad_passages(
      grads ? plan.num_threads - 1 : 0, std::vector<T>(num_passages * dim, T(0)));
  if (grads) std::fill(grad_passages, grad_passages + num_passages * dim, T(0));

  const T scale = static_cast<T>(options.scale);
  const bool symmetric = options.symmetric;
  ColumnStatistics<T> col_stats;
  if (symmetric) col_stats = column_log_sum_exp(queries, passages, in, scale, plan, tiles);
  const T row_weight = T(symmetric ? 0.5 : 1.0) / static_cast<T>(num_queries);
  ColumnLogSumExp<T> cols;
  if (symmetric) {
    cols.top = col_stats.top.data();
    cols.log_sum = col_stats.log_sum.data();
    cols.num_cols = num_queries;
    cols.weight = row_weight;
  }

  std::vector<double> thread_loss(plan.num_threads, 0.0);
  std::vector<double> thread_grad_scale(plan.num_threads, 0.0);
  for_each_block(plan.num_threads, plan.num_blocks, [&](int thread, int64_t block) {
    const int64_t row0 = plan.first_row(block);
    const int64_t rows = plan.rows_in(block, num_queries);
    const T* block_queries = queries + row0 * dim;
    T* sims = tiles[thread].data();
    if (symmetric) {  // the first B columns exactly as the column statistics saw them
      similarities(block_queries, rows, passages, num_queries, dim, sims, num_passages);
      similarities(block_queries, rows, passages + num_queries * dim, num_passages - num_queries,
                   dim, sims + num_queries, num_passages);
    } else {
      similarities(block_queries, rows, passages, num_passages, dim, sims, num_passages);
    }
    double loss = 0.0;
    double grad_scale = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = row0 + r;
      T* row_sims = sims + r * num_passages;
      const RowMask mask = row_mask(in, row);
      const LogSumExp<T> row_lse =
          loss_detail::row_log_sum_exp(row_sims, num_passages, scale, mask);
      const T positive = row_sims[row];
      loss += row_weight * (scale * (row_lse.top - positive) + row_lse.log_sum);
      if (symmetric)
        loss += cols.weight * (scale * (cols.top[row] - positive) + cols.log_sum[row]);
      if (grads)
        grad_scale += loss_detail::row_gradient(row_sims, num_passages, scale, row_lse,
                                                row_weight, mask, cols);
    }
    thread_loss[thread] += loss;
    thread_grad_scale[thread] += grad_scale;
    if (!grads) return;
    // sims now holds d loss / d logits; logits = scale * q p^T.
    loss_detail::gemm(false, false, rows, dim, num_passages, scale, sims, num_passages, passages,
                      dim, T(0), grad_queries + row0 * dim, dim);
    T* thread_grad_passages =
        thread == 0 ? grad_passages : helper_grad_passages[thread - 1].data();
    loss_detail::gemm(true, false, num_passages, dim, rows, scale, sims, num_passages,
                      block_queries, dim, T(1), thread_grad_passages, dim);
  });

  for (const auto& partial : helper_grad_passages)
    for (int64_t i = 0; i < num_passages * dim; ++i) grad_passages[i] += partial[i];
  InfoNceResult result;
  for (int t = 0; t < plan.num_threads; ++t) {
    result.loss += thread_loss[t];
    result.grad_scale += thread_grad_scale[t];
  }
  return result;
}

template InfoNceResult info_nce<float>(const float*, const float*, const InfoNceInputs&,
                                       const InfoNceOptions&, float*, float*);
template InfoNceResult info_nce<double>(const double*, const double*, const InfoNceInputs&,
                                        const InfoNceOptions&, double*, double*);

const char* info_nce_blas_name() { return "OpenBLAS (scipy-openblas32), single-threaded per block"; }

}  // namespace hbt
