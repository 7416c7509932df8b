#pragma once
// Language-stratified hybrid batch sampler (pure C++17, no Python).
//
// Each global batch (batch_size * world_size rows) is either X-X (one language, distinct
// groups, query row == passage row), X-Y (distinct groups, query and passage rows of one
// group in two different languages) or, in mode "mixed" only, mixed (distinct groups, query
// row == passage row, rows of all languages together). Every random decision is a pure function of
// (seed, epoch, counters), so batch k of an epoch is computed without replaying batches
// 0..k-1, and the same seed gives the same batches on every platform.
//
// Thread safety: a HybridSampler is immutable after construction except for its resume state
// (epoch, position), which a mutex guards. Batches are produced by EpochCursor objects, one
// per iteration, each with its own caches: any number of threads may each run their own
// cursor (or call HybridSampler::batches) on one sampler at once and get the same batches
// as one thread would. A single cursor is not to be shared between threads.
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "sampler/pair_index.hpp"

namespace hbt {

enum class SamplerMode { kXX, kXY, kHybrid, kMixed };

SamplerMode parse_sampler_mode(const std::string& name);  // "xx", "xy", "hybrid", "mixed"
const char* sampler_mode_name(SamplerMode mode);

struct SamplerConfig {
  int64_t batch_size = 1;     // rows per rank
  SamplerMode mode = SamplerMode::kHybrid;
  double alpha = 0.5;         // probability of an X-X batch in hybrid mode (no other mode reads it)
  double lang_exponent = 0.0; // X-X language weight is n_lang ** lang_exponent (unused by xy, mixed)
  uint64_t seed = 0;
  int64_t rank = 0;
  int64_t world_size = 1;
  bool drop_last = true;

  // Throws std::invalid_argument naming the first bad field.
  void validate() const;
  int64_t global_batch() const;  // batch_size * world_size, overflow-checked
};

// Where an iteration stands, with what it depends on: set_state refuses a state whose
// settings or data differ from the sampler's, naming the first difference.
struct SamplerState {
  int64_t epoch = 0;
  int64_t position = 0;  // batches of the epoch already delivered
  SamplerConfig config;  // rank is not compared: each rank resumes the same global position
  int64_t num_pairs = 0;
  int64_t num_batches = 0;
  std::string data_digest;  // 16 hex digits
};

class EpochCursor;

class HybridSampler {
 public:
  // languages[i], groups[i]: ids of pair i in [0, 2^63). Throws std::invalid_argument.
  template <typename LanguageId, typename GroupId>
  HybridSampler(const LanguageId* languages, const GroupId* groups, int64_t num_pairs,
                const SamplerConfig& config);

  int64_t num_batches() const { return num_batches_; }  // per epoch, identical on every rank
  const SamplerConfig& config() const { return config_; }
  const PairIndex& index() const { return index_; }

  // Resume state.
  int64_t epoch() const;
  void set_epoch(int64_t epoch);          // next iteration: first batch of `epoch`
  SamplerState state() const;
  void set_state(const SamplerState& state);  // next iteration starts at state.position
  // A cursor at the resume point (then cleared); while it is the newest, the positions it
  // reports through record_position become the state's.
  EpochCursor begin_iteration();
  void record_position(uint64_t ticket, int64_t position);

  // Batches [start, start + count) of `epoch`, row-major [count, batch_size], on a cursor of
  // its own (thread-safe); languages (optional) receives each batch's X-X language, or -1
  // for X-Y and mixed batches.
  void batches(int64_t epoch, int64_t start, int64_t count, int64_t* query_rows,
               int64_t* passage_rows, int64_t* languages = nullptr) const;

  std::vector<int64_t> xx_languages() const;     // original ids usable in X-X batches
  std::vector<int64_t> small_languages() const;  // original ids too small for one
  int64_t num_cross_groups() const { return static_cast<int64_t>(index_.cross_groups().size()); }
  // Heap held by the index, plus one cursor's plan and caches at their largest.
  int64_t memory_bytes() const;

 private:
  friend class EpochCursor;
  void size_epoch();
  void compute_language_weights();
  void index_layers();
  bool is_xx_language(int64_t language) const { return index_.language_size(language) >= global_batch_; }

  SamplerConfig config_;
  PairIndex index_;
  int64_t global_batch_ = 0;
  int64_t num_batches_ = 0;
  std::vector<double> language_weights_;   // normalised over X-X-eligible languages
  // Layers of the X-Y and mixed batches: layer r holds every indexed group (those in two or
  // more languages; in mode "mixed" all groups) with more than r languages, and in layer r a
  // group's query is its ((offset + r) mod count)-th language. A pass over all layers so uses
  // each pair of those groups once as a query, and a batch cut from one layer has distinct
  // groups. Batches of all layers are visited in a random order per pass.
  template <typename Visit>
  void for_each_layered_group(Visit visit) const;
  std::vector<int64_t> layer_sizes_;
  std::vector<int64_t> layer_batch_offsets_;  // first batch id of each layer in a pass
  int64_t layer_batches_per_pass_ = 0;

  mutable std::mutex state_mutex_;
  int64_t epoch_ = 0;
  int64_t position_ = 0;
  int64_t resume_at_ = 0;
  uint64_t ticket_ = 0;
};

// One iteration over an epoch: the epoch's plan (kind, language and ordinal of each batch)
// and the shuffled pools it draws from, regenerated lazily per pass.
class EpochCursor {
 public:
  EpochCursor(const HybridSampler& sampler, int64_t epoch, int64_t position, uint64_t ticket = 0);

  int64_t epoch() const { return epoch_; }
  int64_t position() const { return position_; }
  uint64_t ticket() const { return ticket_; }
  int64_t remaining() const { return sampler_->num_batches() - position_; }
  // Writes the next min(count, remaining()) batches and advances; returns how many.
  int64_t next(int64_t count, int64_t* query_rows, int64_t* passage_rows, int64_t* languages);
  // Batch `index` of the epoch (any order), and its X-X language id or -1.
  void batch(int64_t index, int64_t* query_rows, int64_t* passage_rows);
  int64_t batch_language(int64_t index) const;

 private:
  template <typename T>
  struct Stream {  // one shuffled pass over a pool, regenerated when the pass changes
    int64_t pass = -1;
    std::vector<T> order;
  };
  using GroupSpan = PairIndex::GroupSpan;

  void build_plan();
  template <typename T, typename Fill>
  const std::vector<T>& stream_pass(Stream<T>& stream, uint64_t key, int64_t pass, Fill fill);
  void fill_xx(int64_t language, int64_t ordinal, int64_t* query_rows, int64_t* passage_rows);
  void fill_xy(int64_t ordinal, int64_t* query_rows, int64_t* passage_rows);
  void fill_mixed(int64_t ordinal, int64_t* query_rows, int64_t* passage_rows);
  // The first group of X-Y (or mixed) batch `ordinal` in its layer stream (and the layer);
  // with generate false, nullptr instead of regenerating a stream.
  const GroupSpan* layer_slot(int64_t ordinal, bool generate, uint32_t* layer);
  void prefetch_batch(int64_t index);

  const HybridSampler* sampler_;
  int64_t epoch_;
  int64_t position_;
  uint64_t ticket_;
  std::vector<int32_t> plan_language_;  // per batch: compact X-X language or -1 (X-Y, mixed)
  std::vector<int64_t> plan_ordinal_;   // per batch: index among batches of its pool
  std::vector<Stream<PairIndex::Row>> language_streams_;
  std::vector<Stream<GroupSpan>> layer_streams_;
  Stream<uint32_t> layer_batch_order_;
};

}  // namespace hbt
