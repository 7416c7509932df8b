"""Tatoeba bitext retrieval: accuracy@1 of nearest-neighbour search, xx->eng and eng->xx.

Data (read by :mod:`hbt_fast.data.tatoeba`): ``tatoeba.<xxx>-eng.<xxx>`` and
``tatoeba.<xxx>-eng.eng``, line-aligned. A query is correct when its nearest neighbour (ties:
lower line number first) is its own line.

Both sides are sentences of the same kind, so both are encoded with ``encode_passages`` by
default (``side="query"`` uses ``encode_queries``); one embedding per sentence serves both
directions: the ``xx`` sentences are the "queries", the English ones the "candidates".
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from hbt_fast.data.tatoeba import TatoebaData, load_tatoeba, tatoeba_languages
from hbt_fast.evaluate._common import l2_normalize
from hbt_fast.evaluate.driver import EncodeJob, run_task
from hbt_fast.evaluate.per_query import PerQuery
from hbt_fast.evaluate.result import TaskResult
from hbt_fast.evaluate.search import as_embeddings, search

__all__ = ["encode_jobs", "evaluate_tatoeba", "load", "score", "tatoeba_languages"]

SIDES = ("passage", "query")
TO_ENGLISH, FROM_ENGLISH, BOTH = "xx->eng", "eng->xx", "both"

load = load_tatoeba


def encode_jobs(data: TatoebaData, side: str = "passage") -> list:
    if side not in SIDES:
        raise ValueError(f"side must be 'passage' or 'query', got {side!r}")
    jobs = []
    for language in data.languages:
        what = f"language {language!r} ({data.folder})"
        jobs.append(EncodeJob("query", language, side, data.sentences[language],
                              f"{what}, {language} side"))
        jobs.append(EncodeJob("candidate", language, side, data.english[language],
                              f"{what}, eng side"))
    return jobs


def _nearest_is_own_line(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Per query, whether its nearest neighbour is its own line (accuracy@1's per-query value)."""
    nearest = search(queries, candidates, 1).ids[:, 0]
    return nearest == np.arange(len(queries))


def score(data: TatoebaData, query_embeddings: dict, candidate_embeddings: dict, *,
          normalize: bool = False) -> TaskResult:
    """Accuracy@1 per language in both directions from ``{language: embeddings}`` of the
    ``xx`` sentences (queries) and of the English ones (candidates)."""
    per_language, correct = {}, {TO_ENGLISH: [], FROM_ENGLISH: []}
    for language in data.languages:
        n = len(data.sentences[language])
        source = as_embeddings(query_embeddings[language], n, name=f"{language} embeddings")
        english = as_embeddings(candidate_embeddings[language], n,
                                name=f"eng embeddings of {language}")
        if normalize:
            source, english = l2_normalize(source), l2_normalize(english)
        correct[TO_ENGLISH].append(_nearest_is_own_line(source, english))
        correct[FROM_ENGLISH].append(_nearest_is_own_line(english, source))
        per_language[language] = {direction: float(np.mean(hits[-1]))
                                  for direction, hits in correct.items()}
        per_language[language]["sentences"] = n
    to_english = [v[TO_ENGLISH] for v in per_language.values()]
    from_english = [v[FROM_ENGLISH] for v in per_language.values()]
    headline = {"mean": {TO_ENGLISH: float(np.mean(to_english)),
                         FROM_ENGLISH: float(np.mean(from_english)),
                         BOTH: float(np.mean(to_english + from_english))}}
    per_query = PerQuery("tatoeba", {
        "language": np.repeat(np.asarray(data.languages, dtype=str),
                              [len(data.sentences[lang]) for lang in data.languages]),
        "line": np.concatenate([np.arange(len(data.sentences[lang])) for lang in data.languages]),
        "to_english": np.concatenate(correct[TO_ENGLISH]),
        "from_english": np.concatenate(correct[FROM_ENGLISH])})
    return TaskResult(task="tatoeba", languages=list(per_language), headline=headline,
                      per_language=per_language, per_query=per_query)


def evaluate_tatoeba(encoder, data_dir=None, *, languages: Optional[Sequence[str]] = None,
                     normalize: bool = False, side: str = "passage",
                     progress: bool = False) -> TaskResult:
    """Accuracy@1 per language in both directions and their means; see the module doc."""
    if side not in SIDES:
        raise ValueError(f"side must be 'passage' or 'query', got {side!r}")
    data = load_tatoeba(data_dir, languages)
    return run_task(score, encoder, data, encode_jobs(data, side), progress=progress,
                    description="evaluating tatoeba", normalize=normalize)
