#pragma once
// Language-stratified hybrid batch sampler (pure C++17, no Python).
//
// Each global batch (batch_size * world_size rows) is either X-X (one language, distinct
// groups, query row == passage row) or X-Y (distinct groups, query and passage rows of one
// group in two different languages). Every random decision is a pure function of
// (seed, epoch, counters), so batch k of an epoch is computed without replaying batches
// 0..k-1, and the same seed gives the same batches on every platform.
#include <cstdint>
#include <string>
#include <vector>

namespace hbt {

enum class SamplerMode { kXX, kXY, kHybrid };

SamplerMode parse_sampler_mode(const std::string& name);

struct SamplerConfig {
  int64_t batch_size = 1;     // rows per rank
  SamplerMode mode = SamplerMode::kHybrid;
  double alpha = 0.5;         // probability of an X-X batch in hybrid mode
  double lang_exponent = 0.0; // X-X language weight is n_lang ** lang_exponent
  uint64_t seed = 0;
  int64_t rank = 0;
  int64_t world_size = 1;
  bool drop_last = true;
};

class HybridSampler {
 public:
  using Index = uint32_t;

  // languages[i], groups[i]: non-negative ids of pair i. Throws std::invalid_argument.
  HybridSampler(const int64_t* languages, const int64_t* groups, int64_t num_pairs,
                const SamplerConfig& config);

  int64_t num_batches() const { return num_batches_; }  // per epoch, identical on every rank
  int64_t epoch() const { return epoch_; }
  void set_epoch(int64_t epoch);

  // This rank's rows of batch `index` of the current epoch (batch_size values each).
  void batch(int64_t index, int64_t* query_rows, int64_t* passage_rows);
  // Batches [start, start + count), written row-major as [count, batch_size].
  void batches(int64_t start, int64_t count, int64_t* query_rows, int64_t* passage_rows);
  // Kind of batch `index`: the X-X language id, or -1 for an X-Y batch.
  int64_t batch_language(int64_t index) const;

  // Language ids (original values) usable in X-X batches, and those too small for one.
  std::vector<int64_t> xx_languages() const;
  std::vector<int64_t> small_languages() const;
  int64_t num_cross_groups() const { return static_cast<int64_t>(cross_groups_.size()); }
  const SamplerConfig& config() const { return config_; }
  int64_t memory_bytes() const;  // heap held by the index, the plan and the stream caches

 private:
  template <typename T>
  struct Stream {  // one shuffled pass over a pool, regenerated when the pass changes
    int64_t pass = -1;
    std::vector<T> order;
  };
  // A group in two or more languages, with its pair range in group_pairs_ kept beside the id
  // so that an X-Y row costs one random memory access, not two.
  struct CrossGroup {
    Index group;
    Index first;
    uint32_t count;
  };

  void index_pairs(const int64_t* languages, const int64_t* groups);
  void validate_and_size();
  void build_plan();
  // The stream's order for `pass`: refilled by fill(order) and shuffled when the pass changes.
  template <typename T, typename Fill>
  const std::vector<T>& stream_pass(Stream<T>& stream, uint64_t key, int64_t pass, Fill fill);
  void fill_xx(int64_t language, int64_t ordinal, int64_t* query_rows, int64_t* passage_rows);
  void index_cross_layers();
  void fill_xy(int64_t ordinal, int64_t* query_rows, int64_t* passage_rows);
  int64_t global_batch() const { return config_.batch_size * config_.world_size; }

  SamplerConfig config_;
  int64_t num_pairs_ = 0;
  int64_t num_batches_ = 0;
  int64_t epoch_ = 0;

  std::vector<int64_t> language_ids_;      // compact language -> original id
  std::vector<int64_t> language_offsets_;  // CSR: pairs of each compact language
  std::vector<Index> language_pairs_;
  std::vector<int64_t> group_offsets_;     // CSR: pairs of each group, by language
  std::vector<Index> group_pairs_;
  std::vector<CrossGroup> cross_groups_;   // groups present in two or more languages
  // X-Y layers: layer r holds every cross-lingual group with more than r languages, and in
  // layer r a group's query is its ((offset + r) mod count)-th language. A pass over all
  // layers so uses each pair of those groups once as a query, and a batch cut from one layer
  // has distinct groups. Batches of all layers are visited in a random order per pass.
  std::vector<int64_t> layer_batch_offsets_;  // first batch id of each layer in a pass
  int64_t cross_batches_per_pass_ = 0;
  std::vector<double> language_weights_;   // normalised over X-X-eligible languages

  std::vector<int32_t> plan_language_;     // per batch: compact X-X language or -1 (X-Y)
  std::vector<int64_t> plan_ordinal_;      // per batch: index among batches of its pool
  std::vector<Stream<Index>> language_streams_;
  std::vector<Stream<CrossGroup>> layer_streams_;
  Stream<uint32_t> cross_batch_order_;
};

}  // namespace hbt
