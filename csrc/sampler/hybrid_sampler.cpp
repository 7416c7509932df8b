#include "sampler/hybrid_sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/check.hpp"
#include "common/random.hpp"

namespace hbt {
namespace {

// Stream tags keep the random decisions of different purposes independent.
enum : uint64_t { kKindTag = 1, kLanguageOrderTag, kLanguageStreamTag, kCrossStreamTag,
                  kQueryLanguageTag, kPassageLanguageTag, kCrossBatchOrderTag };

// Uniform integer in [0, bound) from 64 random bits; bound is a small language count, so the
// multiply-shift bias (bound / 2^32) is far below anything measurable.
inline uint32_t bounded(uint64_t bits, uint32_t bound) {
  return static_cast<uint32_t>(((bits >> 32) * bound) >> 32);
}

// Ranks of `values` after sorting unique values: out[i] = position of values[i] in `unique`.
std::vector<int64_t> compact_ids(const int64_t* values, int64_t n, std::vector<int64_t>& unique) {
  unique.assign(values, values + n);
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  std::vector<int64_t> compact(n);
  for (int64_t i = 0; i < n; ++i) {
    compact[i] = std::lower_bound(unique.begin(), unique.end(), values[i]) - unique.begin();
  }
  return compact;
}

// Counting sort of rows by key: offsets has num_keys + 1 entries, rows keeps input order
// within a key, which makes the layout (and so every shuffle) independent of the platform.
void bucket_rows(const std::vector<int64_t>& keys, int64_t num_keys,
                 std::vector<int64_t>& offsets, std::vector<HybridSampler::Index>& rows) {
  offsets.assign(num_keys + 1, 0);
  for (int64_t key : keys) ++offsets[key + 1];
  std::partial_sum(offsets.begin(), offsets.end(), offsets.begin());
  std::vector<int64_t> cursor(offsets.begin(), offsets.end() - 1);
  rows.resize(keys.size());
  for (size_t row = 0; row < keys.size(); ++row) {
    rows[cursor[keys[row]]++] = static_cast<HybridSampler::Index>(row);
  }
}

// Integer counts proportional to weights that sum to total (largest remainder method;
// ties go to the lower index so the result is the same everywhere).
std::vector<int64_t> apportion(const std::vector<double>& weights, int64_t total) {
  std::vector<int64_t> counts(weights.size());
  std::vector<std::pair<double, size_t>> remainders(weights.size());
  int64_t assigned = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    const double exact = weights[i] * static_cast<double>(total);
    counts[i] = static_cast<int64_t>(std::floor(exact));
    assigned += counts[i];
    remainders[i] = {exact - static_cast<double>(counts[i]), i};
  }
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; assigned < total; ++i, ++assigned) ++counts[remainders[i % weights.size()].second];
  return counts;
}

}  // namespace

SamplerMode parse_sampler_mode(const std::string& name) {
  if (name == "xx") return SamplerMode::kXX;
  if (name == "xy") return SamplerMode::kXY;
  if (name == "hybrid") return SamplerMode::kHybrid;
  fail("mode must be 'xx', 'xy' or 'hybrid', got '", name, "'");
}

HybridSampler::HybridSampler(const int64_t* languages, const int64_t* groups, int64_t num_pairs,
                             const SamplerConfig& config)
    : config_(config), num_pairs_(num_pairs) {
  require(num_pairs > 0, "languages must not be empty");
  require(num_pairs < static_cast<int64_t>(UINT32_MAX), "at most 2^32 - 1 pairs are supported, got ",
          num_pairs);
  require(config.batch_size >= 1, "batch_size must be >= 1, got ", config.batch_size);
  require(config.world_size >= 1, "world_size must be >= 1, got ", config.world_size);
  require(config.rank >= 0 && config.rank < config.world_size, "rank must be in [0, world_size=",
          config.world_size, "), got ", config.rank);
  require(config.alpha >= 0.0 && config.alpha <= 1.0, "alpha must be in [0, 1], got ", config.alpha);
  require(std::isfinite(config.lang_exponent), "lang_exponent must be finite, got ",
          config.lang_exponent);
  index_pairs(languages, groups);
  validate_and_size();
  index_cross_layers();
  set_epoch(0);
}

void HybridSampler::index_pairs(const int64_t* languages, const int64_t* groups) {
  for (int64_t i = 0; i < num_pairs_; ++i) {
    require(languages[i] >= 0, "languages must be non-negative ids, got ", languages[i], " at row ", i);
    require(groups[i] >= 0, "groups must be non-negative ids, got ", groups[i], " at row ", i);
  }
  const std::vector<int64_t> language = compact_ids(languages, num_pairs_, language_ids_);
  std::vector<int64_t> group_ids;
  const std::vector<int64_t> group = compact_ids(groups, num_pairs_, group_ids);
  const auto num_languages = static_cast<int64_t>(language_ids_.size());
  const auto num_groups = static_cast<int64_t>(group_ids.size());

  bucket_rows(language, num_languages, language_offsets_, language_pairs_);
  // Within a group, rows ordered by language: bucket the language-ordered rows by group.
  group_offsets_.assign(num_groups + 1, 0);
  for (int64_t g : group) ++group_offsets_[g + 1];
  std::partial_sum(group_offsets_.begin(), group_offsets_.end(), group_offsets_.begin());
  std::vector<int64_t> cursor(group_offsets_.begin(), group_offsets_.end() - 1);
  group_pairs_.resize(num_pairs_);
  for (Index row : language_pairs_) group_pairs_[cursor[group[row]]++] = row;

  for (int64_t g = 0; g < num_groups; ++g) {
    for (int64_t k = group_offsets_[g] + 1; k < group_offsets_[g + 1]; ++k) {
      const Index a = group_pairs_[k - 1], b = group_pairs_[k];
      require(language[a] != language[b], "pairs must have distinct (group, language): rows ", a,
              " and ", b, " both have group ", groups[a], " and language ", languages[a]);
    }
    const int64_t count = group_offsets_[g + 1] - group_offsets_[g];
    if (count >= 2) {
      cross_groups_.push_back({static_cast<Index>(g), static_cast<Index>(group_offsets_[g]),
                               static_cast<uint32_t>(count)});
    }
  }
}

void HybridSampler::validate_and_size() {
  const int64_t global = global_batch();
  const bool needs_xx = config_.mode == SamplerMode::kXX ||
                        (config_.mode == SamplerMode::kHybrid && config_.alpha > 0.0);
  const bool needs_xy = config_.mode == SamplerMode::kXY ||
                        (config_.mode == SamplerMode::kHybrid && config_.alpha < 1.0);
  const auto num_languages = static_cast<int64_t>(language_ids_.size());

  // Weights n ** e, computed in log space relative to the heaviest language so that no
  // exponent overflows; e = 0 and e = 1 stay exact (no libm rounding across platforms).
  int64_t xx_pairs = 0;
  std::vector<double> log_weight(num_languages, -INFINITY);
  double max_log_weight = -INFINITY;
  for (int64_t l = 0; l < num_languages; ++l) {
    const int64_t size = language_offsets_[l + 1] - language_offsets_[l];
    if (size < global) continue;
    xx_pairs += size;
    log_weight[l] = config_.lang_exponent == 0.0 ? 0.0 : config_.lang_exponent * std::log(static_cast<double>(size));
    max_log_weight = std::max(max_log_weight, log_weight[l]);
  }
  double weight_sum = 0.0;
  language_weights_.assign(num_languages, 0.0);
  for (int64_t l = 0; l < num_languages; ++l) {
    const int64_t size = language_offsets_[l + 1] - language_offsets_[l];
    if (size < global) continue;
    language_weights_[l] = config_.lang_exponent == 1.0 ? static_cast<double>(size)
                                                        : std::exp(log_weight[l] - max_log_weight);
    weight_sum += language_weights_[l];
  }
  for (double& w : language_weights_) w /= (weight_sum > 0.0 ? weight_sum : 1.0);
  int64_t xy_pairs = 0;
  for (const CrossGroup& g : cross_groups_) xy_pairs += g.count;

  if (needs_xx) {
    require(xx_pairs > 0, "batch_size * world_size = ", global,
            " exceeds the pairs of every language, so no X-X batch can be formed");
  }
  if (needs_xy) {
    require(!cross_groups_.empty(), "no group has pairs in two languages, so mode '",
            config_.mode == SamplerMode::kXY ? "xy" : "hybrid", "' cannot form X-Y batches");
    require(static_cast<int64_t>(cross_groups_.size()) >= global, "batch_size * world_size = ",
            global, " exceeds the ", cross_groups_.size(),
            " groups present in two languages, so no X-Y batch can be formed");
  }
  double epoch_pairs = 0.0;
  switch (config_.mode) {
    case SamplerMode::kXX: epoch_pairs = static_cast<double>(xx_pairs); break;
    case SamplerMode::kXY: epoch_pairs = static_cast<double>(xy_pairs); break;
    case SamplerMode::kHybrid:
      epoch_pairs = config_.alpha * static_cast<double>(xx_pairs) +
                    (1.0 - config_.alpha) * static_cast<double>(xy_pairs);
  }
  const double batches = epoch_pairs / static_cast<double>(global);
  num_batches_ = static_cast<int64_t>(config_.drop_last ? std::floor(batches) : std::ceil(batches));
  num_batches_ = std::max<int64_t>(num_batches_, 1);
  language_streams_.assign(num_languages, Stream<Index>{});
}

void HybridSampler::index_cross_layers() {
  uint32_t num_layers = 0;
  for (const CrossGroup& g : cross_groups_) num_layers = std::max(num_layers, g.count);
  std::vector<int64_t> layer_sizes(num_layers, 0);
  for (const CrossGroup& g : cross_groups_) {
    for (uint32_t layer = 0; layer < g.count; ++layer) ++layer_sizes[layer];
  }
  layer_batch_offsets_.assign(num_layers + 1, 0);
  for (uint32_t layer = 0; layer < num_layers; ++layer) {
    layer_batch_offsets_[layer + 1] = layer_batch_offsets_[layer] + layer_sizes[layer] / global_batch();
  }
  cross_batches_per_pass_ = layer_batch_offsets_.back();
  layer_streams_.assign(num_layers, Stream<CrossGroup>{});
}

void HybridSampler::set_epoch(int64_t epoch) {
  require(epoch >= 0, "epoch must be >= 0, got ", epoch);
  epoch_ = epoch;
  for (Stream<Index>& s : language_streams_) s.pass = -1;
  for (Stream<CrossGroup>& s : layer_streams_) s.pass = -1;
  cross_batch_order_.pass = -1;
  build_plan();
}

void HybridSampler::build_plan() {
  const uint64_t seed = config_.seed;
  plan_language_.assign(num_batches_, -1);
  int64_t num_xx = 0;
  for (int64_t k = 0; k < num_batches_; ++k) {
    bool is_xx = config_.mode == SamplerMode::kXX;
    if (config_.mode == SamplerMode::kHybrid) {
      is_xx = to_unit(hash_key(seed, kKindTag, epoch_, k)) < config_.alpha;
    }
    if (is_xx) {
      plan_language_[k] = 0;
      ++num_xx;
    }
  }
  // Stratified language draw: each language gets its weighted share of the X-X batches
  // (so frequencies match the weights exactly), in a random order.
  std::vector<int32_t> order;
  order.reserve(num_xx);
  const std::vector<int64_t> quota = apportion(language_weights_, num_xx);
  for (size_t l = 0; l < quota.size(); ++l) order.insert(order.end(), quota[l], static_cast<int32_t>(l));
  Rng rng(hash_key(seed, kLanguageOrderTag, epoch_));
  shuffle(order.data(), order.size(), rng);

  plan_ordinal_.assign(num_batches_, 0);
  std::vector<int64_t> used(language_ids_.size(), 0);
  int64_t cross_used = 0;
  auto next_language = order.begin();
  for (int64_t k = 0; k < num_batches_; ++k) {
    if (plan_language_[k] < 0) {
      plan_ordinal_[k] = cross_used++;
    } else {
      plan_language_[k] = *next_language++;
      plan_ordinal_[k] = used[plan_language_[k]]++;
    }
  }
}

template <typename T, typename Fill>
const std::vector<T>& HybridSampler::stream_pass(Stream<T>& stream, uint64_t key, int64_t pass,
                                                 Fill fill) {
  if (stream.pass != pass) {
    fill(stream.order);
    Rng rng(hash_key(config_.seed, key, epoch_, pass));
    shuffle(stream.order.data(), stream.order.size(), rng);
    stream.pass = pass;
  }
  return stream.order;
}

void HybridSampler::fill_xx(int64_t language, int64_t ordinal, int64_t* query_rows,
                            int64_t* passage_rows) {
  const int64_t size = language_offsets_[language + 1] - language_offsets_[language];
  const int64_t per_pass = size / global_batch();
  const Index* pool = language_pairs_.data() + language_offsets_[language];
  const auto& order = stream_pass(language_streams_[language], hash_key(kLanguageStreamTag, language),
                                  ordinal / per_pass,
                                  [&](std::vector<Index>& out) { out.assign(pool, pool + size); });
  const int64_t start = (ordinal % per_pass) * global_batch() + config_.rank * config_.batch_size;
  for (int64_t i = 0; i < config_.batch_size; ++i) {
    query_rows[i] = passage_rows[i] = order[start + i];
  }
}

void HybridSampler::fill_xy(int64_t ordinal, int64_t* query_rows, int64_t* passage_rows) {
  const int64_t per_pass = cross_batches_per_pass_;
  const int64_t pass = ordinal / per_pass;
  const uint32_t batch_id = stream_pass(cross_batch_order_, kCrossBatchOrderTag, pass,
                                        [&](std::vector<uint32_t>& out) {
                                          out.resize(per_pass);
                                          std::iota(out.begin(), out.end(), 0u);
                                        })[ordinal % per_pass];
  const auto layer = static_cast<uint32_t>(
      std::upper_bound(layer_batch_offsets_.begin(), layer_batch_offsets_.end(), batch_id) -
      layer_batch_offsets_.begin() - 1);
  const int64_t slot = batch_id - layer_batch_offsets_[layer];
  const auto& order = stream_pass(layer_streams_[layer], hash_key(kCrossStreamTag, layer), pass,
                                  [&](std::vector<CrossGroup>& out) {
                                    out.clear();
                                    for (const CrossGroup& g : cross_groups_) {
                                      if (g.count > layer) out.push_back(g);
                                    }
                                  });
  const CrossGroup* groups = order.data() + slot * global_batch() + config_.rank * config_.batch_size;
  // One key per (epoch, pass) and per (epoch, pass, layer), then a single mix per row.
  const uint64_t offset_key = hash_key(config_.seed, kQueryLanguageTag, epoch_, pass);
  const uint64_t partner_key = hash_key(config_.seed, kPassageLanguageTag, epoch_, pass, layer);
  for (int64_t i = 0; i < config_.batch_size; ++i) {
    const auto [group, first, count] = groups[i];
    const uint32_t offset = bounded(hash_combine(offset_key, group), count);
    const uint32_t query = (offset + layer) % count;  // layer < count: distinct per layer
    const uint32_t step = 1 + bounded(hash_combine(partner_key, group), count - 1);
    query_rows[i] = group_pairs_[first + query];
    passage_rows[i] = group_pairs_[first + (query + step) % count];
  }
}

void HybridSampler::batch(int64_t index, int64_t* query_rows, int64_t* passage_rows) {
  require(index >= 0 && index < num_batches_, "batch index must be in [0, ", num_batches_,
          "), got ", index);
  if (plan_language_[index] < 0) {
    fill_xy(plan_ordinal_[index], query_rows, passage_rows);
  } else {
    fill_xx(plan_language_[index], plan_ordinal_[index], query_rows, passage_rows);
  }
}

void HybridSampler::batches(int64_t start, int64_t count, int64_t* query_rows,
                            int64_t* passage_rows) {
  require(start >= 0 && count >= 0 && start + count <= num_batches_, "batches [", start, ", ",
          start + count, ") outside the epoch's ", num_batches_, " batches");
  for (int64_t k = 0; k < count; ++k) {
    batch(start + k, query_rows + k * config_.batch_size, passage_rows + k * config_.batch_size);
  }
}

int64_t HybridSampler::batch_language(int64_t index) const {
  require(index >= 0 && index < num_batches_, "batch index must be in [0, ", num_batches_,
          "), got ", index);
  return plan_language_[index] < 0 ? -1 : language_ids_[plan_language_[index]];
}

std::vector<int64_t> HybridSampler::xx_languages() const {
  std::vector<int64_t> result;
  for (size_t l = 0; l < language_ids_.size(); ++l) {
    if (language_offsets_[l + 1] - language_offsets_[l] >= global_batch()) result.push_back(language_ids_[l]);
  }
  return result;
}

int64_t HybridSampler::memory_bytes() const {
  auto bytes = [](const auto& v) { return static_cast<int64_t>(v.capacity() * sizeof(v[0])); };
  int64_t total = bytes(language_ids_) + bytes(language_offsets_) + bytes(language_pairs_) +
                  bytes(group_offsets_) + bytes(group_pairs_) + bytes(cross_groups_) +
                  bytes(language_weights_) + bytes(plan_language_) + bytes(plan_ordinal_) +
                  bytes(layer_batch_offsets_) + bytes(cross_batch_order_.order);
  for (const auto& s : layer_streams_) total += bytes(s.order);
  for (const Stream<Index>& s : language_streams_) total += bytes(s.order);
  return total;
}

std::vector<int64_t> HybridSampler::small_languages() const {
  std::vector<int64_t> result;
  for (size_t l = 0; l < language_ids_.size(); ++l) {
    if (language_offsets_[l + 1] - language_offsets_[l] < global_batch()) result.push_back(language_ids_[l]);
  }
  return result;
}

}  // namespace hbt
