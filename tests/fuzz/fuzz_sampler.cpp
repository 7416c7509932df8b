// Fuzz harness for the hybrid sampler: any configuration and any ids either raise
// std::invalid_argument from the core's checks or give batches that keep every invariant
// (full batches, distinct groups, X-X one language with query == passage, X-Y two languages
// of one group, mixed query == passage in any language), the same from a cursor in chunks as from random access, resumable from state.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <set>
#include <stdexcept>
#include <vector>

#include "fuzz_input.hpp"
#include "sampler/hybrid_sampler.hpp"

using hbt_fuzz::fuzz_check;

namespace {

// Pairs of a parallel corpus: mostly distinct (group, language) cells of a grid chosen by the
// input's bits (valid data, so the sampler's invariants get exercised), sometimes free ids
// (duplicates, negatives, ids near 2^63) that the core must reject cleanly.
void pairs_from(hbt_fuzz::FuzzInput& input, std::vector<int64_t>& languages, std::vector<int64_t>& groups) {
  const uint8_t shape = input.raw<uint8_t>() % 8;
  if (shape < 6) {
    const int64_t num_groups = input.in_range(0, 120), num_languages = input.in_range(0, 9);
    const int64_t language_scale = shape == 5 ? input.in_range(1, INT64_MAX / 16) : 1;
    uint64_t bits = 0;
    for (int64_t g = 0; g < num_groups; ++g) {
      if (g % 8 == 0) bits = input.raw<uint64_t>();
      const auto present = static_cast<uint8_t>(bits >> (8 * (g % 8)));
      for (int64_t l = 0; l < num_languages; ++l) {
        if (present == 0 || ((present >> (l % 8)) & 1)) {  // zero bytes (exhausted input): full grid
          languages.push_back(l * language_scale);
          groups.push_back(shape % 2 ? num_groups - g : g * 3);
        }
      }
    }
    return;
  }
  const int64_t n = input.in_range(0, 200);
  for (int64_t i = 0; i < n; ++i) {
    languages.push_back(shape == 6 ? input.in_range(0, 6) : input.raw<int64_t>());
    groups.push_back(shape == 6 ? input.in_range(0, 60) : input.raw<int64_t>());
  }
}

hbt::SamplerConfig config_from(hbt_fuzz::FuzzInput& input) {
  static const double alphas[] = {0.0, 0.5, 1.0, 0.25, 0.999, 0.5, -0.1, 1.5};
  static const double exponents[] = {0.0, 1.0, 0.3, -0.5, 1e308, -1e308, 700.0};
  hbt::SamplerConfig config;
  // Zero bytes (an exhausted input) decode to a valid value; one value in 16 is out of range.
  const bool bad = input.raw<uint8_t>() % 16 == 15;
  config.batch_size = bad ? input.in_range(-1, 0) : input.in_range(1, 12);
  config.world_size = input.raw<uint8_t>() % 16 == 15 ? 0 : input.in_range(1, 3);
  if (input.raw<uint8_t>() % 16 == 15) {  // overflowing products
    config.batch_size = input.raw<int64_t>();
    config.world_size = input.raw<int64_t>();
  }
  if (input.raw<uint8_t>() % 16 == 15) {
    config.rank = input.boolean() ? -1 : config.world_size;  // out of range
  } else {
    config.rank = input.in_range(0, std::max<int64_t>(config.world_size - 1, 0));
  }
  static const hbt::SamplerMode modes[] = {hbt::SamplerMode::kHybrid, hbt::SamplerMode::kXY,
                                           hbt::SamplerMode::kXX, hbt::SamplerMode::kMixed};
  const uint8_t mode = input.raw<uint8_t>() % 16;
  config.mode = mode == 15 ? static_cast<hbt::SamplerMode>(4) : modes[mode % 4];  // 4 is invalid
  config.alpha = input.real(alphas);
  config.lang_exponent = input.real(exponents);
  config.seed = input.raw<uint64_t>();
  config.drop_last = input.boolean();
  return config;
}

void check_batch(const std::vector<int64_t>& languages, const std::vector<int64_t>& groups,
                 const int64_t* queries, const int64_t* passages, int64_t width, int64_t language,
                 hbt::SamplerMode mode) {
  std::set<int64_t> seen;
  const auto n = static_cast<int64_t>(languages.size());
  for (int64_t i = 0; i < width; ++i) {
    fuzz_check(queries[i] >= 0 && queries[i] < n && passages[i] >= 0 && passages[i] < n, "row in range");
    fuzz_check(groups[queries[i]] == groups[passages[i]], "query and passage share a group");
    seen.insert(groups[queries[i]]);
    if (mode == hbt::SamplerMode::kMixed) {
      fuzz_check(queries[i] == passages[i] && language == -1, "mixed batch");
    } else if (language >= 0) {
      fuzz_check(queries[i] == passages[i] && languages[queries[i]] == language, "X-X batch");
    } else {
      fuzz_check(languages[queries[i]] != languages[passages[i]], "X-Y batch has two languages");
    }
  }
  fuzz_check(static_cast<int64_t>(seen.size()) == width, "groups distinct within a batch");
}

void exercise(hbt::HybridSampler& sampler, const std::vector<int64_t>& languages,
              const std::vector<int64_t>& groups, hbt_fuzz::FuzzInput& input) {
  const int64_t width = sampler.config().batch_size;
  const int64_t num_batches = sampler.num_batches();
  fuzz_check(num_batches >= 1 && num_batches <= static_cast<int64_t>(languages.size()) + 1,
             "epoch length");
  const hbt::SamplerConfig& config = sampler.config();
  if (config.mode == hbt::SamplerMode::kMixed) {  // all pairs, rounded as drop_last says
    const int64_t global = config.batch_size * config.world_size;
    const auto pairs = static_cast<int64_t>(languages.size());
    fuzz_check(num_batches == (config.drop_last ? pairs / global : (pairs + global - 1) / global),
               "mixed epoch length");
  }
  sampler.set_epoch(input.in_range(0, 1000));
  const int64_t start = input.in_range(0, num_batches);
  hbt::SamplerState state = sampler.state();
  state.position = start;
  sampler.set_state(state);
  hbt::EpochCursor cursor = sampler.begin_iteration();
  fuzz_check(cursor.position() == start, "iteration starts at the resumed position");
  std::vector<int64_t> queries(num_batches * width), passages(num_batches * width), kinds(num_batches);
  for (int64_t at = start; at < num_batches;) {
    const int64_t got = cursor.next(input.in_range(1, 70), &queries[at * width], &passages[at * width], &kinds[at]);
    fuzz_check(got >= 1, "cursor advances");
    at += got;
    sampler.record_position(cursor.ticket(), at);
  }
  fuzz_check(sampler.state().position == num_batches, "state follows the cursor");
  std::vector<int64_t> again(num_batches * width), again_passages(num_batches * width), again_kinds(num_batches);
  sampler.batches(cursor.epoch(), 0, num_batches, again.data(), again_passages.data(), again_kinds.data());
  for (int64_t k = start; k < num_batches; ++k) {
    check_batch(languages, groups, &queries[k * width], &passages[k * width], width, kinds[k],
                sampler.config().mode);
    fuzz_check(std::equal(&queries[k * width], &queries[(k + 1) * width], &again[k * width]) &&
                   kinds[k] == again_kinds[k], "chunked cursor equals random access");
  }
}

uint64_t accepted = 0, rejected = 0;

struct Report {  // how deep the run went: a harness that only sees rejections tests little
  ~Report() {
    std::fprintf(stderr, "fuzz_sampler: %llu inputs sampled, %llu rejected by checks\n",
                 static_cast<unsigned long long>(accepted), static_cast<unsigned long long>(rejected));
  }
} report;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  hbt_fuzz::FuzzInput input(data, size);
  const hbt::SamplerConfig config = config_from(input);
  std::vector<int64_t> languages, groups;
  pairs_from(input, languages, groups);
  const auto num_pairs = static_cast<int64_t>(languages.size());
  try {
    hbt::HybridSampler sampler(languages.data(), groups.data(), num_pairs, config);
    exercise(sampler, languages, groups, input);
    ++accepted;
  } catch (const std::invalid_argument&) {
    ++rejected;  // a configuration or id set the core refuses: an expected outcome
  }
  return 0;
}
