#include "sampler/pair_index.hpp"

#include <algorithm>
#include <limits>
#include <numeric>

#include "common/check.hpp"
#include "common/random.hpp"

namespace hbt {
namespace {

constexpr uint64_t kMaxId = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// Checks every id (one clear error naming the value as passed and its row) and returns the
// largest. Ids are in [0, 2^63) after this.
template <typename Id>
uint64_t checked_max_id(const Id* values, int64_t n, const char* name) {
  uint64_t max_id = 0;
  bool bad = false;
  for (int64_t i = 0; i < n; ++i) {
    bad |= values[i] < 0 || static_cast<uint64_t>(values[i]) > kMaxId;
    max_id = std::max(max_id, static_cast<uint64_t>(values[i]));
  }
  if (bad) {
    for (int64_t i = 0; i < n; ++i) {
      require(values[i] >= 0, name, " must be non-negative ids, got ", values[i], " at row ", i);
      require(static_cast<uint64_t>(values[i]) <= kMaxId, name,
              " must be ids below 2**63, got ", values[i], " at row ", i);
    }
  }
  return max_id;
}

// Dense ids (the usual 0..n-1 labels, in any order) map through a table in two linear passes;
// sparse ids (hashes, offsets) through sort + binary search. Both give the rank of each value
// among the sorted distinct values, so the index (and every batch) is the same either way.
template <typename Id>
std::vector<uint32_t> compact_ids(const Id* values, int64_t n, uint64_t max_id,
                                  std::vector<int64_t>& unique) {
  std::vector<uint32_t> compact(n);
  if (max_id < 2 * static_cast<uint64_t>(n) + 4096) {  // table: at most 8 bytes a row
    std::vector<uint32_t> rank(max_id + 1, 0);
    for (int64_t i = 0; i < n; ++i) rank[static_cast<uint64_t>(values[i])] = 1;
    uint32_t next = 0;
    unique.clear();
    for (uint64_t v = 0; v <= max_id; ++v) {
      if (rank[v]) {
        unique.push_back(static_cast<int64_t>(v));
        rank[v] = next++;
      }
    }
    for (int64_t i = 0; i < n; ++i) compact[i] = rank[static_cast<uint64_t>(values[i])];
    return compact;
  }
  unique.assign(values, values + n);
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  for (int64_t i = 0; i < n; ++i) {
    compact[i] = static_cast<uint32_t>(
        std::lower_bound(unique.begin(), unique.end(), static_cast<int64_t>(values[i])) -
        unique.begin());
  }
  return compact;
}

// Order-sensitive digest; the per-row terms are independent, so it runs at memory speed.
template <typename LanguageId, typename GroupId>
uint64_t pair_digest(const LanguageId* languages, const GroupId* groups, int64_t n) {
  uint64_t language_sum = 0, group_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    language_sum += mix64(static_cast<uint64_t>(languages[i]) ^ mix64(2 * static_cast<uint64_t>(i)));
    group_sum += mix64(static_cast<uint64_t>(groups[i]) ^ mix64(2 * static_cast<uint64_t>(i) + 1));
  }
  return hash_key(static_cast<uint64_t>(n), language_sum, group_sum);
}

// Counting sort of rows 0..n-1 by key; rows keep their order within a key.
std::vector<int64_t> bucket_offsets(const std::vector<uint32_t>& keys, size_t num_keys) {
  std::vector<int64_t> offsets(num_keys + 1, 0);
  for (uint32_t key : keys) ++offsets[key + 1];
  std::partial_sum(offsets.begin(), offsets.end(), offsets.begin());
  return offsets;
}

}  // namespace

template <typename LanguageId, typename GroupId>
PairIndex::PairIndex(const LanguageId* languages, const GroupId* groups, int64_t num_pairs,
                     bool index_single_language_groups)
    : num_pairs_(num_pairs) {
  require(num_pairs > 0, "languages must not be empty");
  require(num_pairs < static_cast<int64_t>(UINT32_MAX), "at most 2^32 - 2 pairs are supported, got ",
          num_pairs);
  const uint64_t max_language = checked_max_id(languages, num_pairs, "languages");
  const uint64_t max_group = checked_max_id(groups, num_pairs, "groups");
  digest_ = pair_digest(languages, groups, num_pairs);
  std::vector<int64_t> group_ids;
  const std::vector<uint32_t> language = compact_ids(languages, num_pairs, max_language, language_ids_);
  const std::vector<uint32_t> group = compact_ids(groups, num_pairs, max_group, group_ids);

  language_offsets_ = bucket_offsets(language, language_ids_.size());
  std::vector<int64_t> cursor(language_offsets_.begin(), language_offsets_.end() - 1);
  language_rows_.resize(num_pairs);
  for (int64_t row = 0; row < num_pairs; ++row) language_rows_[cursor[language[row]]++] = static_cast<Row>(row);

  // Scattering the language-ordered rows by group orders each group's rows by language.
  num_groups_ = static_cast<int64_t>(group_ids.size());
  const std::vector<int64_t> group_offsets = bucket_offsets(group, group_ids.size());
  cursor.assign(group_offsets.begin(), group_offsets.end() - 1);
  group_rows_.resize(num_pairs);
  for (Row row : language_rows_) group_rows_[cursor[group[row]]++] = row;

  for (size_t g = 0; g < group_ids.size(); ++g) {
    const int64_t first = group_offsets[g], count = group_offsets[g + 1] - first;
    for (int64_t k = first + 1; k < first + count; ++k) {
      const Row a = group_rows_[k - 1], b = group_rows_[k];
      require(language[a] != language[b], "pairs must have distinct (group, language): rows ",
              std::min(a, b), " and ", std::max(a, b), " both have group ", groups[a],
              " and language ", languages[a]);
    }
    const GroupSpan span{static_cast<Row>(g), static_cast<Row>(first), static_cast<uint32_t>(count)};
    if (count >= 2) {
      cross_groups_.push_back(span);
      cross_pairs_ += count;
    } else if (index_single_language_groups) {
      single_language_groups_.push_back(span);
    }
  }
}

template PairIndex::PairIndex(const int64_t*, const int64_t*, int64_t, bool);
template PairIndex::PairIndex(const int64_t*, const uint64_t*, int64_t, bool);
template PairIndex::PairIndex(const uint64_t*, const int64_t*, int64_t, bool);
template PairIndex::PairIndex(const uint64_t*, const uint64_t*, int64_t, bool);

int64_t PairIndex::memory_bytes() const {
  auto bytes = [](const auto& v) { return static_cast<int64_t>(v.capacity() * sizeof(v[0])); };
  return bytes(language_ids_) + bytes(language_offsets_) + bytes(language_rows_) +
         bytes(group_rows_) + bytes(cross_groups_) + bytes(single_language_groups_);
}

}  // namespace hbt
