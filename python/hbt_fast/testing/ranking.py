"""Plain reference of the LAReQA ranking pass (``hbt_fast.evaluate.ranking``), the test oracle.

Each row is fully sorted by (score descending, candidate index ascending); every rank is read
off that order. Quadratic in memory and slow by design: only for small test inputs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["reference_lareqa_ranks", "reference_topk"]


def _ranks_in_order(scores_row: np.ndarray) -> np.ndarray:
    """1-based rank of every candidate of one row under the tie rule."""
    order = np.lexsort((np.arange(scores_row.size), -scores_row))
    ranks = np.empty(scores_row.size, dtype=np.int64)
    ranks[order] = np.arange(1, scores_row.size + 1)
    return ranks


def reference_topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.stack([np.lexsort((np.arange(row.size), -row)) for row in scores])[:, :k]
    return np.take_along_axis(scores, order, 1), order


def reference_lareqa_ranks(relevant_in, offsets, queries, candidates, depth):
    """``(block_ranks, multi_ids, best_rank, worst_rank)`` as ``lareqa_ranks`` defines them."""
    scores = queries.astype(np.float64) @ candidates.astype(np.float64).T
    num_queries, num_languages = relevant_in.shape
    block_ranks = np.zeros((num_queries, num_languages), dtype=np.int64)
    best = np.zeros(num_queries, dtype=np.int64)
    worst = np.zeros(num_queries, dtype=np.int64)
    for q in range(num_queries):
        full = _ranks_in_order(scores[q])
        relevant = relevant_in[q][relevant_in[q] >= 0]
        best[q], worst[q] = full[relevant].min(), full[relevant].max()
        for y in range(num_languages):
            if relevant_in[q, y] >= 0:
                block = _ranks_in_order(scores[q, offsets[y]:offsets[y + 1]])
                block_ranks[q, y] = block[relevant_in[q, y] - offsets[y]]
    _, multi_ids = reference_topk(scores, depth)
    return block_ranks, multi_ids, best, worst
