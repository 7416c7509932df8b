"""Metrics against their definitions, written out one query and one rank at a time.

Written to kill mutmut's survivors in ``evaluate/metrics.py`` (CONTRIBUTING.md, "Mutation
testing"): the expected values come from plain loops over the definitions in the module doc,
never from the vectorised code under test.
"""

import math

import numpy as np
import pytest

from hbt_fast.evaluate import metrics

PADDING = 0  # the rank callers give an absent relevant item


def _ap_by_definition(ranked_hits, num_relevant, k):
    """AP@k = (1 / min(R, k)) * sum_{i <= k} P@i * rel_i, one rank at a time."""
    found, total = 0, 0.0
    for position, hit in enumerate(ranked_hits[:k], start=1):
        if hit:
            found += 1
            total += found / position
    return total / min(num_relevant, k)


def _hits_from_ranks(ranks, length):
    hits = [False] * length
    for rank in ranks:
        if rank != PADDING and rank <= length:
            hits[rank - 1] = True
    return hits


def _random_rank_rows(rng, rows, width, deepest):
    """Rows of distinct 1-based ranks, each with at least one relevant item, padded with 0."""
    out = np.zeros((rows, width), dtype=np.int64)
    for row in out:
        count = rng.integers(1, width + 1)
        row[:count] = rng.choice(np.arange(1, deepest + 1), size=count, replace=False)
        rng.shuffle(row)
    return out


def test_dcg_discounts_are_one_over_log2_of_rank_plus_one():
    expected = [1 / math.log2(rank + 1) for rank in range(1, 6)]
    np.testing.assert_allclose(metrics.dcg_discounts(5), expected, rtol=0, atol=1e-15)
    assert metrics.dcg_discounts(1).tolist() == [1.0]


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int64, np.float32])
def test_ndcg_takes_relevance_of_any_numeric_dtype(dtype):
    """Ranked grades [0, 2, 1] (zero-padded ideal [1, 0, 2, 0]); bool keeps only "relevant":
    DCG@3 = 2/log2(3) + 1/log2(4), IDCG@3 = 2/log2(2) + 1/log2(3) (grades); with bool grades
    every positive grade counts 1."""
    ranked, ideal = np.array([[0, 2, 1]]), np.array([[1, 0, 2, 0]])
    grades = (lambda g: g > 0) if dtype is bool else (lambda g: g)
    dcg = sum(float(grades(g)) / math.log2(rank + 1) for rank, g in enumerate(ranked[0], 1))
    best = sorted((float(grades(g)) for g in ideal[0]), reverse=True)[:3]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(best, 1))
    got = metrics.ndcg_at_k(ranked.astype(dtype), ideal.astype(dtype), 3)
    assert got.shape == (1,)
    assert got[0] == pytest.approx(dcg / idcg, abs=1e-7)


@pytest.mark.parametrize("gains, ideal_gains", [
    (np.ones(2), np.ones((2, 1))),              # 1-D gains, as many entries as ideal rows
    (np.ones((2, 3)), np.ones(2)),              # 1-D ideal gains
    (np.ones((2, 3)), np.ones((3, 3))),         # rows disagree
    (np.ones((1, 2, 3)), np.ones((1, 3))),      # 3-D gains
], ids=["1-D gains", "1-D ideal", "rows differ", "3-D gains"])
def test_ndcg_shape_errors_name_both_arguments(gains, ideal_gains):
    with pytest.raises(ValueError, match="gains and ideal_gains must be 2-D with equal rows"):
        metrics.ndcg_at_k(gains, ideal_gains, 2)


def test_ndcg_rejects_a_query_without_a_positive_ideal_gain():
    with pytest.raises(ValueError, match="^every query needs at least one positive ideal gain"):
        metrics.ndcg_at_k([[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]], 2)


def test_hit_matrix_errors_name_hits():
    with pytest.raises(ValueError, match=r"^hits must be a 2-D array.*\(3,\)"):
        metrics.average_precision_at_k(np.ones(3, bool), [1, 1, 1], 2)
    with pytest.raises(ValueError, match=r"^hits must be a 2-D array"):
        metrics.recall_at_k(np.ones((1, 1, 3), bool), [1], 2)


def test_padding_does_not_count_as_relevant():
    """One relevant item at rank 1 beside padding: R = 1, so AP@5 = 1 and Recall@1 = 1
    (counting the padding as relevant would halve both)."""
    assert metrics.average_precision_from_ranks([[1, PADDING]], 5).tolist() == [1.0]
    assert metrics.recall_from_ranks([[PADDING, 1]], 1).tolist() == [1.0]


def test_one_dimensional_ranks_mean_one_relevant_item_per_query():
    """Ranks [3, 1, 2] at k = 2: AP@2 = 0, 1, 1/2 and Recall@2 = 0, 1, 1."""
    assert metrics.average_precision_from_ranks([3, 1, 2], 2).tolist() == [0.0, 1.0, 0.5]
    assert metrics.recall_from_ranks([3, 1, 2], 2).tolist() == [0.0, 1.0, 1.0]


def test_ranks_of_more_than_two_dimensions_are_refused():
    with pytest.raises(ValueError, match=r"ranks must be 1-D or 2-D.*\(1, 1, 2\)"):
        metrics.average_precision_from_ranks(np.ones((1, 1, 2), dtype=np.int64), 2)
    with pytest.raises(ValueError, match="ranks must be 1-D or 2-D"):
        metrics.recall_from_ranks(np.ones((1, 1, 2), dtype=np.int64), 2)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_rank_and_hit_forms_match_the_definition_query_by_query(k):
    rng = np.random.default_rng(k)
    ranks = _random_rank_rows(rng, rows=25, width=6, deepest=12)
    ap, recall = (metrics.average_precision_from_ranks(ranks, k),
                  metrics.recall_from_ranks(ranks, k))
    hits = np.array([_hits_from_ranks(row, 12) for row in ranks.tolist()])
    num_relevant = (ranks != PADDING).sum(axis=1)
    ap_hits, recall_hits = (metrics.average_precision_at_k(hits, num_relevant, k),
                            metrics.recall_at_k(hits, num_relevant, k))
    assert len(ap) == len(recall) == len(ap_hits) == len(recall_hits) == len(ranks)
    for row, got_ap, got_recall, got_ap_hits, got_recall_hits in zip(
            ranks.tolist(), ap, recall, ap_hits, recall_hits, strict=True):
        relevant = [rank for rank in row if rank != PADDING]
        expected_ap = _ap_by_definition(_hits_from_ranks(relevant, 12), len(relevant), k)
        expected_recall = sum(rank <= k for rank in relevant) / len(relevant)
        assert got_ap == pytest.approx(expected_ap, abs=1e-12)
        assert got_ap_hits == pytest.approx(expected_ap, abs=1e-12)
        assert got_recall == pytest.approx(expected_recall, abs=1e-12)
        assert got_recall_hits == pytest.approx(expected_recall, abs=1e-12)


def test_nonzero_grades_count_as_single_hits():
    """Grades [[2, 0, 3]], R = 2: hits at ranks 1 and 3, AP@3 = (1 + 2/3) / 2 = 5/6 and
    Recall@3 = 1 whatever the grades' size."""
    grades = np.array([[2, 0, 3]])
    assert metrics.average_precision_at_k(grades, [2], 3)[0] == pytest.approx(5 / 6, abs=1e-12)
    assert metrics.recall_at_k(grades, [2], 3).tolist() == [1.0]


@pytest.mark.parametrize("k", [2.5, True, "3", None, -1])
def test_k_must_be_a_positive_integer(k):
    with pytest.raises(ValueError, match=r"^k must be an integer >= 1, got " + repr(k)):
        metrics.average_precision_at_k(np.ones((1, 3), bool), [1], k)
    with pytest.raises(ValueError, match=r"^k must be an integer >= 1"):
        metrics.recall_from_ranks([[1]], k)


def test_num_relevant_errors_name_num_relevant_and_the_fix():
    with pytest.raises(ValueError, match=r"^num_relevant must have shape \(2,\), got \(3,\)"):
        metrics.recall_at_k(np.ones((2, 3), bool), [1, 1, 1], 2)
    with pytest.raises(ValueError, match=r"^num_relevant must be positive.*drop queries with R = 0"):
        metrics.average_precision_at_k(np.zeros((2, 3), bool), [1, 0], 3)
