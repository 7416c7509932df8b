#include "loss/info_nce.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "common/check.hpp"
#include "common/checked.hpp"
#include "loss/blas.hpp"
#include "loss/row_kernels.hpp"
#include "loss/parallel.hpp"

namespace hbt {
namespace {

using loss_detail::ColumnLogSumExp;
using loss_detail::LogSumExp;
using loss_detail::part_of;
using loss_detail::Range;
using loss_detail::RowLoss;
using loss_detail::RowMask;
using loss_detail::run_parallel;

// A thread takes part only with at least this many multiply-adds of the three products
// (B * M * D each): below it, a region costs more than the share it would compute. OpenMP's
// threads are usually awake (torch's operations just ran on them), so two threads start at
// B * M * D >= 2^19, e.g. B = M = 32 from D = 512 (a whole fused step at B = M = 32, D = 768
// on 2 cores: 84 us with two threads against 108 us with one).
constexpr int64_t kMinMultiplyAddsPerThread = int64_t{1} << 18;
// Blocks are never thinner than this (when B allows): the passages' gradient is a product with
// inner dimension block_rows, which loses BLAS efficiency below a few hundred.
constexpr int64_t kMinBlockRows = 256;

template <typename T>
void validate(const InfoNceInputs& in, const InfoNceOptions& options, const T* queries,
              const T* passages, const T* grad_queries, const T* grad_passages) {
  require(in.num_queries >= 1, "info_nce needs at least one query, got ", in.num_queries);
  require(in.num_passages >= in.num_queries, "info_nce needs at least as many passages (",
          in.num_passages, ") as queries (", in.num_queries, ")");
  require(in.dim >= 1, "info_nce needs embedding dimension >= 1, got ", in.dim);
  require(in.num_passages <= loss_detail::kMaxBlasDim && in.dim <= loss_detail::kMaxBlasDim,
          "info_nce sizes must fit 32-bit BLAS indices");
  checked_mul(in.num_passages, in.dim, "info_nce: passages' size M x D");
  require(queries != nullptr && passages != nullptr, "info_nce got a null input buffer");
  require((in.query_groups == nullptr) == (in.passage_groups == nullptr),
          "query_groups and passage_groups must be given together");
  require(std::isfinite(options.scale) && options.scale > 0 &&
              options.scale <= static_cast<double>(std::numeric_limits<T>::max()),
          "info_nce scale (1 / temperature) must be finite and > 0 (and fit the inputs' type), "
          "got ", options.scale);
  require(options.num_threads >= 1, "num_threads must be >= 1, got ", options.num_threads);
  require(options.block_rows >= 0, "block_rows must be >= 0, got ", options.block_rows);
  require(!options.compute_gradients || (grad_queries != nullptr && grad_passages != nullptr),
          "info_nce needs gradient buffers when computing gradients");
}

// Bytes of similarities held at once when block_rows is left to the kernel: the last-level
// cache of this CPU, within [16, 64] MiB. Up to it the whole B x M block is one pass (one
// product for the logits, one for each gradient); above it, blocks of rows.
int64_t scratch_budget_bytes() {
  static const int64_t budget = [] {
    long cache = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    cache = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    return std::clamp<int64_t>(cache > 0 ? cache : 0, int64_t{16} << 20, int64_t{64} << 20);
  }();
  return budget;
}

// How the B query rows are cut into blocks; every thread works on every block.
struct BlockPlan {
  int64_t block_rows;
  int64_t num_blocks;
  int num_threads;

  int64_t first_row(int64_t block) const { return block * block_rows; }
  int64_t rows_in(int64_t block, int64_t num_queries) const {
    return std::min(block_rows, num_queries - first_row(block));
  }
};

BlockPlan make_plan(const InfoNceInputs& in, const InfoNceOptions& options, int64_t element_size) {
  BlockPlan plan;
  int64_t rows = options.block_rows;
  if (rows == 0) {
    const int64_t row_bytes = in.num_passages * element_size;
    const int64_t budget_rows = scratch_budget_bytes() / row_bytes;
    rows = budget_rows >= in.num_queries ? in.num_queries : std::max(kMinBlockRows, budget_rows);
  }
  plan.block_rows = std::clamp<int64_t>(rows, 1, in.num_queries);
  plan.num_blocks = (in.num_queries + plan.block_rows - 1) / plan.block_rows;
  const double work = static_cast<double>(in.num_queries) * static_cast<double>(in.num_passages) *
                      static_cast<double>(in.dim);
  const double useful = std::max(1.0, work / static_cast<double>(kMinMultiplyAddsPerThread));
  plan.num_threads = static_cast<int>(
      std::min<double>({static_cast<double>(options.num_threads), useful,
                        static_cast<double>(plan.block_rows)}));
  return plan;
}

// sims[r * stride + j] = <queries[r], passages[j]> for r < rows, j < cols.
template <typename T>
void similarities(const T* queries, int64_t rows, const T* passages, int64_t cols, int64_t dim,
                  T* sims, int64_t stride) {
  if (rows > 0 && cols > 0)
    loss_detail::gemm(false, true, rows, cols, dim, T(1), queries, dim, passages, dim, T(0), sims,
                      stride);
}

// The similarities of query rows [row0, row0 + rows) (block-relative rows of the tile), in
// the same products whichever pass asks: the first B columns, then the extra negatives. A BLAS
// may round differently for different shapes, and the column softmax must see exactly the
// values its statistics came from.
template <typename T>
void block_similarities(const T* queries, const T* passages, const InfoNceInputs& in,
                        Range rows, bool first_columns_only, T* tile) {
  const int64_t stride = in.num_passages;
  const T* block_queries = queries + rows.begin * in.dim;
  T* sims = tile;
  similarities(block_queries, rows.size(), passages, in.num_queries, in.dim, sims, stride);
  if (!first_columns_only)
    similarities(block_queries, rows.size(), passages + in.num_queries * in.dim,
                 in.num_passages - in.num_queries, in.dim, sims + in.num_queries, stride);
}

RowMask row_mask(const InfoNceInputs& in, int64_t row, int64_t first_column = 0) {
  RowMask mask;
  mask.positive = row - first_column;
  if (in.query_groups != nullptr) {
    mask.passage_groups = in.passage_groups + first_column;
    mask.query_group = in.query_groups[row];
  }
  return mask;
}

template <typename T>
struct ColumnStatistics {
  std::vector<T> top;
  std::vector<T> log_sum;
};

// Log-sum-exp of each column of the B x B logits block (queries against the first B passages),
// for the symmetric loss. Each thread owns a slice of columns and keeps, per column, a running
// maximum and a sum of exp(scale * (s - max)), rescaled whenever a block raises the maximum.
template <typename T>
ColumnStatistics<T> column_log_sum_exp(const T* queries, const T* passages,
                                       const InfoNceInputs& in, T scale, const BlockPlan& plan,
                                       T* tile) {
  const int64_t cols = in.num_queries;
  const int64_t stride = in.num_passages;
  constexpr T kMinusInf = -std::numeric_limits<T>::infinity();
  ColumnStatistics<T> stats{std::vector<T>(cols, kMinusInf), std::vector<T>(cols, T(0))};
  std::vector<T> block_top(cols);
  for (int64_t block = 0; block < plan.num_blocks; ++block) {
    const int64_t row0 = plan.first_row(block);
    const int64_t rows = plan.rows_in(block, in.num_queries);
    run_parallel(plan.num_threads, [&](int thread) {
      const Range mine = part_of(rows, plan.num_threads, thread);
      block_similarities(queries, passages, in, {row0 + mine.begin, row0 + mine.end}, true,
                         tile + mine.begin * stride);
    });
    run_parallel(plan.num_threads, [&](int thread) {
      const Range slice = part_of(cols, plan.num_threads, thread);
      T* top = block_top.data() + slice.begin;
      T* max = stats.top.data() + slice.begin;
      T* sum = stats.log_sum.data() + slice.begin;  // the running sum until the end
      std::fill(top, top + slice.size(), kMinusInf);
      for (int64_t r = 0; r < rows; ++r)
        loss_detail::column_max_update(tile + r * stride + slice.begin, slice.size(),
                                       row_mask(in, row0 + r, slice.begin), top);
      for (int64_t j = 0; j < slice.size(); ++j) {
        const T raised = std::max(max[j], top[j]);
        // A column with no entry so far has sum 0; skipping it also avoids 0 * -inf when the
        // scale underflowed to 0 in T.
        if (max[j] != kMinusInf) sum[j] *= std::exp(scale * (max[j] - raised));
        max[j] = raised;
      }
      for (int64_t r = 0; r < rows; ++r)
        loss_detail::column_sum_update(tile + r * stride + slice.begin, slice.size(), scale,
                                       row_mask(in, row0 + r, slice.begin), max, sum);
    });
  }
  // Every column holds its unmasked diagonal, so its sum is >= 1.
  for (T& sum : stats.log_sum) sum = std::log(sum);
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

// Per-thread sums, added in thread order at the end (the same result from run to run).
struct ThreadTotals {
  double loss = 0.0;
  double grad_scale = 0.0;
};

// One thread's rows of one block: similarities, row statistics, loss, d loss / d logits (in
// place of the similarities) and the queries' gradient of these rows.
template <typename T>
ThreadTotals rows_of_block(const T* queries, const T* passages, const InfoNceInputs& in,
                           const InfoNceOptions& options, Range rows, T* sims,
                           const ColumnLogSumExp<T>& cols, T row_weight, T* grad_queries) {
  const int64_t num_passages = in.num_passages;
  const T scale = static_cast<T>(options.scale);
  block_similarities(queries, passages, in, rows, false, sims);
  ThreadTotals totals;
  for (int64_t row = rows.begin; row < rows.end; ++row) {
    T* row_sims = sims + (row - rows.begin) * num_passages;
    const RowMask mask = row_mask(in, row);
    if (options.compute_gradients && !options.symmetric) {
      const RowLoss<T> part =  // the logits' gradient: the product below applies the scale
          loss_detail::row_loss_and_gradient(row_sims, num_passages, scale, row_weight, mask);
      totals.loss += part.loss;
      totals.grad_scale += part.grad_scale;
      continue;
    }
    const LogSumExp<T> row_lse = loss_detail::row_log_sum_exp(row_sims, num_passages, scale, mask);
    const T positive = row_sims[row];
    totals.loss += row_weight * (scale * (row_lse.top - positive) + row_lse.log_sum);
    if (options.symmetric)
      totals.loss += cols.weight * (scale * (cols.top[row] - positive) + cols.log_sum[row]);
    if (options.compute_gradients)
      totals.grad_scale += loss_detail::row_gradient(row_sims, num_passages, scale, row_lse,
                                                     row_weight, mask, cols);
  }
  if (options.compute_gradients && rows.size() > 0)  // logits = scale * q p^T
    loss_detail::gemm(false, false, rows.size(), in.dim, num_passages, scale, sims, num_passages,
                      passages, in.dim, T(0), grad_queries + rows.begin * in.dim, in.dim);
  return totals;
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

  const BlockPlan plan = make_plan(in, options, sizeof(T));
  // All memory is taken before any thread starts, so a failed allocation is an ordinary
  // exception; the tile needs no initialisation (every entry is written before it is read).
  std::unique_ptr<T[]> tile(new T[checked_mul(plan.block_rows, num_passages, "info_nce: block")]);
  const bool grads = options.compute_gradients;
  if (grads) std::fill(grad_passages, grad_passages + num_passages * dim, T(0));

  const T scale = static_cast<T>(options.scale);
  ColumnStatistics<T> col_stats;
  const T row_weight = T(options.symmetric ? 0.5 : 1.0) / static_cast<T>(num_queries);
  ColumnLogSumExp<T> cols;
  if (options.symmetric) {
    col_stats = column_log_sum_exp(queries, passages, in, scale, plan, tile.get());
    cols = {col_stats.top.data(), col_stats.log_sum.data(), num_queries, row_weight};
  }

  std::vector<ThreadTotals> totals(plan.num_threads);
  for (int64_t block = 0; block < plan.num_blocks; ++block) {
    const int64_t row0 = plan.first_row(block);
    const int64_t rows = plan.rows_in(block, num_queries);
    run_parallel(plan.num_threads, [&](int thread) {
      const Range mine = part_of(rows, plan.num_threads, thread);
      const ThreadTotals part =
          rows_of_block(queries, passages, in, options, {row0 + mine.begin, row0 + mine.end},
                        tile.get() + mine.begin * num_passages, cols, row_weight, grad_queries);
      totals[thread].loss += part.loss;
      totals[thread].grad_scale += part.grad_scale;
    });
    if (!grads) continue;
    // The passages' gradient, split by passage rows so that no thread needs its own copy.
    run_parallel(plan.num_threads, [&](int thread) {
      const Range slice = part_of(num_passages, plan.num_threads, thread);
      if (slice.size() > 0)
        loss_detail::gemm(true, false, slice.size(), dim, rows, scale, tile.get() + slice.begin,
                          num_passages, queries + row0 * dim, dim, T(1),
                          grad_passages + slice.begin * dim, dim);
    });
  }

  InfoNceResult result;
  for (const ThreadTotals& part : totals) {
    result.loss += part.loss;
    result.grad_scale += part.grad_scale;
  }
  return result;
}

template InfoNceResult info_nce<float>(const float*, const float*, const InfoNceInputs&,
                                       const InfoNceOptions&, float*, float*);
template InfoNceResult info_nce<double>(const double*, const double*, const InfoNceInputs&,
                                        const InfoNceOptions&, double*, double*);

int64_t info_nce_block_rows(const InfoNceInputs& inputs, const InfoNceOptions& options,
                            int64_t element_size) {
  return make_plan(inputs, options, element_size).block_rows;
}

const char* info_nce_blas_name() {
  return "OpenBLAS (scipy-openblas32), single-threaded inside OpenMP threads";
}

}  // namespace hbt
