// The C++ core on its own, without Python: sampler invariants and the fused loss against a
// direct double-precision computation. Built with -DHBT_BUILD_TESTS=ON, run by ctest.
#include <cmath>
#include <cstdio>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

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

}  // namespace

int main() {
  test_sampler_batches();
  test_sampler_config_overflow_is_an_error();
  test_sampler_threads_get_the_same_batches();
  test_huge_language_exponent_terminates();
  test_unsigned_ids_beyond_int64_are_rejected();
  test_loss_matches_direct_computation();
  if (failures == 0) std::printf("all core tests passed\n");
  return failures == 0 ? 0 : 1;
}
