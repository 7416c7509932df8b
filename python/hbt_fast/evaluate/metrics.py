"""Ranking metrics on whole arrays.

Every function here takes a ranked result list per query as a 2-D array (row = query, column =
rank position, best first) and returns one value per query, so a whole run is evaluated with a
handful of numpy operations and no Python loop over queries.

Definitions (LAReQA / XTREME-R, see DESIGN.md):

* ``AP@k = (1 / min(R, k)) * sum_{i <= k} P@i * rel_i`` with ``R`` relevant candidates.
  trec_eval's ``map_cut_k`` divides by ``R`` instead; both agree whenever ``R <= k``.
* ``Recall@k = (relevant in the top k) / R``.
* ``nDCG@k`` with linear gains and ``log2(rank + 1)`` discounts, as trec_eval's ``ndcg_cut``.
* bitext mining (:func:`bitext_mining_scores`): MTEB's precision, recall, F1 and accuracy of
  each query's nearest candidate, a classification score rather than a ranking one.

Queries with ``R == 0`` have no defined value; callers drop them before averaging.
"""

from __future__ import annotations

import numpy as np

from hbt_fast._checks import check_integer

__all__ = [
    "average_precision_at_k",
    "bitext_mining_scores",
    "average_precision_from_ranks",
    "dcg_discounts",
    "ndcg_at_k",
    "recall_at_k",
    "recall_from_ranks",
]


def _as_hits(hits, name: str = "hits") -> np.ndarray:
    hits = np.asarray(hits)
    if hits.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [queries, ranks], got shape {hits.shape}")
    return hits.astype(bool, copy=False)


def _as_num_relevant(num_relevant, n_queries: int) -> np.ndarray:
    num_relevant = np.asarray(num_relevant)
    if num_relevant.shape != (n_queries,):
        raise ValueError(
            f"num_relevant must have shape ({n_queries},), got {num_relevant.shape}"
        )
    if (num_relevant <= 0).any():
        raise ValueError("num_relevant must be positive for every query (drop queries with R = 0)")
    return num_relevant.astype(np.float64)


def average_precision_at_k(hits, num_relevant, k: int) -> np.ndarray:
    """AP@k per query from a boolean hit matrix ``hits[q, i]`` = rank ``i + 1`` is relevant."""
    k = check_integer(k, "k")
    hits = _as_hits(hits)[:, :k]
    num_relevant = _as_num_relevant(num_relevant, hits.shape[0])
    positions = np.arange(1, hits.shape[1] + 1, dtype=np.float64)
    precision = np.cumsum(hits, axis=1) / positions
    return (precision * hits).sum(axis=1) / np.minimum(num_relevant, k)


def recall_at_k(hits, num_relevant, k: int) -> np.ndarray:
    """Recall@k per query from a boolean hit matrix."""
    k = check_integer(k, "k")
    hits = _as_hits(hits)[:, :k]
    num_relevant = _as_num_relevant(num_relevant, hits.shape[0])
    return hits.sum(axis=1) / num_relevant


def dcg_discounts(length: int) -> np.ndarray:
    """``1 / log2(rank + 1)`` for ranks ``1..length``."""
    return 1.0 / np.log2(np.arange(2, length + 2, dtype=np.float64))


def ndcg_at_k(gains, ideal_gains, k: int) -> np.ndarray:
    """nDCG@k per query.

    ``gains[q, i]`` is the relevance grade of the document at rank ``i + 1`` (0 if not judged);
    ``ideal_gains[q]`` holds all of the query's positive grades, in any order, zero-padded.
    """
    k = check_integer(k, "k")
    gains = np.asarray(gains, dtype=np.float64)
    ideal_gains = np.asarray(ideal_gains, dtype=np.float64)
    if gains.ndim != 2 or ideal_gains.ndim != 2 or gains.shape[0] != ideal_gains.shape[0]:
        raise ValueError(
            f"gains and ideal_gains must be 2-D with equal rows, got {gains.shape} and "
            f"{ideal_gains.shape}"
        )
    gains = gains[:, :k]
    ideal = -np.sort(-ideal_gains, axis=1)[:, :k]
    dcg = gains @ dcg_discounts(gains.shape[1])
    idcg = ideal @ dcg_discounts(ideal.shape[1])
    if (idcg <= 0).any():
        raise ValueError("every query needs at least one positive ideal gain")
    return dcg / idcg


def _sorted_ranks(ranks) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.ndim == 1:
        ranks = ranks[:, None]
    if ranks.ndim != 2:
        raise ValueError(f"ranks must be 1-D or 2-D, got shape {ranks.shape}")
    # Absent relevant items (padding) are given rank 0 by callers; push them past every cut.
    ranks = np.where(ranks > 0, ranks, np.iinfo(np.int64).max).astype(np.int64)
    return np.sort(ranks, axis=1)


def average_precision_from_ranks(ranks, k: int) -> np.ndarray:
    """AP@k per query from the 1-based ranks of its relevant items (0 = padding, not relevant).

    With relevant ranks sorted ``r_1 < r_2 < ...``, ``AP@k = sum_{r_j <= k} (j / r_j) / min(R, k)``
    where ``R`` is the number of non-padding entries in the row.
    """
    k = check_integer(k, "k")
    ranks = _sorted_ranks(ranks)
    num_relevant = (ranks < np.iinfo(np.int64).max).sum(axis=1)
    _as_num_relevant(num_relevant, ranks.shape[0])
    order = np.arange(1, ranks.shape[1] + 1, dtype=np.float64)
    within = ranks <= k
    terms = np.where(within, order / np.where(within, ranks, 1), 0.0)
    return terms.sum(axis=1) / np.minimum(num_relevant, k)


def recall_from_ranks(ranks, k: int) -> np.ndarray:
    """Recall@k per query from the 1-based ranks of its relevant items (0 = padding)."""
    k = check_integer(k, "k")
    ranks = _sorted_ranks(ranks)
    num_relevant = (ranks < np.iinfo(np.int64).max).sum(axis=1)
    _as_num_relevant(num_relevant, ranks.shape[0])
    return (ranks <= k).sum(axis=1) / num_relevant


def bitext_mining_scores(predicted) -> dict:
    """MTEB's BitextMining figures from ``predicted[i]``, the candidate nearest to query ``i``,
    whose gold candidate is ``i`` (line-aligned files: Tatoeba, BUCC-style pairs).

    MTEB (``AbsTaskBitextMining._compute_metrics``) scores the predictions as a classification
    with scikit-learn, ``labels = range(n)``, ``average="weighted"``, ``zero_division=0``. Every
    gold label then has support 1, so with ``P_j`` the number of queries whose prediction is
    ``j`` and ``c_i = [predicted[i] == i]``::

        accuracy = recall = (1 / n) * sum_i c_i
        precision = (1 / n) * sum_i c_i / P_i
        f1 = (1 / n) * sum_i c_i * 2 / (1 + P_i)

    A candidate that several queries pick counts once as a hit and dilutes its precision; labels
    that are only predicted (no gold query) weigh 0. MTEB's main score for Tatoeba is ``f1``.
    """
    predicted = np.asarray(predicted)
    if predicted.ndim != 1 or not np.issubdtype(predicted.dtype, np.integer):
        raise ValueError(f"predicted must be a 1-D array of candidate indices, got "
                         f"{predicted.dtype} with shape {predicted.shape}")
    if predicted.size == 0:
        raise ValueError("predicted is empty: no query to score")
    if (predicted < 0).any():
        raise ValueError("predicted holds a negative candidate index")
    n = predicted.size
    correct = predicted == np.arange(n)
    times_predicted = np.bincount(predicted, minlength=n)[:n].astype(np.float64)
    # where c_i = 1, P_i >= 1; elsewhere the maximum only keeps the unused branch finite
    safe = np.maximum(times_predicted, 1.0)
    return {
        "accuracy": float(correct.mean()),
        "precision": float(np.where(correct, 1.0 / safe, 0.0).mean()),
        "recall": float(correct.mean()),
        "f1": float(np.where(correct, 2.0 / (1.0 + safe), 0.0).mean()),
    }
