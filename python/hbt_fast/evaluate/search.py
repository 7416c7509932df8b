"""Nearest-neighbour search over passage embeddings, exact by default, chunked.

Tie rule (used everywhere in ``hbt_fast.evaluate``): results are ordered by decreasing score, and
among equal scores the candidate with the **lower index** (its position in the candidate list)
ranks first. Exact search honours the rule exactly, including which tied candidates make the cut
at rank ``k``.

Exact scores do not depend on how the corpus is held: every score is one element of a product
``queries[a:a + QUERY_BLOCK] @ passages[b:b + PASSAGE_BLOCK].T`` on a fixed grid of global row
numbers. A BLAS product rounds an element differently depending on the shape of the product it
sits in (measured: faiss' and numpy's products disagree in the last bit once the rows are cut
differently), so the grid is what makes a corpus searched in memory and the same corpus searched
shard by shard (:mod:`hbt_fast.evaluate.shards`) give the same scores and ids, bit for bit, and
what makes two identical passages tie wherever they lie.

Memory: queries are processed in chunks, so no ``queries x corpus`` score matrix is ever held:
:class:`ExactTopK` holds one ``QUERY_BLOCK x PASSAGE_BLOCK`` block, and
:func:`iter_score_blocks` bounds each dense block by ``block_bytes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

from hbt_fast._checks import check_integer

__all__ = [
    "ExactTopK",
    "INDEX_KINDS",
    "PASSAGE_BLOCK",
    "QUERY_BLOCK",
    "SearchResult",
    "as_embeddings",
    "exact_search",
    "iter_score_blocks",
    "search",
    "topk_from_scores",
]

INDEX_KINDS = ("exact", "ivf", "hnsw")
_DEFAULT_BLOCK_BYTES = 64 * 2**20
_QUERY_CHUNK = 4096
#: the grid of exact scoring: rows of queries and of passages per product (see the module doc)
QUERY_BLOCK = 1024
PASSAGE_BLOCK = 4096
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


# faiss' heap runs a row batch on its OpenMP threads once rows x columns exceeds 1e5 (and
# heapify() always does). Between BLAS calls, whose own threads are still spinning, those threads
# only fight for the same cores, so the heap is filled here and fed batches below that size: it
# runs on the calling thread.
_HEAP_SERIAL_ELEMENTS = 100_000


def _heap_window(scores: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss' C++ heap over a dense block: the top ``window`` scores of each row (any tie order)."""
    faiss = _faiss()
    rows, n = scores.shape
    values = np.full((rows, window), -np.inf, dtype=np.float32)  # what heapify() would write
    ids = np.full((rows, window), -1, dtype=np.int64)
    heap = faiss.float_minheap_array_t()
    heap.nh, heap.k = rows, window
    heap.val, heap.ids = faiss.swig_ptr(values), faiss.swig_ptr(ids)
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


def _descending_key(scores: np.ndarray) -> np.ndarray:
    """uint64 keys that sort float32 scores from highest to lowest (-0.0 equal to 0.0)."""
    bits = (-scores.astype(np.float32) + np.float32(0.0)).view(np.uint32)
    negative = bits >> np.uint32(31) == 1
    return np.where(negative, ~bits, bits | np.uint32(0x80000000)).astype(np.uint64)


class ExactTopK:
    """The running exact top-``k`` of every query (tie rule included) over the passages, fed as
    the blocks ``passages[b:b + PASSAGE_BLOCK]`` of the grid, in order (only the last block may
    be shorter). :meth:`result` is then what :func:`search` returns for the whole corpus; a
    corpus read shard by shard is regridded into these blocks first (see the module doc).

    Once every list holds ``k`` candidates, a block's score can enter only when it is strictly
    higher than the list's last one (the block's rows come after every held row, so they lose
    ties): those few scores are found with one comparison over the block and merged, and only a
    block with many of them goes through the heap of :func:`topk_from_scores`."""

    def __init__(self, queries: np.ndarray, k: int):
        self.queries, self.k = queries, check_integer(k, "k")
        self.scores = np.full((queries.shape[0], self.k), -np.inf, dtype=np.float32)
        self.ids = np.full((queries.shape[0], self.k), -1, dtype=np.int64)
        self.rows = 0  # passages fed so far

    def add(self, block: np.ndarray) -> None:
        if self.rows % PASSAGE_BLOCK or not 1 <= block.shape[0] <= PASSAGE_BLOCK:
            raise ValueError(f"ExactTopK takes blocks of {PASSAGE_BLOCK} passages on the grid; got "
                             f"{block.shape[0]} rows after {self.rows}")
        block_t = block.T
        for start in range(0, self.queries.shape[0], QUERY_BLOCK):
            rows = np.arange(start, min(start + QUERY_BLOCK, self.queries.shape[0]))
            scores = self.queries[start:start + QUERY_BLOCK] @ block_t
            if self.rows < self.k or not self._merge_few(rows, scores):
                top_scores, top_ids = topk_from_scores(scores, self.k)
                self._merge(rows, top_scores, top_ids + self.rows)
        self.rows += block.shape[0]

    def _merge_few(self, rows: np.ndarray, scores: np.ndarray) -> bool:
        """Merge the scores above each full list's last one; False (nothing done) when there
        are more of them than the lists hold."""
        row, column = np.nonzero(scores > self.scores[rows, -1:])
        if row.size > rows.size * self.k:
            return False
        if not row.size:
            return True
        entering, new_counts = np.unique(row, return_counts=True)
        held = rows[entering]
        # One stable sort by (list, score descending): each held list is already in order and
        # comes first, and the new scores of a list come in increasing row order, so equal
        # scores stay ordered by row number as the tie rule wants.
        owner = np.concatenate([np.repeat(np.arange(entering.size), self.k),
                                np.searchsorted(entering, row)]).astype(np.uint64)
        values = np.concatenate([self.scores[held].ravel(), scores[row, column]])
        ids = np.concatenate([self.ids[held].ravel(), column + self.rows])
        order = np.argsort((owner << np.uint64(32)) | _descending_key(values), kind="stable")
        group_starts = np.cumsum(self.k + new_counts) - (self.k + new_counts)
        keep = order[group_starts[:, None] + np.arange(self.k)]
        self.scores[held], self.ids[held] = values[keep], ids[keep]
        return True

    def _merge(self, rows: np.ndarray, scores: np.ndarray, ids: np.ndarray) -> None:
        self.scores[rows], self.ids[rows] = _order_by_score_then_index(
            np.concatenate([self.scores[rows], scores], 1), np.concatenate([self.ids[rows], ids], 1),
            self.k)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, ``min(k, passages fed)`` wide."""
        width = min(self.k, self.rows)
        return self.scores[:, :width].copy(), self.ids[:, :width].copy()


def exact_search(queries: np.ndarray, passages: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` (tie rule included) of float32 ``queries`` over float32 ``passages``."""
    top = ExactTopK(queries, k)
    for start in range(0, passages.shape[0], PASSAGE_BLOCK):
        top.add(passages[start:start + PASSAGE_BLOCK])
    return top.result()


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

    ``index="exact"`` (default) scores every pair on the grid of :class:`ExactTopK` (BLAS
    products, faiss' heap) with the tie rule enforced. ``"ivf"``
    (IVF-Flat, ``nprobe`` lists probed) and ``"hnsw"`` are approximate options meant for corpora
    past a million passages; their ``recall_vs_exact`` is measured on ``recall_sample`` random
    queries against exact search, so the cost of approximation is always reported.
    """
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {index!r}")
    k = check_integer(k, "k")
    queries, passages = _check_pair(queries, passages)
    k = min(k, passages.shape[0])
    if index == "exact":
        return SearchResult(*exact_search(queries, passages, k), index="exact")
    approx = _build_approximate_index(passages, index, nprobe, seed)
    scores, ids = _chunked(lambda chunk: approx.search(chunk, k), queries, k)
    sample = recall_sample_rows(queries.shape[0], recall_sample, seed)
    exact_ids = exact_search(queries[sample], passages, k)[1]
    return SearchResult(scores, ids, index=index, recall_vs_exact=recall_against(ids[sample], exact_ids))


def recall_sample_rows(num_queries: int, recall_sample: int, seed: int) -> np.ndarray:
    """The queries whose approximate results are checked against exact search."""
    rng = np.random.default_rng(seed)
    return rng.choice(num_queries, size=min(recall_sample, num_queries), replace=False)


def recall_against(ids: np.ndarray, exact_ids: np.ndarray) -> Optional[float]:
    """Mean share of each exact top-k list found in the approximate one (None: no sample)."""
    if not exact_ids.size:
        return None
    overlap = (ids[:, :, None] == exact_ids[:, None, :]).any(axis=2).sum(axis=1)
    return float(overlap.mean() / exact_ids.shape[1])


def _chunked(search_chunk, queries: np.ndarray, k: int):
    scores = np.empty((queries.shape[0], k), dtype=np.float32)
    ids = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], _QUERY_CHUNK):
        stop = start + _QUERY_CHUNK
        scores[start:stop], ids[start:stop] = search_chunk(queries[start:stop])
    return scores, ids
