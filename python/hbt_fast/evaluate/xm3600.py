"""XM3600 captions as text-to-text retrieval across its 36 languages: a caption retrieves the
other captions of its image (they describe the same picture), mAP@k.

Data: :mod:`hbt_fast.data.xm3600`. Every caption is a query and a candidate. Captions are all of
one kind, so each is encoded once, with ``encode_passages`` (``side="query"``:
``encode_queries``), as Tatoeba's sentences are. Settings, as LAReQA's:

* setup ``x -> y`` (every ordered pair of languages, ``x == y`` included): the captions of ``x``
  against the captions of ``y``; relevant are the captions of the query's image in ``y``, the
  query itself excluded (``x == y``: the image's other captions in its own language). A query
  with no relevant caption in ``y`` is left out of that setup. The language x language matrix
  holds each setup's mAP@k; ``mono`` is the mean of its diagonal, ``cross`` of the rest.
* ``multi``: the captions of ``x`` against the pool of every caption of every language but the
  query itself; relevant are all the other captions of its image (R of about 70 when an image
  has two captions per language). mAP@k per query language, then the mean over languages.

AP@k = (1 / min(R, k)) * sum_{i <= k} P@i * rel_i, as LAReQA's. Ties go to the lower candidate
index (languages in order, captions in file order).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from hbt_fast._checks import check_integer
from hbt_fast.data.xm3600 import XM3600Data, load_xm3600
from hbt_fast.evaluate._common import l2_normalize, mean_or_nan
from hbt_fast.evaluate.driver import EncodeJob, run_task
from hbt_fast.evaluate.grouped import grouped_retrieval
from hbt_fast.evaluate.keys import SETUPS, map_at
from hbt_fast.evaluate.result import TaskResult
from hbt_fast.evaluate.search import as_embeddings

__all__ = ["encode_jobs", "evaluate_xm3600", "load", "score"]

SIDES = ("passage", "query")

load = load_xm3600


def encode_jobs(data: XM3600Data, side: str = "passage") -> list:
    if side not in SIDES:
        raise ValueError(f"side must be 'passage' or 'query', got {side!r}")
    return [EncodeJob("query", language, side, data.captions[language],
                      f"XM3600 captions of {language!r} ({data.folder})")
            for language in data.languages]


def _by_query_language(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Mean of the non-NaN values of each query language's rows (NaN when there are none)."""
    return np.array([mean_or_nan(values[bounds[x]:bounds[x + 1]]) for x in range(len(bounds) - 1)])


def score(data: XM3600Data, query_embeddings: dict, candidate_embeddings: Optional[dict] = None,
          *, k: int = 20, normalize: bool = False) -> TaskResult:
    """Every setup and the multi setting from ``{language: caption embeddings}`` (candidates are
    the same captions; ``candidate_embeddings`` is not used)."""
    k = check_integer(k, "k")
    parts = [as_embeddings(query_embeddings[lang], len(data.captions[lang]),
                           name=f"caption embeddings of {lang!r}") for lang in data.languages]
    pool = np.concatenate(parts)
    if normalize:
        pool = l2_normalize(pool)
    images = np.concatenate([data.images[lang] for lang in data.languages])
    bounds = np.cumsum([0] + [len(part) for part in parts])
    everywhere = np.arange(len(pool))
    languages = len(data.languages)
    matrix = np.full((languages, languages), np.nan)
    for y in range(languages):
        block = slice(bounds[y], bounds[y + 1])
        own = np.where((everywhere >= block.start) & (everywhere < block.stop),
                       everywhere - block.start, -1)
        found = grouped_retrieval(pool, images, pool[block], images[block], k, self_index=own)
        matrix[:, y] = _by_query_language(found.average_precision, bounds)
    multi = _by_query_language(
        grouped_retrieval(pool, images, pool, images, k, self_index=everywhere).average_precision,
        bounds)
    return _summarise(data, k, matrix, multi)


def _summarise(data: XM3600Data, k: int, matrix: np.ndarray, multi: np.ndarray) -> TaskResult:
    key = map_at(k)
    diagonal = np.eye(len(data.languages), dtype=bool)
    headline = {section: {key: mean_or_nan(matrix[cells]),
                          SETUPS: int(np.count_nonzero(~np.isnan(matrix[cells])))}
                for section, cells in (("mono", diagonal), ("cross", ~diagonal))}
    headline["multi"] = {key: mean_or_nan(multi), SETUPS: int(np.count_nonzero(~np.isnan(multi)))}
    off = np.where(diagonal, np.nan, matrix)
    per_language = {
        language: {"captions": len(data.captions[language]),
                   "images": int(np.unique(data.images[language]).size),
                   f"mono_{key}": float(matrix[x, x]),
                   f"cross_{key}_as_query": mean_or_nan(off[x]),
                   f"cross_{key}_as_candidate": mean_or_nan(off[:, x]),
                   f"multi_{key}": float(multi[x])}
        for x, language in enumerate(data.languages)}
    table = {"rows": "query language", "columns": "candidate language",
             key: [[None if np.isnan(v) else float(v) for v in row] for row in matrix]}
    return TaskResult(task="xm3600", languages=list(data.languages), headline=headline,
                      per_language=per_language, matrix=table,
                      settings={"k": k, "images": len(data.image_keys)})


def evaluate_xm3600(encoder, data_dir=None, *, languages: Optional[Sequence[str]] = None,
                    k: int = 20, side: str = "passage", normalize: bool = False,
                    progress: bool = False) -> TaskResult:
    """Evaluate ``encoder`` on XM3600's captions, text to text; see the module doc."""
    k = check_integer(k, "k")
    if side not in SIDES:
        raise ValueError(f"side must be 'passage' or 'query', got {side!r}")
    data = load_xm3600(data_dir, languages)
    return run_task(score, encoder, data, encode_jobs(data, side), progress=progress,
                    description="evaluating xm3600", k=k, normalize=normalize)
