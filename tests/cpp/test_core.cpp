// The C++ core on its own, without Python: sampler invariants and the fused loss against a
// direct double-precision computation. Built with -DHBT_BUILD_TESTS=ON, run by ctest.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <locale>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/check.hpp"
#include "loss/info_nce.hpp"
#include "sampler/hybrid_sampler.hpp"

namespace {

int failures = 0;

void expect(bool condition, const char* what) {
  if (!condition) {
    std::printf("FAILED: %s\n", what);
    ++failures;
  }
}

std::vector<std::vector<int64_t>> uneven_pairs() {  // {languages, groups}
  std::vector<int64_t> languages, groups;
  for (int64_t g = 0; g < 50; ++g) {
    for (int64_t l = 0; l < 4; ++l) {
      if ((g + l) % 5 == 0) continue;  // uneven coverage
      languages.push_back(l);
      groups.push_back(g);
    }
  }
  return {languages, groups};
}

template <typename Call>
bool throws_invalid_argument(Call call) {
  try {
    call();
  } catch (const std::invalid_argument&) {
    return true;
  }
  return false;
}

void test_sampler_batches() {
  const auto pairs = uneven_pairs();
  const auto& languages = pairs[0];
  const auto& groups = pairs[1];
  hbt::SamplerConfig config;
  config.batch_size = 6;
  hbt::HybridSampler sampler(languages.data(), groups.data(), static_cast<int64_t>(languages.size()), config);
  std::vector<int64_t> queries(6), passages(6);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    hbt::EpochCursor cursor(sampler, epoch, 0);
    for (int64_t k = 0; k < sampler.num_batches(); ++k) {
      cursor.batch(k, queries.data(), passages.data());
      std::set<int64_t> seen;
      for (int i = 0; i < 6; ++i) {
        seen.insert(groups[queries[i]]);
        expect(groups[queries[i]] == groups[passages[i]], "query and passage share a group");
        const bool cross = cursor.batch_language(k) < 0;
        expect(cross ? languages[queries[i]] != languages[passages[i]] : queries[i] == passages[i],
               "batch kind respected");
      }
      expect(seen.size() == 6, "groups distinct within a batch");
    }
  }
  hbt::EpochCursor cursor(sampler, 0, 0);
  expect(throws_invalid_argument([&] { cursor.batch(sampler.num_batches(), queries.data(), passages.data()); }),
         "out-of-range batch index throws invalid_argument");
}

// Mode "mixed": uneven_pairs plus groups in one language only. Every batch has query row ==
// passage row and distinct groups; the ranks' slices form the global batch; a pass over the
// layers, which here divides into whole batches, uses every row once, single-language groups
// included; the epoch is all pairs over the global batch.
void test_sampler_mixed_batches() {
  auto pairs = uneven_pairs();
  auto& languages = pairs[0];
  auto& groups = pairs[1];
  for (int64_t g = 100; g < 110; ++g) {
    languages.push_back(g % 4);
    groups.push_back(g);
  }
  const auto num_pairs = static_cast<int64_t>(languages.size());  // 160 + 10 = 170 = 17 * 10
  expect(hbt::parse_sampler_mode("mixed") == hbt::SamplerMode::kMixed, "mode 'mixed' parses");
  hbt::SamplerConfig config;
  config.mode = hbt::SamplerMode::kMixed;
  config.batch_size = 5;
  config.world_size = 1;
  const hbt::HybridSampler global(languages.data(), groups.data(), num_pairs, config);
  expect(global.num_batches() == num_pairs / 5, "mixed epoch is all pairs over the global batch");
  config.world_size = 2;
  config.batch_size = 5;
  config.rank = 0;
  const hbt::HybridSampler rank0(languages.data(), groups.data(), num_pairs, config);
  config.rank = 1;
  const hbt::HybridSampler rank1(languages.data(), groups.data(), num_pairs, config);
  expect(rank0.num_batches() == num_pairs / 10 && rank1.num_batches() == rank0.num_batches(),
         "mixed epoch length equal on every rank");
  const int64_t n = rank0.num_batches();
  std::vector<int64_t> q0(n * 5), p0(n * 5), q1(n * 5), p1(n * 5), kinds(n);
  rank0.batches(3, 0, n, q0.data(), p0.data(), kinds.data());
  rank1.batches(3, 0, n, q1.data(), p1.data());
  std::multiset<int64_t> used;
  std::set<int64_t> languages_seen;
  for (int64_t k = 0; k < n; ++k) {
    std::set<int64_t> batch_groups;
    for (int64_t i = 0; i < 5; ++i) {
      for (const auto* rows : {&q0, &q1}) {
        const int64_t row = (*rows)[k * 5 + i];
        batch_groups.insert(groups[row]);
        used.insert(row);
        languages_seen.insert(languages[row]);
      }
      expect(q0[k * 5 + i] == p0[k * 5 + i] && q1[k * 5 + i] == p1[k * 5 + i],
             "mixed batch has query row == passage row");
    }
    expect(batch_groups.size() == 10, "groups distinct within a mixed global batch");
    expect(kinds[k] == -1, "a mixed batch has no single language");
  }
  // Layer sizes: 50 groups with 2+ languages (and 10 single) in layer 0 = 60, then 50, 50, 10
  // (groups in 4 languages): 6 + 5 + 5 + 1 = 17 whole batches, one pass.
  bool each_once = used.size() == static_cast<size_t>(num_pairs);
  for (int64_t row = 0; row < num_pairs; ++row) each_once = each_once && used.count(row) == 1;
  expect(each_once, "a mixed pass uses every row once");
  expect(languages_seen.size() == 4, "mixed batches draw every language");
  config.world_size = 1;
  config.rank = 0;
  config.batch_size = 61;  // more than the 60 groups
  expect(throws_invalid_argument([&] { hbt::HybridSampler(languages.data(), groups.data(), num_pairs, config); }),
         "a global batch larger than the groups throws invalid_argument in mode mixed");
}

void test_sampler_config_overflow_is_an_error() {
  const auto pairs = uneven_pairs();
  hbt::SamplerConfig config;
  config.batch_size = int64_t{1} << 32;
  config.world_size = int64_t{1} << 32;
  expect(throws_invalid_argument([&] {
           hbt::HybridSampler(pairs[0].data(), pairs[1].data(), static_cast<int64_t>(pairs[0].size()), config);
         }),
         "batch_size * world_size overflow throws invalid_argument");
}

void test_sampler_threads_get_the_same_batches() {
  const auto pairs = uneven_pairs();
  hbt::SamplerConfig config;
  config.batch_size = 4;
  const hbt::HybridSampler sampler(pairs[0].data(), pairs[1].data(), static_cast<int64_t>(pairs[0].size()), config);
  const int64_t size = sampler.num_batches() * config.batch_size;
  std::vector<std::vector<int64_t>> results(4, std::vector<int64_t>(2 * size));
  std::vector<std::thread> threads;
  for (auto& result : results) {
    threads.emplace_back([&] {
      for (int repeat = 0; repeat < 20; ++repeat) {
        sampler.batches(7, 0, sampler.num_batches(), result.data(), result.data() + size);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& result : results) expect(result == results[0], "threads see the same epoch");
}

void test_huge_language_exponent_terminates() {
  const auto pairs = uneven_pairs();
  for (double exponent : {1e308, -1e308, 700.0, -700.0}) {
    hbt::SamplerConfig config;
    config.batch_size = 2;
    config.mode = hbt::SamplerMode::kXX;
    config.lang_exponent = exponent;
    const hbt::HybridSampler sampler(pairs[0].data(), pairs[1].data(), static_cast<int64_t>(pairs[0].size()), config);
    hbt::EpochCursor cursor(sampler, 0, 0);
    expect(cursor.batch_language(0) >= 0, "X-X batches with an extreme exponent");
  }
}

void test_unsigned_ids_beyond_int64_are_rejected() {
  const std::vector<uint64_t> languages = {0, 1, uint64_t{1} << 63, 1};
  const std::vector<uint64_t> groups = {0, 0, 1, 1};
  hbt::SamplerConfig config;
  std::string message;
  try {
    hbt::HybridSampler(languages.data(), groups.data(), 4, config);
  } catch (const std::invalid_argument& error) {
    message = error.what();
  }
  expect(message.find("9223372036854775808 at row 2") != std::string::npos,
         "uint64 id >= 2^63 reported as passed");
}

double direct_loss(const std::vector<double>& q, const std::vector<double>& p, int64_t b,
                   int64_t m, int64_t d, double scale) {
  double total = 0.0;
  for (int64_t i = 0; i < b; ++i) {
    std::vector<double> logits(m);
    double top = -INFINITY;
    for (int64_t j = 0; j < m; ++j) {
      double dot = 0.0;
      for (int64_t k = 0; k < d; ++k) dot += q[i * d + k] * p[j * d + k];
      logits[j] = scale * dot;
      top = std::max(top, logits[j]);
    }
    double sum = 0.0;
    for (double x : logits) sum += std::exp(x - top);
    total += top + std::log(sum) - logits[i];
  }
  return total / static_cast<double>(b);
}

void test_loss_matches_direct_computation() {
  const int64_t b = 7, m = 11, d = 5;
  std::vector<double> q(b * d), p(m * d), grad_q(b * d), grad_p(m * d);
  for (size_t i = 0; i < q.size(); ++i) q[i] = std::sin(0.7 * static_cast<double>(i));
  for (size_t i = 0; i < p.size(); ++i) p[i] = std::cos(1.3 * static_cast<double>(i));
  hbt::InfoNceInputs inputs{b, m, d, nullptr, nullptr};
  hbt::InfoNceOptions options;
  options.scale = 20.0;
  options.block_rows = 3;  // several blocks, one partial
  const auto result = hbt::info_nce<double>(q.data(), p.data(), inputs, options, grad_q.data(), grad_p.data());
  const double expected = direct_loss(q, p, b, m, d, options.scale);
  expect(std::abs(result.loss - expected) < 1e-10 * std::abs(expected), "loss equals the direct value");
  // Gradient of one query coordinate by central differences.
  const double h = 1e-6;
  q[2 * d + 1] += h;
  const double up = direct_loss(q, p, b, m, d, options.scale);
  q[2 * d + 1] -= 2 * h;
  const double down = direct_loss(q, p, b, m, d, options.scale);
  expect(std::abs(grad_q[2 * d + 1] - (up - down) / (2 * h)) < 1e-5, "query gradient equals finite difference");
}

// Blocks of any height, one pass or many, 1 or 3 threads: the same loss and gradients (with
// group masks and extra negatives, one-directional and symmetric). B x M x D is large enough
// for the plan to give work to three threads.
void test_loss_plan_does_not_change_result() {
  const int64_t b = 61, m = 77, d = 170;
  std::vector<double> q(b * d), p(m * d);
  for (size_t i = 0; i < q.size(); ++i) q[i] = 0.2 * std::sin(0.37 * static_cast<double>(i) + 1.0);
  for (size_t i = 0; i < p.size(); ++i) p[i] = 0.2 * std::cos(0.91 * static_cast<double>(i));
  std::vector<int64_t> query_groups(b), passage_groups(m);
  for (int64_t i = 0; i < b; ++i) query_groups[i] = i % 4;
  for (int64_t j = 0; j < m; ++j) passage_groups[j] = j % 5;
  const hbt::InfoNceInputs inputs{b, m, d, query_groups.data(), passage_groups.data()};
  auto run = [&](bool symmetric, int64_t block_rows, int threads, std::vector<double>& grad_q,
                 std::vector<double>& grad_p) {
    hbt::InfoNceOptions options;
    options.scale = 7.0;
    options.symmetric = symmetric;
    options.block_rows = block_rows;
    options.num_threads = threads;
    grad_q.assign(b * d, 0.0);
    grad_p.assign(m * d, 0.0);
    return hbt::info_nce<double>(q.data(), p.data(), inputs, options, grad_q.data(),
                                 grad_p.data());
  };
  for (bool symmetric : {false, true}) {
    std::vector<double> want_q, want_p, grad_q, grad_p;
    const auto want = run(symmetric, 0, 1, want_q, want_p);
    for (int64_t block_rows : {1, 7, 13, 61, 100})
      for (int threads : {1, 3}) {
        const auto got = run(symmetric, block_rows, threads, grad_q, grad_p);
        expect(std::abs(got.loss - want.loss) < 1e-12, "loss independent of blocks and threads");
        expect(std::abs(got.grad_scale - want.grad_scale) < 1e-12,
               "d loss / d scale independent of blocks and threads");
        double worst = 0.0;
        for (size_t i = 0; i < grad_q.size(); ++i) worst = std::max(worst, std::abs(grad_q[i] - want_q[i]));
        for (size_t i = 0; i < grad_p.size(); ++i) worst = std::max(worst, std::abs(grad_p[i] - want_p[i]));
        expect(worst < 1e-12, "gradients independent of blocks and threads");
      }
  }
}

void test_loss_refuses_bad_arguments() {
  std::vector<float> q(4), p(4), grad(4);
  const hbt::InfoNceInputs inputs{2, 2, 2, nullptr, nullptr};
  auto refused = [&](hbt::InfoNceInputs in, hbt::InfoNceOptions options) {
    try {
      hbt::info_nce<float>(q.data(), p.data(), in, options, grad.data(), grad.data());
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  hbt::InfoNceOptions options;
  expect(refused({0, 2, 2, nullptr, nullptr}, options), "no queries refused");
  expect(refused({2, 1, 2, nullptr, nullptr}, options), "fewer passages than queries refused");
  expect(refused({2, int64_t{1} << 40, int64_t{1} << 30, nullptr, nullptr}, options),
         "sizes beyond BLAS indices refused");
  options.scale = 1e300;  // finite as a double, not as a float
  expect(refused(inputs, options), "scale beyond float refused");
  options.scale = 20.0;
  options.num_threads = 0;
  expect(refused(inputs, options), "zero threads refused");
}

// A grouping of three digits with ',' (as en_US has), without needing that locale installed.
struct Thousands : std::numpunct<char> {
  char do_thousands_sep() const override { return ','; }
  std::string do_grouping() const override { return "\3"; }
};

std::string message_of(void (*call)()) {
  try {
    call();
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return "(nothing thrown)";
}

void test_messages_name_every_value_whatever_the_global_locale() {
  const std::locale before = std::locale::global(std::locale(std::locale::classic(), new Thousands));
  const std::string got = message_of([] {
    hbt::fail("dim ", int64_t{1048576}, ", rows ", size_t{3000}, ", scale ", 0.05, ", tiny ", 1e-9f,
              ", huge ", std::numeric_limits<double>::infinity(), ", ", std::string("text"), ", flag ", true,
              ", char ", 'x', ", min ", std::numeric_limits<int64_t>::min());
  });
  std::locale::global(before);
  const std::string want = "dim 1048576, rows 3000, scale 0.05, tiny 1e-09, huge inf, text, flag true, char x, "
                           "min -9223372036854775808";
  expect(got == want, "check.hpp messages: every value, no locale grouping");
  if (got != want) std::printf("  got:  %s\n  want: %s\n", got.c_str(), want.c_str());
}

}  // namespace

int main() {
  test_messages_name_every_value_whatever_the_global_locale();
  test_sampler_batches();
  test_sampler_mixed_batches();
  test_sampler_config_overflow_is_an_error();
  test_sampler_threads_get_the_same_batches();
  test_huge_language_exponent_terminates();
  test_unsigned_ids_beyond_int64_are_rejected();
  test_loss_matches_direct_computation();
  test_loss_plan_does_not_change_result();
  test_loss_refuses_bad_arguments();
  if (failures == 0) std::printf("all core tests passed\n");
  return failures == 0 ? 0 : 1;
}
