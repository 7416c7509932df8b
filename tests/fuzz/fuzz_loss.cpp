// Fuzz harness for the fused InfoNCE loss (hbt::info_nce, float and double): any sizes, options,
// group ids and values (NaN, inf and huge ones included) must end in a result or
// std::invalid_argument, never a crash or undefined behaviour; and on moderate values the loss
// must equal a direct double-precision computation, and (in double) so must d loss / d scale and
// the gradients of q and p. See tests/fuzz/README.md for the entry-point shape and how to run it.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "fuzz_input.hpp"
#include "loss/info_nce.hpp"

namespace {

using hbt_fuzz::fuzz_check;
using hbt_fuzz::FuzzInput;

struct Case {
  hbt::InfoNceInputs inputs;
  hbt::InfoNceOptions options;
  std::vector<double> q, p;
  std::vector<int64_t> query_groups, passage_groups;
  bool moderate = true;  // values and scale small enough for exact comparisons
};

// The loss straight from its definition, in double, materialising the B x M logits.
double direct_loss(const Case& c) {
  const int64_t b = c.inputs.num_queries, m = c.inputs.num_passages, d = c.inputs.dim;
  const bool masked = !c.query_groups.empty();
  std::vector<double> logits(b * m);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < m; ++j) {
      double dot = 0;
      for (int64_t k = 0; k < d; ++k) dot += c.q[i * d + k] * c.p[j * d + k];
      logits[i * m + j] = c.options.scale * dot;
    }
  auto excluded = [&](int64_t i, int64_t j) {
    return masked && j != i && c.query_groups[i] == c.passage_groups[j];
  };
  auto cross_entropy = [&](int64_t i, bool by_column) {
    const int64_t n = by_column ? b : m;
    double top = -INFINITY;
    for (int64_t k = 0; k < n; ++k) {
      const bool out = by_column ? excluded(k, i) : excluded(i, k);
      if (!out) top = std::max(top, by_column ? logits[k * m + i] : logits[i * m + k]);
    }
    double sum = 0;
    for (int64_t k = 0; k < n; ++k) {
      const bool out = by_column ? excluded(k, i) : excluded(i, k);
      if (!out) sum += std::exp((by_column ? logits[k * m + i] : logits[i * m + k]) - top);
    }
    return top + std::log(sum) - logits[i * m + i];
  };
  double rows = 0, cols = 0;
  for (int64_t i = 0; i < b; ++i) rows += cross_entropy(i, false);
  if (!c.options.symmetric) return rows / static_cast<double>(b);
  for (int64_t j = 0; j < b; ++j) cols += cross_entropy(j, true);
  return (rows + cols) / (2.0 * static_cast<double>(b));
}

Case decode(FuzzInput& in) {
  Case c;
  // Mostly valid sizes, sometimes not (0, M < B): those must be refused, not crash.
  c.inputs.num_queries = in.in_range(0, 24);
  c.inputs.num_passages = c.inputs.num_queries + in.in_range(-1, 24);
  c.inputs.dim = in.in_range(0, 9);
  const double scales[] = {1.0, 20.0, 0.5, 100.0, 1e-3};
  c.options.scale = in.real(scales);
  c.options.symmetric = in.boolean();
  c.options.compute_gradients = in.boolean();
  c.options.num_threads = static_cast<int>(in.in_range(0, 4));
  c.options.block_rows = in.in_range(-1, 30);
  c.moderate = std::isfinite(c.options.scale) && std::abs(c.options.scale) <= 100.0;
  const int64_t b = std::max<int64_t>(c.inputs.num_queries, 0);
  const int64_t m = std::max<int64_t>(c.inputs.num_passages, 0);
  const int64_t d = std::max<int64_t>(c.inputs.dim, 0);
  const double values[] = {0.0, 1.0, -1.0, 0.25, -0.75, 2.0, 0.5, -0.125};
  c.q.resize(b * d);
  c.p.resize(m * d);
  for (auto* buffer : {&c.q, &c.p})
    for (double& value : *buffer) {
      value = in.real(values);
      c.moderate = c.moderate && std::isfinite(value) && std::abs(value) <= 4.0;
    }
  if (in.boolean()) {
    const int64_t num_groups = in.in_range(1, 5);
    c.query_groups.resize(b);
    c.passage_groups.resize(m);
    for (auto& group : c.query_groups) group = in.in_range(0, num_groups);
    for (auto& group : c.passage_groups) group = in.in_range(0, num_groups);
    c.inputs.query_groups = c.query_groups.data();
    // Sometimes only one of the two: must be refused.
    c.inputs.passage_groups = in.in_range(0, 15) == 0 ? nullptr : c.passage_groups.data();
  }
  return c;
}

// d loss / d logits straight from the definition, in double: row weight times (row softmax -
// positive indicator) over each row's unmasked passages, plus for the symmetric loss the same
// over each of the first B columns.
std::vector<double> direct_logit_gradients(const Case& c) {
  const int64_t b = c.inputs.num_queries, m = c.inputs.num_passages, d = c.inputs.dim;
  const bool masked = !c.query_groups.empty();
  auto excluded = [&](int64_t i, int64_t j) {
    return masked && j != i && c.query_groups[i] == c.passage_groups[j];
  };
  std::vector<double> logits(b * m, 0.0), grad(b * m, 0.0);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < m; ++j) {
      for (int64_t k = 0; k < d; ++k) logits[i * m + j] += c.q[i * d + k] * c.p[j * d + k];
      logits[i * m + j] *= c.options.scale;
    }
  const double weight = (c.options.symmetric ? 0.5 : 1.0) / static_cast<double>(b);
  // One softmax over the entries (i, j) = at(k), k < n, that are not excluded.
  auto add_softmax = [&](int64_t n, int64_t positive, auto at) {
    double top = -INFINITY, sum = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      const auto [i, j] = at(k);
      if (!excluded(i, j)) top = std::max(top, logits[i * m + j]);
    }
    for (int64_t k = 0; k < n; ++k) {
      const auto [i, j] = at(k);
      if (!excluded(i, j)) sum += std::exp(logits[i * m + j] - top);
    }
    for (int64_t k = 0; k < n; ++k) {
      const auto [i, j] = at(k);
      const double prob = excluded(i, j) ? 0.0 : std::exp(logits[i * m + j] - top) / sum;
      grad[i * m + j] += weight * (prob - (k == positive ? 1.0 : 0.0));
    }
  };
  for (int64_t i = 0; i < b; ++i)
    add_softmax(m, i, [&](int64_t k) { return std::pair<int64_t, int64_t>{i, k}; });
  if (c.options.symmetric)
    for (int64_t j = 0; j < b; ++j)
      add_softmax(b, j, [&](int64_t k) { return std::pair<int64_t, int64_t>{k, j}; });
  return grad;
}

// The kernel's gradients against the direct ones: q's and p's (logits = scale * q p^T) and
// d loss / d scale = sum of d loss / d logits times the similarities.
void check_gradients(const Case& c, const hbt::InfoNceResult& got,
                     const std::vector<double>& grad_q, const std::vector<double>& grad_p) {
  const int64_t b = c.inputs.num_queries, m = c.inputs.num_passages, d = c.inputs.dim;
  const std::vector<double> grad = direct_logit_gradients(c);
  const double scale = c.options.scale;
  auto close = [](double got_value, double want) {
    return std::abs(got_value - want) <= 1e-9 * (1.0 + std::abs(want));
  };
  double grad_scale = 0.0;
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < m; ++j) {
      double dot = 0.0;
      for (int64_t k = 0; k < d; ++k) dot += c.q[i * d + k] * c.p[j * d + k];
      grad_scale += grad[i * m + j] * dot;
    }
  fuzz_check(close(got.grad_scale, grad_scale), "d loss / d scale differs from the direct one");
  for (int64_t i = 0; i < b; ++i)
    for (int64_t k = 0; k < d; ++k) {
      double want = 0.0;
      for (int64_t j = 0; j < m; ++j) want += scale * grad[i * m + j] * c.p[j * d + k];
      fuzz_check(close(grad_q[i * d + k], want), "query gradient differs from the direct one");
    }
  for (int64_t j = 0; j < m; ++j)
    for (int64_t k = 0; k < d; ++k) {
      double want = 0.0;
      for (int64_t i = 0; i < b; ++i) want += scale * grad[i * m + j] * c.q[i * d + k];
      fuzz_check(close(grad_p[j * d + k], want), "passage gradient differs from the direct one");
    }
}

template <typename T>
void run(const Case& c) {
  const std::vector<T> q(c.q.begin(), c.q.end()), p(c.p.begin(), c.p.end());
  std::vector<T> grad_q(q.size()), grad_p(p.size());
  hbt::InfoNceResult result;
  try {
    result = hbt::info_nce<T>(q.empty() ? nullptr : q.data(), p.empty() ? nullptr : p.data(),
                              c.inputs, c.options, grad_q.empty() ? nullptr : grad_q.data(),
                              grad_p.empty() ? nullptr : grad_p.data());
  } catch (const std::invalid_argument&) {
    return;  // an expected refusal
  }
  fuzz_check(c.inputs.num_queries >= 1 && c.inputs.num_passages >= c.inputs.num_queries &&
                 c.inputs.dim >= 1,
             "info_nce accepted invalid sizes");
  if (!c.moderate) return;
  const double expected = direct_loss(c);
  const double tolerance = std::is_same_v<T, double> ? 1e-9 : 2e-3;
  if (!(std::abs(result.loss - expected) <= tolerance * (1.0 + std::abs(expected))))
    std::fprintf(stderr, "%s B=%lld M=%lld D=%lld scale=%g symmetric=%d groups=%d: loss %.17g, "
                 "direct %.17g\n", std::is_same_v<T, double> ? "double" : "float",
                 static_cast<long long>(c.inputs.num_queries),
                 static_cast<long long>(c.inputs.num_passages),
                 static_cast<long long>(c.inputs.dim), c.options.scale, c.options.symmetric,
                 !c.query_groups.empty(), result.loss, expected);
  fuzz_check(std::abs(result.loss - expected) <= tolerance * (1.0 + std::abs(expected)),
             "loss differs from the direct computation");
  fuzz_check(result.loss >= -tolerance, "loss below zero");
  if (!c.options.compute_gradients) return;
  for (T value : grad_q) fuzz_check(std::isfinite(value), "non-finite query gradient");
  for (T value : grad_p) fuzz_check(std::isfinite(value), "non-finite passage gradient");
  fuzz_check(std::isfinite(result.grad_scale), "non-finite d loss / d scale");
  if constexpr (std::is_same_v<T, double>) check_gradients(c, result, grad_q, grad_p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput in(data, size);
  const Case c = decode(in);
  run<double>(c);
  run<float>(c);
  return 0;
}
