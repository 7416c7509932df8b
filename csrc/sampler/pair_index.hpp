#pragma once
// The pairs of a training set indexed for sampling: per language its rows, per group its rows
// ordered by language, and the groups present in two or more languages (and, on request, those
// in one language). Built once, then read-only, so any number of threads may sample from one
// index.
#include <cstdint>
#include <vector>

namespace hbt {

class PairIndex {
 public:
  using Row = uint32_t;
  // A group with its row range in group_rows() kept beside the id, so that a row of a
  // sampled group costs one random memory access, not two.
  struct GroupSpan {
    Row group;
    Row first;
    uint32_t count;
  };

  // languages[i], groups[i]: ids of pair i, any values in [0, 2^63). Id is int64_t or
  // uint64_t (ids are reported as the caller passed them). single_language_groups() is filled
  // only with index_single_language_groups (mode "mixed"): other modes never sample them, and
  // on monolingual data they would cost 12 bytes a row. Throws std::invalid_argument.
  template <typename LanguageId, typename GroupId>
  PairIndex(const LanguageId* languages, const GroupId* groups, int64_t num_pairs,
            bool index_single_language_groups = false);

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
  const std::vector<GroupSpan>& cross_groups() const { return cross_groups_; }  // in group order
  const std::vector<GroupSpan>& single_language_groups() const { return single_language_groups_; }
  int64_t num_groups() const { return num_groups_; }
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
  std::vector<GroupSpan> cross_groups_;
  std::vector<GroupSpan> single_language_groups_;
  int64_t num_groups_ = 0;
  int64_t cross_pairs_ = 0;
};

}  // namespace hbt
