"""The LAReQA ranking pass: every rank the metrics need from one sweep over the score matrix.

Per block of query rows the ``rows x pool`` scores are computed once (BLAS) and, while the block
is still in cache, read by whole-array passes:

* block ranks: for each candidate language ``y``, the 1-based rank of the query's relevant
  candidate among ``y``'s candidates only (the mono/cross setups);
* the multi top-``depth`` ids over the whole pool (faiss' C++ heap, tie rule enforced);
* best and worst multi ranks: full ranks over the whole pool (not truncated) of the query's
  highest- and lowest-scoring relevant candidates; the best one is read off the top list when it
  is there, so only the worst one costs a pass in the usual case.

Ranks follow the tie rule of ``search``: ``rank = 1 + #(higher scores) + #(equal scores at a
lower candidate index)``. Ties are counted exactly, with a second pass only over rows that
have them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hbt_fast.evaluate.search import topk_from_scores

__all__ = ["LareqaRanks", "lareqa_ranks"]


class LareqaRanks(NamedTuple):
    block_ranks: np.ndarray  # [Q, L] rank within candidate language y; 0 = no relevant there
    multi_ids: np.ndarray  # [Q, depth] top candidates of the whole pool, best first
    best_rank: np.ndarray  # [Q] full multi rank of the best-ranked relevant candidate
    worst_rank: np.ndarray  # [Q] full multi rank of the worst-ranked relevant candidate


def ranks_of(scores: np.ndarray, threshold: np.ndarray, position: np.ndarray) -> np.ndarray:
    """1-based rank in each row of the candidate at ``position`` whose score is ``threshold``.

    Rows with a NaN threshold (no relevant candidate) get rank 0.
    """
    column = threshold[:, None]
    ranks = 1 + np.count_nonzero(scores > column, axis=1)
    tied = np.flatnonzero(np.count_nonzero(scores == column, axis=1) > 1)
    if tied.size:
        before = np.arange(scores.shape[1]) < position[tied, None]
        ranks[tied] += np.count_nonzero((scores[tied] == column[tied]) & before, axis=1)
    ranks[np.isnan(threshold)] = 0
    return ranks


def _extreme_relevant(relevant_scores: np.ndarray, present: np.ndarray):
    """Columns of the best (highest score, lowest index) and worst (lowest score, highest index)
    relevant candidate; columns follow candidate order, so argmax/argmin pick the right tie."""
    best = np.argmax(np.where(present, relevant_scores, -np.inf), axis=1)
    flipped = np.where(present, relevant_scores, np.inf)[:, ::-1]
    worst = relevant_scores.shape[1] - 1 - np.argmin(flipped, axis=1)
    return best, worst


def _best_ranks(scores, top_ids, picked, threshold) -> np.ndarray:
    """Rank of ``picked`` from its place in the (exact, tie-ordered) top list, else counted."""
    found = top_ids == picked[:, None]
    in_top = found.any(axis=1)
    ranks = np.argmax(found, axis=1) + 1
    missing = np.flatnonzero(~in_top)
    if missing.size:
        ranks[missing] = ranks_of(scores[missing], threshold[missing], picked[missing])
    return ranks


def _pick(matrix: np.ndarray, columns: np.ndarray) -> np.ndarray:
    return np.take_along_axis(matrix, columns[:, None], 1)[:, 0]


def lareqa_ranks(relevant_in: np.ndarray, offsets: np.ndarray, queries: np.ndarray,
                 candidates: np.ndarray, depth: int, block_bytes: int) -> LareqaRanks:
    """All ranks for ``queries x candidates``; ``relevant_in[q, y]`` is the global index of query
    q's relevant candidate in language y (-1: none), ``offsets`` the languages' first indices."""
    num_queries, num_languages = relevant_in.shape
    out = LareqaRanks(np.zeros((num_queries, num_languages), np.int64),
                      np.zeros((num_queries, depth), np.int64),
                      np.zeros(num_queries, np.int64), np.zeros(num_queries, np.int64))
    rows_per_block = max(1, block_bytes // (4 * max(1, candidates.shape[0])))
    candidates_t = np.ascontiguousarray(candidates.T)
    for start in range(0, num_queries, rows_per_block):
        rows = slice(start, min(start + rows_per_block, num_queries))
        scores = queries[rows] @ candidates_t
        relevant = relevant_in[rows]
        present = relevant >= 0
        relevant_scores = np.where(
            present, np.take_along_axis(scores, np.maximum(relevant, 0), 1), np.nan)
        for y in range(num_languages):
            out.block_ranks[rows, y] = ranks_of(scores[:, offsets[y]:offsets[y + 1]],
                                                relevant_scores[:, y], relevant[:, y] - offsets[y])
        top_ids = topk_from_scores(scores, depth)[1]
        out.multi_ids[rows] = top_ids
        best, worst = _extreme_relevant(relevant_scores, present)
        out.best_rank[rows] = _best_ranks(scores, top_ids, _pick(relevant, best),
                                          _pick(relevant_scores, best))
        out.worst_rank[rows] = ranks_of(scores, _pick(relevant_scores, worst),
                                        _pick(relevant, worst))
    return out
