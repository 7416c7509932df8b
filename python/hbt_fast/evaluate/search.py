"""Nearest-neighbour search over passage embeddings, exact by default, chunked.

Tie rule (used everywhere in ``hbt_fast.evaluate``): results are ordered by decreasing score, and
among equal scores the candidate with the **lower index** (its position in the candidate list)
ranks first. Exact search honours the rule exactly, including which tied candidates make the cut
at rank ``k``.

Memory: queries are processed in chunks, so no ``queries x corpus`` score matrix is ever held:
faiss blocks its own matrix products, and :func:`iter_score_blocks` bounds each dense block by
``block_bytes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

__all__ = [
    "INDEX_KINDS",
    "SearchResult",
    "as_embeddings",
    "iter_score_blocks",
    "search",
    "topk_from_scores",
]

INDEX_KINDS = ("exact", "ivf", "hnsw")
_DEFAULT_BLOCK_BYTES = 64 * 2**20
_QUERY_CHUNK = 4096
# Extra candidates fetched beyond k so that ties at the cut can be resolved by index.
_TIE_MARGIN = 16


@dataclass
class SearchResult:
    """Top-k of each query: ``ids[q, i]`` is the candidate at rank ``i + 1``."""

    scores: np.ndarray
    ids: np.ndarray
    index: str = "exact"
    #: mean overlap of the approximate top-k with the exact top-k on a query sample
    recall_vs_exact: Optional[float] = None


def as_embeddings(array, n_rows: Optional[int] = None, *, name: str = "embeddings") -> np.ndarray:
    """Validate an encoder's output and return it as a C-contiguous float32 matrix.

    Raises ValueError naming ``name`` for a wrong shape, a row count other than ``n_rows``, or
    non-finite values (NaN/inf), which would silently corrupt every ranking.
    """
    if hasattr(array, "detach"):  # a torch tensor
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [n, d], got shape {array.shape}")
    if n_rows is not None and array.shape[0] != n_rows:
        raise ValueError(f"{name}: expected {n_rows} rows (one per text), got {array.shape[0]}")
    if array.shape[1] == 0:
        raise ValueError(f"{name}: embeddings have dimension 0")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"{name}: expected real numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise ValueError(f"{name}: non-finite value (NaN or inf) in row {bad}")
    return array


def _check_pair(queries, passages):
    queries = as_embeddings(queries, name="queries")
    passages = as_embeddings(passages, name="passages")
    if queries.shape[1] != passages.shape[1]:
        raise ValueError(
            f"queries have dimension {queries.shape[1]} but passages {passages.shape[1]}"
        )
    if passages.shape[0] == 0:
        raise ValueError("passages: no candidates to search")
    return queries, passages


def iter_score_blocks(
    queries: np.ndarray, passages: np.ndarray, *, block_bytes: int = _DEFAULT_BLOCK_BYTES
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_query_row, scores)`` with ``scores = queries[rows] @ passages.T``.

    Each block holds at most ``block_bytes`` of float32 scores (at least one query row).
    """
    rows = max(1, block_bytes // (4 * max(1, passages.shape[0])))
    passages_t = np.ascontiguousarray(passages.T)
    for start in range(0, queries.shape[0], rows):
        yield start, queries[start : start + rows] @ passages_t


def _order_by_score_then_index(scores: np.ndarray, ids: np.ndarray, k: int):
    order = np.lexsort((ids, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _topk_by_partition(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy top-k under the tie rule: the reference the heap path is tested against."""
    n = scores.shape[1]
    top = np.argpartition(scores, n - k, axis=1)[:, n - k :]
    top_scores = np.take_along_axis(scores, top, 1)
    kth = top_scores.min(axis=1, keepdims=True)
    ties_total = np.count_nonzero(scores == kth, axis=1)
    ties_kept = np.count_nonzero(top_scores == kth, axis=1)
    straddling = np.flatnonzero(ties_total > ties_kept)
    if straddling.size:
        # argpartition keeps arbitrary members of a tie that straddles the cut; rebuild those rows
        # with the lowest-index tied candidates.
        sub = scores[straddling]
        sub_kth = kth[straddling]
        above = sub > sub_kth
        tied = sub == sub_kth
        need = k - above.sum(axis=1, keepdims=True)
        keep = above | (tied & (np.cumsum(tied, axis=1) <= need))
        top[straddling] = np.nonzero(keep)[1].reshape(len(straddling), k)
        top_scores[straddling] = np.take_along_axis(sub, top[straddling], 1)
    return _order_by_score_then_index(top_scores, top, k)


# faiss' heap runs a row batch on its OpenMP threads once rows x columns exceeds 1e5. Between
# BLAS calls (whose own threads are still spinning) those threads only fight for the same cores,
# so the heap is fed batches below that size and runs on the calling thread.
_HEAP_SERIAL_ELEMENTS = 100_000


def _heap_window(scores: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss' C++ heap over a dense block: the top ``window`` scores of each row (any tie order)."""
    faiss = _faiss()
    rows, n = scores.shape
    values = np.empty((rows, window), dtype=np.float32)
    ids = np.empty((rows, window), dtype=np.int64)
    heap = faiss.float_minheap_array_t()
    heap.nh, heap.k = rows, window
    heap.val, heap.ids = faiss.swig_ptr(values), faiss.swig_ptr(ids)
    heap.heapify()
    batch = max(1, _HEAP_SERIAL_ELEMENTS // n)
    for start in range(0, rows, batch):
        count = min(batch, rows - start)
        heap.addn(n, faiss.swig_ptr(scores[start:start + count]), 0, start, count)
    return values, ids


def topk_from_scores(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each row of a dense score block under the tie rule (lower index first).

    One pass of faiss' heap keeps ``k`` plus a margin per row; a row whose k-th score equals the
    last kept one (a tie that may run past the margin) is redone exactly in numpy.
    """
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    n = scores.shape[1]
    k = min(int(k), n)
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    window = min(n, k + _TIE_MARGIN)
    if window == n:
        return _topk_by_partition(scores, k)
    values, ids = _heap_window(scores, window)
    top_scores, top_ids = _order_by_score_then_index(values, ids, window)
    top_scores, top_ids = top_scores[:, :k].copy(), top_ids[:, :k].copy()
    unsure = np.flatnonzero(top_scores[:, k - 1] <= values.min(axis=1))
    if unsure.size:
        top_scores[unsure], top_ids[unsure] = _topk_by_partition(scores[unsure], k)
    return top_scores, top_ids


def _faiss():
    import faiss

    return faiss


def _exact_faiss_search(index, queries: np.ndarray, k: int, n: int):
    """Exact top-k from a flat inner-product index, honouring the tie rule.

    faiss returns the right *set* of scores but breaks ties arbitrarily, so we fetch a margin of
    extra candidates; when the k-th score still equals the last fetched one (a tie may continue
    past the window) the row is searched again with a doubled window.
    """
    scores = np.empty((queries.shape[0], k), dtype=np.float32)
    ids = np.empty((queries.shape[0], k), dtype=np.int64)
    pending = np.arange(queries.shape[0])
    window = min(n, k + _TIE_MARGIN)
    while pending.size:
        window_scores, window_ids = index.search(queries[pending], window)
        resolved = (window >= n) | (window_scores[:, k - 1] > window_scores[:, window - 1])
        done = pending[resolved]
        scores[done], ids[done] = _order_by_score_then_index(
            window_scores[resolved], window_ids[resolved], k
        )
        pending = pending[~resolved]
        window = min(n, 2 * window)
    return scores, ids


def _build_approximate_index(passages: np.ndarray, kind: str, nprobe: int, seed: int):
    faiss = _faiss()
    n, dim = passages.shape
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = max(128, 2 * nprobe)
        index.add(passages)
        return index
    # IVF: ~4 sqrt(n) lists, trained on a sample of at most 64 points per list.
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = passages[np.sort(rng.choice(n, size=min(n, 64 * nlist), replace=False))]
    index.train(sample)
    index.add(passages)
    index.nprobe = min(nlist, nprobe)
    return index


def search(
    queries,
    passages,
    k: int,
    *,
    index: str = "exact",
    nprobe: int = 32,
    recall_sample: int = 512,
    seed: int = 0,
) -> SearchResult:
    """Top-k candidates by inner product for every query.

    ``index="exact"`` (default) is a faiss flat index with the tie rule enforced. ``"ivf"``
    (IVF-Flat, ``nprobe`` lists probed) and ``"hnsw"`` are approximate options meant for corpora
    past a million passages; their ``recall_vs_exact`` is measured on ``recall_sample`` random
    queries against exact search, so the cost of approximation is always reported.
    """
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {index!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    queries, passages = _check_pair(queries, passages)
    n = passages.shape[0]
    k = min(int(k), n)
    faiss = _faiss()
    flat = faiss.IndexFlatIP(passages.shape[1])
    flat.add(passages)
    if index == "exact":
        scores, ids = _chunked(lambda chunk: _exact_faiss_search(flat, chunk, k, n), queries, k)
        return SearchResult(scores, ids, index="exact")
    approx = _build_approximate_index(passages, index, nprobe, seed)
    scores, ids = _chunked(lambda chunk: approx.search(chunk, k), queries, k)
    rng = np.random.default_rng(seed)
    sample = rng.choice(queries.shape[0], size=min(recall_sample, queries.shape[0]), replace=False)
    _, exact_ids = _exact_faiss_search(flat, queries[sample], k, n)
    overlap = (ids[sample][:, :, None] == exact_ids[:, None, :]).any(axis=2).sum(axis=1)
    recall = float(overlap.mean() / k) if sample.size else None
    return SearchResult(scores, ids, index=index, recall_vs_exact=recall)


def _chunked(search_chunk, queries: np.ndarray, k: int):
    scores = np.empty((queries.shape[0], k), dtype=np.float32)
    ids = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], _QUERY_CHUNK):
        stop = start + _QUERY_CHUNK
        scores[start:stop], ids[start:stop] = search_chunk(queries[start:stop])
    return scores, ids
