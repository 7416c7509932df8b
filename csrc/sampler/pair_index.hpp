#pragma once
// The pairs of a training set indexed for sampling: per language its rows, per group its rows
// ordered by language, and the groups present in two or more languages. Built once, then
// read-only, so any number of threads may sample from one index.
#include <cstdint>
#include <vector>

namespace hbt {

class PairIndex {
 public:
  using Row = uint32_t;
  // A group in two or more languages, with its row range in group_rows() kept beside the id
  // so that an X-Y row costs one random memory access, not two.
  struct CrossGroup {
    Row group;
    Row first;
    uint32_t count;
  };

  // languages[i], groups[i]: ids of pair i, any values in [0, 2^63). Id is int64_t or
  // uint64_t (ids are reported as the caller passed them). Throws std::invalid_argument.
  template <typename LanguageId, typename GroupId>
  PairIndex(const LanguageId* languages, const GroupId* groups, int64_t num_pairs);

  int64_t num_pairs() const { return num_pairs_; }
  int64_t num_languages() const { return static_cast<int64_t>(language_ids_.size()); }
  int64_t language_id(int64_t language) const { return language_ids_[language]; }  // original id
  int64_t language_size(int64_t language) const {
    return language_offsets_[language + 1] - language_offsets_[language];
  }
  const Row* language_rows(int64_t language) const {
    return language_rows_.data() + language_offsets_[language];
  }
  const Row* group_rows() const { return group_rows_.data(); }
  const std::vector<CrossGroup>& cross_groups() const { return cross_groups_; }
  int64_t cross_pairs() const { return cross_pairs_; }
  // 64-bit digest of the (language, group) sequence as passed: resuming on other data fails.
  uint64_t digest() const { return digest_; }
  int64_t memory_bytes() const;

 private:
  int64_t num_pairs_;
  uint64_t digest_ = 0;
  std::vector<int64_t> language_ids_;      // compact language -> original id
  std::vector<int64_t> language_offsets_;  // CSR: rows of each compact language, in row order
  std::vector<Row> language_rows_;
  std::vector<Row> group_rows_;            // rows of each group, ordered by language
  std::vector<CrossGroup> cross_groups_;
  int64_t cross_pairs_ = 0;
};

}  // namespace hbt
