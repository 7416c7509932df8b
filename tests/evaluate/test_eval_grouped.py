"""grouped_retrieval (XM3600, Mewsli-X) against AP@k computed by its definition."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hbt_fast.evaluate.grouped import grouped_retrieval


def _by_definition(queries, query_groups, candidates, candidate_groups, k, self_index):
    """Rank every candidate but the query itself (score down, index up), then AP@k and
    Recall@k with R = its group's other candidates; NaN when R = 0."""
    ap, recall = [], []
    for q, (vector, group) in enumerate(zip(queries, query_groups)):
        others = [c for c in range(len(candidates)) if self_index is None or c != self_index[q]]
        scores = candidates[others].astype(np.float64) @ vector.astype(np.float64)
        ranked = [others[i] for i in np.lexsort((np.array(others), -scores))][:k]
        relevant = sum(1 for c in others if candidate_groups[c] == group) if group >= 0 else 0
        if relevant == 0:
            ap.append(np.nan)
            recall.append(np.nan)
            continue
        hits = [candidate_groups[c] == group for c in ranked]
        precision_sum = sum(sum(hits[:i + 1]) / (i + 1) for i, hit in enumerate(hits) if hit)
        ap.append(precision_sum / min(relevant, k))
        recall.append(sum(hits) / relevant)
    return np.array(ap), np.array(recall)


def test_hand_worked_case():
    """Candidates c0..c3 of groups 0, 0, 1, 1; one query of group 1 scoring 3, 2, 1, 0 against
    them: group 1 sits at ranks 3 and 4 -> AP@4 = (1/3 + 2/4) / 2 = 5/12, AP@3 = (1/3) / 2."""
    candidates = np.array([[3.0], [2.0], [1.0], [0.0]], dtype=np.float32)
    query = np.array([[1.0]], dtype=np.float32)
    found = grouped_retrieval(query, [1], candidates, [0, 0, 1, 1], 4)
    assert found.average_precision[0] == pytest.approx(5 / 12)
    assert found.num_relevant.tolist() == [2]
    assert grouped_retrieval(query, [1], candidates, [0, 0, 1, 1], 3).average_precision[0] \
        == pytest.approx(1 / 6)
    # the query is candidate 2 itself: out of the ranking, and R = 1 (candidate 3, now rank 3)
    mine = grouped_retrieval(query, [1], candidates, [0, 0, 1, 1], 4, self_index=np.array([2]))
    assert mine.average_precision[0] == pytest.approx(1 / 3) and mine.num_relevant[0] == 1
    # a group no candidate has (and -1): no figure
    absent = grouped_retrieval(np.ones((2, 1), np.float32), [5, -1], candidates, [0, 0, 1, 1], 4)
    assert np.isnan(absent.average_precision).all() and absent.num_relevant.tolist() == [0, 0]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.booleans())
def test_agrees_with_the_definition_under_ties(seed, k, same_texts):
    rng = np.random.default_rng(seed)
    candidates = rng.integers(-2, 3, size=(int(rng.integers(1, 12)), 3)).astype(np.float32)
    candidate_groups = rng.integers(0, 4, size=len(candidates))
    if same_texts:  # the queries are the candidates (XM3600): each excludes itself
        queries, query_groups = candidates, candidate_groups
        self_index = np.arange(len(candidates))
    else:
        queries = rng.integers(-2, 3, size=(int(rng.integers(1, 8)), 3)).astype(np.float32)
        query_groups = rng.integers(-1, 5, size=len(queries))
        self_index = None
    found = grouped_retrieval(queries, query_groups, candidates, candidate_groups, k,
                              self_index=self_index)
    ap, recall = _by_definition(queries, query_groups, candidates, candidate_groups, k, self_index)
    np.testing.assert_allclose(found.average_precision, ap, atol=1e-12)
    np.testing.assert_allclose(found.recall, recall, atol=1e-12)
