"""Retrieval where a candidate is relevant when it shares the query's group: the captions of one
image (XM3600), the description of a mention's entity (Mewsli-X).

:func:`grouped_retrieval` ranks the candidates of every query with :func:`~hbt_fast.evaluate.
search.search` (exact, ties to the lower candidate index) and returns AP@k and Recall@k with
``R`` = the number of candidates in the query's group. When queries and candidates are the same
texts, ``self_index`` names the candidate that is the query itself: it is taken out of both the
ranking and ``R``, so a caption is never its own answer.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from hbt_fast.evaluate import metrics
from hbt_fast.evaluate.search import search

__all__ = ["GroupedScores", "grouped_retrieval"]


class GroupedScores(NamedTuple):
    average_precision: np.ndarray  # [Q] AP@k; NaN where the query has no relevant candidate
    recall: np.ndarray  # [Q] Recall@k; NaN likewise
    num_relevant: np.ndarray  # [Q] R


def _without_self(ids: np.ndarray, self_index: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` ids of each row once the query's own candidate is taken out (-1 pads a
    row that had fewer than ``k`` others)."""
    is_self = ids == self_index[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")  # every other id keeps its place
    ids = np.where(np.take_along_axis(is_self, order, 1), -1, np.take_along_axis(ids, order, 1))
    return ids[:, :k]


def grouped_retrieval(queries: np.ndarray, query_groups, candidates: np.ndarray,
                      candidate_groups, k: int, *,
                      self_index: Optional[np.ndarray] = None) -> GroupedScores:
    """AP@k and Recall@k of every query whose relevant candidates are those of its group.

    Groups are non-negative integers; a query group no candidate has (or -1) gets ``R = 0`` and
    NaN figures, for the caller to drop or count as a miss. ``self_index[q]`` (or -1) is the
    candidate that is query ``q`` itself.
    """
    query_groups = np.asarray(query_groups, dtype=np.int64)
    candidate_groups = np.asarray(candidate_groups, dtype=np.int64)
    if (candidate_groups < 0).any():
        raise ValueError("candidate groups must be non-negative integers")
    depth = k + (1 if self_index is not None else 0)
    ids = search(queries, candidates, depth).ids
    size = max(int(candidate_groups.max(initial=-1)), int(query_groups.max(initial=-1))) + 1
    num_relevant = np.bincount(candidate_groups, minlength=size)[np.maximum(query_groups, 0)]
    num_relevant = np.where(query_groups >= 0, num_relevant, 0)
    if self_index is not None:
        self_index = np.asarray(self_index, dtype=np.int64)
        ids = _without_self(ids, self_index, k)
        own = self_index >= 0
        num_relevant = num_relevant - (own & (candidate_groups[np.maximum(self_index, 0)]
                                              == query_groups))
    hits = ((ids >= 0) & (candidate_groups[np.maximum(ids, 0)] == query_groups[:, None])
            & (query_groups[:, None] >= 0))
    average_precision = np.full(len(query_groups), np.nan)
    recall = np.full(len(query_groups), np.nan)
    judged = num_relevant > 0
    if judged.any():
        average_precision[judged] = metrics.average_precision_at_k(hits[judged],
                                                                   num_relevant[judged], k)
        recall[judged] = metrics.recall_at_k(hits[judged], num_relevant[judged], k)
    return GroupedScores(average_precision, recall, num_relevant)
