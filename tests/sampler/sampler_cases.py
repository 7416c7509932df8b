"""Pair sets and batch checks shared by the sampler tests."""

import numpy as np
from hypothesis import strategies as st


def make_pairs(num_groups, num_languages, coverage, seed):
    """Pairs of a parallel corpus where group g exists in language l with P = coverage[l]."""
    rng = np.random.default_rng(seed)
    present = rng.random((num_groups, num_languages)) < np.asarray(coverage)[:num_languages]
    groups, languages = np.nonzero(present)
    order = rng.permutation(len(groups))  # rows in no particular order
    return languages[order].astype(np.int64) * 3 + 5, groups[order].astype(np.int64) * 7


def check_batch(query_rows, passage_rows, languages, groups, batch_size, mode=None):
    """Returns the batch kind after checking its composition rules. A mixed batch (mode
    "mixed") may happen to hold one language, so only the mode tells it from X-X."""
    assert query_rows.dtype == np.int64 and passage_rows.dtype == np.int64
    assert len(query_rows) == len(passage_rows) == batch_size
    assert np.array_equal(groups[query_rows], groups[passage_rows])
    assert len(np.unique(groups[query_rows])) == batch_size, "groups must be distinct"
    if mode == "mixed":
        assert np.array_equal(query_rows, passage_rows), "mixed batch with query row != passage row"
        return "mixed"
    if np.array_equal(query_rows, passage_rows):
        assert len(np.unique(languages[query_rows])) == 1, "X-X batch mixes languages"
        return "xx"
    assert np.all(languages[query_rows] != languages[passage_rows]), "X-Y batch with x == y"
    return "xy"


def epoch_rows(sampler):
    batches = list(sampler)
    return np.array([q for q, _ in batches]), np.array([p for _, p in batches])


MODES = ["xx", "xy", "hybrid", "mixed"]

pair_sets = st.builds(
    make_pairs,
    num_groups=st.integers(8, 120),
    num_languages=st.integers(2, 7),
    coverage=st.lists(st.floats(0.3, 1.0), min_size=7, max_size=7),
    seed=st.integers(0, 2**32 - 1),
)
