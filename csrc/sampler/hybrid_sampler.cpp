#include "sampler/hybrid_sampler.hpp"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "common/check.hpp"
#include "common/checked.hpp"
#include "common/random.hpp"

namespace hbt {
namespace {

// Stream tags keep the random decisions of different purposes independent.
enum : uint64_t { kKindTag = 1, kLanguageOrderTag, kLanguageStreamTag, kCrossStreamTag,
                  kQueryLanguageTag, kPassageLanguageTag, kCrossBatchOrderTag, kMixedLanguageTag };

// Index of a group's language in layer `layer`: (offset + layer) mod count, where layer < count
// and offset < count, so one subtraction is the modulo (and no division).
inline uint32_t layer_language(uint32_t offset, uint32_t layer, uint32_t count) {
  const uint32_t language = offset + layer;
  return language >= count ? language - count : language;
}

// Uniform integer in [0, bound) from 64 random bits; bound is a small language count, so the
// multiply-shift bias (bound / 2^32) is far below anything measurable.
inline uint32_t bounded(uint64_t bits, uint32_t bound) {
  return static_cast<uint32_t>(((bits >> 32) * bound) >> 32);
}

// Integer counts proportional to weights that sum to total (largest remainder method;
// ties go to the lower index so the result is the same everywhere). Weights are finite,
// non-negative and sum to 1 (or are all 0 when total is 0).
std::vector<int64_t> apportion(const std::vector<double>& weights, int64_t total) {
  std::vector<int64_t> counts(weights.size());
  std::vector<std::pair<double, size_t>> remainders(weights.size());
  int64_t assigned = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    const double exact = std::min(weights[i], 1.0) * static_cast<double>(total);
    counts[i] = static_cast<int64_t>(std::floor(exact));
    assigned += counts[i];
    remainders[i] = {exact - static_cast<double>(counts[i]), i};
  }
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; assigned < total; ++i, ++assigned) ++counts[remainders[i % weights.size()].second];
  return counts;
}

// The spans of a batch's groups are a random slot of a layer: fetch all their cache lines at once.
void prefetch_spans(const PairIndex::GroupSpan* spans, int64_t count) {
  const int64_t bytes = count * static_cast<int64_t>(sizeof(PairIndex::GroupSpan));
  for (int64_t line = 0; line < bytes; line += 64) {
    __builtin_prefetch(reinterpret_cast<const char*>(spans) + line);
  }
}

std::string hex_digest(uint64_t digest) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016" PRIx64, digest);
  return text;
}

const SamplerConfig& validated(const SamplerConfig& config) {
  config.validate();
  return config;
}

}  // namespace

SamplerMode parse_sampler_mode(const std::string& name) {
  if (name == "xx") return SamplerMode::kXX;
  if (name == "xy") return SamplerMode::kXY;
  if (name == "hybrid") return SamplerMode::kHybrid;
  if (name == "mixed") return SamplerMode::kMixed;
  fail("mode must be 'xx', 'xy', 'hybrid' or 'mixed', got '", name, "'");
}

const char* sampler_mode_name(SamplerMode mode) {
  switch (mode) {
    case SamplerMode::kXX: return "xx";
    case SamplerMode::kXY: return "xy";
    case SamplerMode::kHybrid: return "hybrid";
    case SamplerMode::kMixed: return "mixed";
  }
  fail("invalid sampler mode ", static_cast<int>(mode));
}

void SamplerConfig::validate() const {
  sampler_mode_name(mode);
  require(batch_size >= 1, "batch_size must be >= 1, got ", batch_size);
  require(world_size >= 1, "world_size must be >= 1, got ", world_size);
  global_batch();
  require(rank >= 0 && rank < world_size, "rank must be in [0, world_size=", world_size,
          "), got ", rank);
  require(alpha >= 0.0 && alpha <= 1.0, "alpha must be in [0, 1], got ", alpha);
  require(std::isfinite(lang_exponent), "lang_exponent must be finite, got ", lang_exponent);
}

int64_t SamplerConfig::global_batch() const {
  return checked_mul(batch_size, world_size, "batch_size * world_size");
}

template <typename LanguageId, typename GroupId>
HybridSampler::HybridSampler(const LanguageId* languages, const GroupId* groups, int64_t num_pairs,
                             const SamplerConfig& config)
    : config_(validated(config)),
      index_(languages, groups, num_pairs, config.mode == SamplerMode::kMixed),
      global_batch_(config.global_batch()) {
  compute_language_weights();
  size_epoch();
  index_layers();
}

template HybridSampler::HybridSampler(const int64_t*, const int64_t*, int64_t, const SamplerConfig&);
template HybridSampler::HybridSampler(const int64_t*, const uint64_t*, int64_t, const SamplerConfig&);
template HybridSampler::HybridSampler(const uint64_t*, const int64_t*, int64_t, const SamplerConfig&);
template HybridSampler::HybridSampler(const uint64_t*, const uint64_t*, int64_t, const SamplerConfig&);

void HybridSampler::compute_language_weights() {
  // Weight n ** e relative to the language that weighs most (the largest for e > 0, the
  // smallest for e < 0): exp(e * (log n - log n_ref)) has an exponent <= 0, so no finite e
  // overflows or makes NaN; e = 0 and e = 1 stay exact (no libm rounding across platforms).
  const int64_t num_languages = index_.num_languages();
  double log_reference = 0.0;
  bool any = false;
  for (int64_t l = 0; l < num_languages; ++l) {
    if (!is_xx_language(l)) continue;
    const double log_size = std::log(static_cast<double>(index_.language_size(l)));
    const bool heavier = config_.lang_exponent > 0 ? log_size > log_reference : log_size < log_reference;
    if (!any || heavier) log_reference = log_size;
    any = true;
  }
  language_weights_.assign(num_languages, 0.0);
  double weight_sum = 0.0;
  for (int64_t l = 0; l < num_languages; ++l) {
    if (!is_xx_language(l)) continue;
    const auto size = static_cast<double>(index_.language_size(l));
    double weight = 1.0;
    if (config_.lang_exponent == 1.0) {
      weight = size;
    } else if (config_.lang_exponent != 0.0) {
      weight = std::exp(config_.lang_exponent * (std::log(size) - log_reference));
    }
    language_weights_[l] = weight;
    weight_sum += weight;  // >= 1: the reference language weighs exactly 1 (or n for e = 1)
  }
  for (double& w : language_weights_) w /= (weight_sum > 0.0 ? weight_sum : 1.0);
}

void HybridSampler::size_epoch() {
  const bool needs_xx = config_.mode == SamplerMode::kXX ||
                        (config_.mode == SamplerMode::kHybrid && config_.alpha > 0.0);
  const bool needs_xy = config_.mode == SamplerMode::kXY ||
                        (config_.mode == SamplerMode::kHybrid && config_.alpha < 1.0);
  int64_t xx_pairs = 0;
  for (int64_t l = 0; l < index_.num_languages(); ++l) {
    if (is_xx_language(l)) xx_pairs += index_.language_size(l);
  }
  const int64_t xy_pairs = index_.cross_pairs();
  const auto num_cross_groups = static_cast<int64_t>(index_.cross_groups().size());
  if (needs_xx) {
    require(xx_pairs > 0, "batch_size * world_size = ", global_batch_,
            " exceeds the pairs of every language, so no X-X batch can be formed");
  }
  if (needs_xy) {
    require(num_cross_groups > 0, "no group has pairs in two languages, so mode '",
            sampler_mode_name(config_.mode), "' cannot form X-Y batches");
    require(num_cross_groups >= global_batch_, "batch_size * world_size = ", global_batch_,
            " exceeds the ", num_cross_groups,
            " groups present in two languages, so no X-Y batch can be formed");
  }
  if (config_.mode == SamplerMode::kMixed) {
    require(index_.num_groups() >= global_batch_, "batch_size * world_size = ", global_batch_,
            " exceeds the ", index_.num_groups(), " groups, so no mixed batch can be formed");
  }
  double epoch_pairs = 0.0;
  switch (config_.mode) {
    case SamplerMode::kXX: epoch_pairs = static_cast<double>(xx_pairs); break;
    case SamplerMode::kXY: epoch_pairs = static_cast<double>(xy_pairs); break;
    case SamplerMode::kHybrid:
      epoch_pairs = config_.alpha * static_cast<double>(xx_pairs) +
                    (1.0 - config_.alpha) * static_cast<double>(xy_pairs);
      break;
    case SamplerMode::kMixed: epoch_pairs = static_cast<double>(index_.num_pairs()); break;
  }
  // At most num_pairs / global_batch + 1 batches, so the conversion cannot overflow.
  const double batches = epoch_pairs / static_cast<double>(global_batch_);
  num_batches_ = static_cast<int64_t>(config_.drop_last ? std::floor(batches) : std::ceil(batches));
  num_batches_ = std::max<int64_t>(num_batches_, 1);
}

// The single-language groups are indexed in mode "mixed" only, so every other mode layers the
// cross-lingual groups alone, in the same order as before mode "mixed" existed.
template <typename Visit>
void HybridSampler::for_each_layered_group(Visit visit) const {
  for (const PairIndex::GroupSpan& g : index_.cross_groups()) visit(g);
  for (const PairIndex::GroupSpan& g : index_.single_language_groups()) visit(g);
}

void HybridSampler::index_layers() {
  uint32_t num_layers = 0;
  for_each_layered_group([&](const PairIndex::GroupSpan& g) { num_layers = std::max(num_layers, g.count); });
  layer_sizes_.assign(num_layers, 0);
  for_each_layered_group([&](const PairIndex::GroupSpan& g) {
    for (uint32_t layer = 0; layer < g.count; ++layer) ++layer_sizes_[layer];
  });
  layer_batch_offsets_.assign(num_layers + 1, 0);
  for (uint32_t layer = 0; layer < num_layers; ++layer) {
    layer_batch_offsets_[layer + 1] = layer_batch_offsets_[layer] + layer_sizes_[layer] / global_batch_;
  }
  layer_batches_per_pass_ = layer_batch_offsets_.back();
}

int64_t HybridSampler::epoch() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  return epoch_;
}

void HybridSampler::set_epoch(int64_t epoch) {
  require(epoch >= 0, "epoch must be >= 0, got ", epoch);
  std::lock_guard<std::mutex> lock(state_mutex_);
  epoch_ = epoch;
  position_ = resume_at_ = 0;
  ++ticket_;  // running iterators no longer move the state
}

SamplerState HybridSampler::state() const {
  SamplerState state;
  {
    std::lock_guard<std::mutex> lock(state_mutex_);
    state.epoch = epoch_;
    state.position = position_;
  }
  state.config = config_;
  state.num_pairs = index_.num_pairs();
  state.num_batches = num_batches_;
  state.data_digest = hex_digest(index_.digest());
  return state;
}

void HybridSampler::set_state(const SamplerState& state) {
  const SamplerConfig& saved = state.config;
  auto same = [](const char* name, const auto& theirs, const auto& ours) {
    require(theirs == ours, "state was saved with ", name, "=", theirs, " but this sampler has ",
            name, "=", ours);
  };
  same("mode", std::string(sampler_mode_name(saved.mode)), std::string(sampler_mode_name(config_.mode)));
  same("alpha", saved.alpha, config_.alpha);
  same("lang_exponent", saved.lang_exponent, config_.lang_exponent);
  same("seed", saved.seed, config_.seed);
  same("batch_size", saved.batch_size, config_.batch_size);
  same("world_size", saved.world_size, config_.world_size);
  auto boolean = [](bool value) { return std::string(value ? "True" : "False"); };
  same("drop_last", boolean(saved.drop_last), boolean(config_.drop_last));
  same("num_pairs", state.num_pairs, index_.num_pairs());
  same("num_batches", state.num_batches, num_batches_);
  same("data_digest", state.data_digest, hex_digest(index_.digest()));
  require(state.epoch >= 0, "state epoch must be >= 0, got ", state.epoch);
  require(state.position >= 0 && state.position <= num_batches_, "state position must be in [0, ",
          num_batches_, "], got ", state.position);
  std::lock_guard<std::mutex> lock(state_mutex_);
  epoch_ = state.epoch;
  position_ = resume_at_ = state.position;
  ++ticket_;
}

EpochCursor HybridSampler::begin_iteration() {
  int64_t epoch, start;
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(state_mutex_);
    epoch = epoch_;
    start = position_ = resume_at_;
    resume_at_ = 0;
    ticket = ++ticket_;
  }
  return EpochCursor(*this, epoch, start, ticket);
}

void HybridSampler::record_position(uint64_t ticket, int64_t position) {
  std::lock_guard<std::mutex> lock(state_mutex_);
  if (ticket == ticket_) position_ = position;
}

void HybridSampler::batches(int64_t epoch, int64_t start, int64_t count, int64_t* query_rows,
                            int64_t* passage_rows, int64_t* languages) const {
  require(epoch >= 0, "epoch must be >= 0, got ", epoch);
  require(start >= 0 && count >= 0 && start <= num_batches_ && count <= num_batches_ - start,
          "batches [", start, ", ", start, " + ", count, ") outside the epoch's ", num_batches_,
          " batches");
  EpochCursor cursor(*this, epoch, start);
  cursor.next(count, query_rows, passage_rows, languages);
}

std::vector<int64_t> HybridSampler::xx_languages() const {
  std::vector<int64_t> result;
  for (int64_t l = 0; l < index_.num_languages(); ++l) {
    if (is_xx_language(l)) result.push_back(index_.language_id(l));
  }
  return result;
}

std::vector<int64_t> HybridSampler::small_languages() const {
  std::vector<int64_t> result;
  for (int64_t l = 0; l < index_.num_languages(); ++l) {
    if (!is_xx_language(l)) result.push_back(index_.language_id(l));
  }
  return result;
}

int64_t HybridSampler::memory_bytes() const {
  int64_t cursor = num_batches_ * static_cast<int64_t>(sizeof(int32_t) + sizeof(int64_t)) +
                   layer_batches_per_pass_ * static_cast<int64_t>(sizeof(uint32_t));
  for (int64_t l = 0; l < index_.num_languages(); ++l) {
    if (is_xx_language(l)) cursor += index_.language_size(l) * static_cast<int64_t>(sizeof(PairIndex::Row));
  }
  for (int64_t size : layer_sizes_) cursor += size * static_cast<int64_t>(sizeof(PairIndex::GroupSpan));
  auto bytes = [](const auto& v) { return static_cast<int64_t>(v.capacity() * sizeof(v[0])); };
  return index_.memory_bytes() + bytes(language_weights_) + bytes(layer_sizes_) +
         bytes(layer_batch_offsets_) + cursor;
}

// ---------------------------------------------------------------- EpochCursor

EpochCursor::EpochCursor(const HybridSampler& sampler, int64_t epoch, int64_t position, uint64_t ticket)
    : sampler_(&sampler), epoch_(epoch), position_(position), ticket_(ticket) {
  require(epoch >= 0, "epoch must be >= 0, got ", epoch);
  require(position >= 0 && position <= sampler.num_batches(), "position must be in [0, ",
          sampler.num_batches(), "], got ", position);
  language_streams_.resize(sampler.index_.num_languages());
  layer_streams_.resize(sampler.layer_sizes_.size());
  build_plan();
}

void EpochCursor::build_plan() {
  const SamplerConfig& config = sampler_->config_;
  const int64_t num_batches = sampler_->num_batches_;
  plan_language_.assign(num_batches, -1);
  int64_t num_xx = 0;
  for (int64_t k = 0; k < num_batches; ++k) {
    bool is_xx = config.mode == SamplerMode::kXX;
    if (config.mode == SamplerMode::kHybrid) {
      is_xx = to_unit(hash_key(config.seed, kKindTag, epoch_, k)) < config.alpha;
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
  const std::vector<int64_t> quota = apportion(sampler_->language_weights_, num_xx);
  for (size_t l = 0; l < quota.size(); ++l) order.insert(order.end(), quota[l], static_cast<int32_t>(l));
  Rng rng(hash_key(config.seed, kLanguageOrderTag, epoch_));
  shuffle(order.data(), order.size(), rng);

  plan_ordinal_.assign(num_batches, 0);
  std::vector<int64_t> used(sampler_->index_.num_languages(), 0);
  int64_t layered_used = 0;
  auto next_language = order.begin();
  for (int64_t k = 0; k < num_batches; ++k) {
    if (plan_language_[k] < 0) {
      plan_ordinal_[k] = layered_used++;
    } else {
      plan_language_[k] = *next_language++;
      plan_ordinal_[k] = used[plan_language_[k]]++;
    }
  }
}

template <typename T, typename Fill>
const std::vector<T>& EpochCursor::stream_pass(Stream<T>& stream, uint64_t key, int64_t pass, Fill fill) {
  if (stream.pass != pass) {
    fill(stream.order);
    Rng rng(hash_key(sampler_->config_.seed, key, epoch_, pass));
    shuffle(stream.order.data(), stream.order.size(), rng);
    stream.pass = pass;
  }
  return stream.order;
}

void EpochCursor::fill_xx(int64_t language, int64_t ordinal, int64_t* query_rows, int64_t* passage_rows) {
  const PairIndex& index = sampler_->index_;
  const SamplerConfig& config = sampler_->config_;
  const int64_t global = sampler_->global_batch_;
  const int64_t size = index.language_size(language);
  const int64_t per_pass = size / global;
  const PairIndex::Row* pool = index.language_rows(language);
  const auto& order = stream_pass(language_streams_[language], hash_key(kLanguageStreamTag, language),
                                  ordinal / per_pass,
                                  [&](std::vector<PairIndex::Row>& out) { out.assign(pool, pool + size); });
  const int64_t start = (ordinal % per_pass) * global + config.rank * config.batch_size;
  for (int64_t i = 0; i < config.batch_size; ++i) {
    query_rows[i] = passage_rows[i] = order[start + i];
  }
}

const PairIndex::GroupSpan* EpochCursor::layer_slot(int64_t ordinal, bool generate, uint32_t* layer_out) {
  const SamplerConfig& config = sampler_->config_;
  const auto& offsets = sampler_->layer_batch_offsets_;
  const int64_t per_pass = sampler_->layer_batches_per_pass_;
  const int64_t pass = ordinal / per_pass;
  if (!generate && layer_batch_order_.pass != pass) return nullptr;
  const uint32_t batch_id = stream_pass(layer_batch_order_, kCrossBatchOrderTag, pass,
                                        [&](std::vector<uint32_t>& out) {
                                          out.resize(per_pass);
                                          std::iota(out.begin(), out.end(), 0u);
                                        })[ordinal % per_pass];
  const auto layer = static_cast<uint32_t>(
      std::upper_bound(offsets.begin(), offsets.end(), batch_id) - offsets.begin() - 1);
  if (!generate && layer_streams_[layer].pass != pass) return nullptr;
  const int64_t slot = batch_id - offsets[layer];
  const auto& order = stream_pass(layer_streams_[layer], hash_key(kCrossStreamTag, layer), pass,
                                  [&](std::vector<GroupSpan>& out) {
                                    out.clear();
                                    out.reserve(sampler_->layer_sizes_[layer]);
                                    sampler_->for_each_layered_group([&](const GroupSpan& g) {
                                      if (g.count > layer) out.push_back(g);
                                    });
                                  });
  if (layer_out != nullptr) *layer_out = layer;
  return order.data() + slot * sampler_->global_batch_ + config.rank * config.batch_size;
}

void EpochCursor::prefetch_batch(int64_t index) {
  if (index >= sampler_->num_batches_ || plan_language_[index] >= 0) return;
  // Only when no stream has to be regenerated for it: batch `index` must not change the
  // streams the batch before it reads.
  const GroupSpan* groups = layer_slot(plan_ordinal_[index], false, nullptr);
  if (groups != nullptr) prefetch_spans(groups, sampler_->config_.batch_size);
}

void EpochCursor::fill_xy(int64_t ordinal, int64_t* query_rows, int64_t* passage_rows) {
  const SamplerConfig& config = sampler_->config_;
  const int64_t pass = ordinal / sampler_->layer_batches_per_pass_;
  uint32_t layer = 0;
  const GroupSpan* groups = layer_slot(ordinal, true, &layer);
  prefetch_spans(groups, config.batch_size);
  const PairIndex::Row* group_rows = sampler_->index_.group_rows();
  // One key per (epoch, pass) and per (epoch, pass, layer), then a single mix per row.
  const uint64_t offset_key = hash_key(config.seed, kQueryLanguageTag, epoch_, pass);
  const uint64_t partner_key = hash_key(config.seed, kPassageLanguageTag, epoch_, pass, layer);
  // Two passes: first the position of each row in group_rows (prefetched as soon as known),
  // then the gather. Each row is a random access into an array of N rows, so the misses of a
  // whole batch overlap instead of queueing one behind the other.
  for (int64_t i = 0; i < config.batch_size; ++i) {
    const auto [group, first, count] = groups[i];
    // layer < count, so each layer of a pass gives the group another query language
    const uint32_t query = layer_language(bounded(hash_combine(offset_key, group), count), layer, count);
    // query + 1 + (a value below count - 1) is below 2 * count: one subtraction is the modulo.
    uint32_t passage = query + 1 + bounded(hash_combine(partner_key, group), count - 1);
    if (passage >= count) passage -= count;
    query_rows[i] = first + query;
    passage_rows[i] = first + passage;
    __builtin_prefetch(group_rows + query_rows[i]);
    __builtin_prefetch(group_rows + passage_rows[i]);
  }
  for (int64_t i = 0; i < config.batch_size; ++i) {
    query_rows[i] = group_rows[query_rows[i]];
    passage_rows[i] = group_rows[passage_rows[i]];
  }
}

// Mixed batches are cut from the layers like X-Y batches, with the group's query row also its
// passage row: a pass over the layers so uses each pair of every group once, and the rows of a
// batch, from distinct groups, are in whichever languages their groups' offsets give.
void EpochCursor::fill_mixed(int64_t ordinal, int64_t* query_rows, int64_t* passage_rows) {
  const SamplerConfig& config = sampler_->config_;
  const int64_t pass = ordinal / sampler_->layer_batches_per_pass_;
  uint32_t layer = 0;
  const GroupSpan* groups = layer_slot(ordinal, true, &layer);
  prefetch_spans(groups, config.batch_size);
  const PairIndex::Row* group_rows = sampler_->index_.group_rows();
  const uint64_t offset_key = hash_key(config.seed, kMixedLanguageTag, epoch_, pass);
  for (int64_t i = 0; i < config.batch_size; ++i) {  // positions first, prefetched (see fill_xy)
    const auto [group, first, count] = groups[i];
    query_rows[i] = first + layer_language(bounded(hash_combine(offset_key, group), count), layer, count);
    __builtin_prefetch(group_rows + query_rows[i]);
  }
  for (int64_t i = 0; i < config.batch_size; ++i) {
    query_rows[i] = passage_rows[i] = group_rows[query_rows[i]];
  }
}

void EpochCursor::batch(int64_t index, int64_t* query_rows, int64_t* passage_rows) {
  require(index >= 0 && index < sampler_->num_batches_, "batch index must be in [0, ",
          sampler_->num_batches_, "), got ", index);
  if (plan_language_[index] < 0 && sampler_->config_.mode == SamplerMode::kMixed) {
    fill_mixed(plan_ordinal_[index], query_rows, passage_rows);
  } else if (plan_language_[index] < 0) {
    fill_xy(plan_ordinal_[index], query_rows, passage_rows);
  } else {
    fill_xx(plan_language_[index], plan_ordinal_[index], query_rows, passage_rows);
  }
}

int64_t EpochCursor::batch_language(int64_t index) const {
  require(index >= 0 && index < sampler_->num_batches_, "batch index must be in [0, ",
          sampler_->num_batches_, "), got ", index);
  return plan_language_[index] < 0 ? -1 : sampler_->index_.language_id(plan_language_[index]);
}

int64_t EpochCursor::next(int64_t count, int64_t* query_rows, int64_t* passage_rows, int64_t* languages) {
  require(count >= 0, "count must be >= 0, got ", count);
  const int64_t n = std::min(count, remaining());
  const int64_t width = sampler_->config_.batch_size;
  for (int64_t k = 0; k < n; ++k) {
    prefetch_batch(position_ + k + 1);  // its groups' cache lines arrive while this one fills
    batch(position_ + k, query_rows + k * width, passage_rows + k * width);
    if (languages != nullptr) languages[k] = batch_language(position_ + k);
  }
  position_ += n;
  return n;
}

}  // namespace hbt
