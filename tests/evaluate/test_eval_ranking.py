"""The LAReQA ranking pass and the heap top-k against their plain references (ties included)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hbt_fast.evaluate.ranking import lareqa_ranks
from hbt_fast.evaluate.search import topk_from_scores
from hbt_fast.testing import reference_lareqa_ranks, reference_topk


def integer_embeddings(rng, rows, dim, spread):
    # Small integers: every dot product is exact in float32, so ties are real ties.
    return rng.integers(-spread, spread + 1, size=(rows, dim)).astype(np.float32)


def random_lareqa(rng, candidates_per_language, questions, dim=4, spread=1, missing=0.2):
    offsets = np.cumsum([0] + list(candidates_per_language))
    languages = len(candidates_per_language)
    relevant = np.stack([rng.integers(offsets[y], offsets[y + 1], size=questions)
                         for y in range(languages)], axis=1)
    relevant_in = np.repeat(relevant, languages, axis=0)  # each language asks every question
    own = np.repeat(np.arange(languages)[None, :], questions, axis=0).ravel()
    drop = (rng.random(relevant_in.shape) < missing) & (np.arange(languages) != own[:, None])
    relevant_in[drop] = -1
    queries = integer_embeddings(rng, len(relevant_in), dim, spread)
    candidates = integer_embeddings(rng, offsets[-1], dim, spread)
    return relevant_in, offsets, queries, candidates


@pytest.mark.parametrize("sizes", [(1,), (1, 7), (7, 1, 97), (97, 30, 4)])
@pytest.mark.parametrize("block_bytes", [1, 4096, 2**26])
def test_ranks_equal_the_reference_on_odd_sizes(sizes, block_bytes):
    rng = np.random.default_rng(sum(sizes))
    relevant_in, offsets, queries, candidates = random_lareqa(rng, sizes, questions=5)
    depth = min(20, offsets[-1])
    ours = lareqa_ranks(relevant_in, offsets, queries, candidates, depth, block_bytes)
    for got, expected in zip(ours, reference_lareqa_ranks(relevant_in, offsets, queries,
                                                          candidates, depth)):
        np.testing.assert_array_equal(got, expected)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=4), questions=st.integers(1, 6),
       spread=st.integers(0, 3), seed=st.integers(0, 2**16), depth=st.integers(1, 30))
def test_ranks_equal_the_reference_for_any_ties(sizes, questions, spread, seed, depth):
    rng = np.random.default_rng(seed)
    relevant_in, offsets, queries, candidates = random_lareqa(rng, sizes, questions, spread=spread)
    depth = min(depth, offsets[-1])
    ours = lareqa_ranks(relevant_in, offsets, queries, candidates, depth, 512)
    for got, expected in zip(ours, reference_lareqa_ranks(relevant_in, offsets, queries,
                                                          candidates, depth)):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("columns", [1, 7, 97, 1025])
@pytest.mark.parametrize("distinct_values", [2, 50, None])
def test_heap_topk_equals_the_full_sort(columns, distinct_values):
    rng = np.random.default_rng(columns)
    if distinct_values is None:
        scores = rng.standard_normal((13, columns)).astype(np.float32)
    else:  # long runs of equal scores straddle the cut and the heap's margin
        scores = rng.integers(0, distinct_values, size=(13, columns)).astype(np.float32)
    for k in {1, min(20, columns), columns}:
        got_scores, got_ids = topk_from_scores(scores, k)
        ref_scores, ref_ids = reference_topk(scores, k)
        np.testing.assert_array_equal(got_ids, ref_ids)
        np.testing.assert_array_equal(got_scores, ref_scores)
