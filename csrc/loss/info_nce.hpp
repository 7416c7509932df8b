#pragma once
// Fused in-batch similarity + InfoNCE loss on raw row-major buffers (no Python, no libtorch).
//
// Queries q [B, D], passages p [M, D] with M >= B: p[i] is the positive of q[i] and p[B:] are
// extra negatives shared by every query. With logits x_ij = scale * <q_i, p_j> the loss is
//     L_row = (1/B) sum_i ( log sum_{j unmasked} exp(x_ij) - x_ii )
// where j != i is masked (not a negative of q_i) when query_groups[i] == passage_groups[j].
// The symmetric loss is (L_row + L_col) / 2, L_col being the same loss over the first B
// passages against the B queries (columns of the B x B block, same mask).
//
// The B x M logits are never stored whole unless they fit the scratch budget: query rows are
// processed in blocks, and each block's exact row statistics and gradients are computed while
// its similarities are in memory. Every thread of OpenMP's team works on every block (rows
// for the logits and the queries' gradient, passage rows for the passages' gradient), so extra
// memory is O(block_rows * M + B) whatever the thread count. Up to the budget (the CPU's
// last-level cache, 16..64 MiB) the whole B x M block is a single pass: one product for the
// logits and one for each gradient.
#include <cstdint>

namespace hbt {

struct InfoNceInputs {
  int64_t num_queries = 0;                  // B
  int64_t num_passages = 0;                 // M >= B
  int64_t dim = 0;                          // D
  const int64_t* query_groups = nullptr;    // [B], or null for no masking
  const int64_t* passage_groups = nullptr;  // [M], given exactly when query_groups is
};

struct InfoNceOptions {
  double scale = 20.0;  // 1 / temperature, > 0 and finite
  bool symmetric = false;
  bool compute_gradients = true;
  int num_threads = 1;
  int64_t block_rows = 0;  // query rows per block; 0 picks it (see info_nce_block_rows)
};

struct InfoNceResult {
  double loss = 0.0;
  double grad_scale = 0.0;  // d loss / d scale; 0 when gradients are not computed
};

// Writes grad_queries [B, D] and grad_passages [M, D] when options.compute_gradients (they may
// be null otherwise). A NaN or inf anywhere in the inputs makes the loss, grad_scale and every
// gradient entry NaN, as the unfused computation would. Throws std::invalid_argument on bad
// arguments.
template <typename T>
InfoNceResult info_nce(const T* queries, const T* passages, const InfoNceInputs& inputs,
                       const InfoNceOptions& options, T* grad_queries, T* grad_passages);

extern template InfoNceResult info_nce<float>(const float*, const float*, const InfoNceInputs&,
                                              const InfoNceOptions&, float*, float*);
extern template InfoNceResult info_nce<double>(const double*, const double*,
                                               const InfoNceInputs&, const InfoNceOptions&,
                                               double*, double*);

// Query rows per block that info_nce uses for these sizes and options (options.block_rows
// clamped to [1, B], or for 0: B when B x M elements of element_size bytes fit the scratch
// budget, else as many rows as fit, but at least 256). Does not validate.
int64_t info_nce_block_rows(const InfoNceInputs& inputs, const InfoNceOptions& options,
                            int64_t element_size);

// Which BLAS the matrix products run on, for build_info.
const char* info_nce_blas_name();

}  // namespace hbt
