"""The one evaluation driver: encode every text a task needs, then hand the arrays to its scorer.

A task describes its encoding work as :class:`EncodeJob` s (which texts, which encoder method,
which language); :func:`encode_jobs` runs them all under one progress bar whose total is every
text of the task, so the ETA covers the whole evaluation. Texts are sent to the encoder in
chunks of :data:`ENCODE_CHUNK` (a multiple of usual batch sizes), the same with or without the
bar, so figures never depend on whether progress is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from hbt_fast._checks import check_flag
from hbt_fast.evaluate.search import as_embeddings

__all__ = ["ENCODE_CHUNK", "EncodeJob", "encode_job", "encode_jobs", "encoder_method", "run_task"]

ENCODE_CHUNK = 1024
_METHODS = {"query": "encode_queries", "passage": "encode_passages"}


@dataclass(frozen=True)
class EncodeJob:
    """Encode ``texts`` with the encoder's query or passage side into ``role``[``language``]."""

    role: str  # "query" or "candidate": the embeddings argument of score() it fills
    language: str
    side: str  # "query" -> encode_queries, "passage" -> encode_passages
    texts: Sequence[str]
    what: str  # names the texts in error messages (language, file)


def encoder_method(encoder, side: str):
    """The encoder's ``encode_queries`` (side "query") or ``encode_passages`` ("passage")."""
    name = _METHODS[side]
    method = getattr(encoder, name, None)
    if not callable(method):
        raise TypeError(f"encoder must have a callable {name}(list[str]) method")
    return method


def _methods(encoder, jobs) -> dict:
    return {side: encoder_method(encoder, side) for side in dict.fromkeys(job.side for job in jobs)}


def encode_job(method, job: EncodeJob, dim: Optional[int], advance) -> np.ndarray:
    """``job``'s texts through ``method`` in chunks of :data:`ENCODE_CHUNK`, each checked (rows,
    finite values, dimension ``dim`` when given); ``advance(n)`` after each chunk."""
    name = f"{_METHODS[job.side]} for {job.what}"
    parts = []
    for start in range(0, len(job.texts), ENCODE_CHUNK):
        chunk = list(job.texts[start:start + ENCODE_CHUNK])
        part = as_embeddings(method(chunk), len(chunk), name=name)
        if dim is not None and part.shape[1] != dim:
            raise ValueError(f"{name}: dimension {part.shape[1]}, expected {dim} "
                             "(as for earlier calls)")
        dim = part.shape[1]
        parts.append(part)
        advance(len(chunk))
    if not parts:
        raise ValueError(f"{name}: no texts to encode")
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def encode_jobs(encoder, jobs: Sequence[EncodeJob], *, progress: bool = False,
                description: str = "evaluating") -> tuple[dict, dict]:
    """``(query_embeddings, candidate_embeddings)``, each ``{language: [n, d] float32}``."""
    methods = _methods(encoder, jobs)
    from tqdm.auto import tqdm

    total = sum(len(job.texts) for job in jobs)
    out = {"query": {}, "candidate": {}}
    dim = None
    with tqdm(total=total, desc=description, unit="text", disable=not progress,
              dynamic_ncols=True) as bar:
        for job in jobs:
            embeddings = encode_job(methods[job.side], job, dim, bar.update)
            dim = embeddings.shape[1]
            out[job.role][job.language] = embeddings
    return out["query"], out["candidate"]


def run_task(score: Callable, encoder, data, jobs: Sequence[EncodeJob], *, progress: bool = False,
             description: str = "evaluating", **options):
    """Encode ``jobs`` and return ``score(data, query_embeddings, candidate_embeddings,
    **options)``, a :class:`~hbt_fast.evaluate.TaskResult`."""
    progress = check_flag(progress, "progress")
    queries, candidates = encode_jobs(encoder, jobs, progress=progress, description=description)
    return score(data, queries, candidates, **options)
