"""Tatoeba bitext retrieval: accuracy@1 and MTEB's F1 of nearest-neighbour search, xx->eng
and eng->xx, by language and over groups of languages.

Data (read by :mod:`hbt_fast.data.tatoeba`): ``tatoeba.<xxx>-eng.<xxx>`` and
``tatoeba.<xxx>-eng.eng``, line-aligned. A query is correct when its nearest neighbour (ties:
lower line number first) is its own line.

Both sides are sentences of the same kind, so both are encoded with ``encode_passages`` by
default (``side="query"`` uses ``encode_queries``); one embedding per sentence serves both
directions: the ``xx`` sentences are the "queries", the English ones the "candidates".

Figures per language and direction: accuracy@1 (``xx->eng``, ``eng->xx``) and MTEB's
BitextMining F1 (``f1_xx->eng``, ``f1_eng->xx``; :func:`~hbt_fast.evaluate.metrics.
bitext_mining_scores`). MTEB's Tatoeba task reports ``f1_xx->eng``: its ``sentence1`` is the
xx side. Sections of the headline, each the mean over its languages (macro), with their count:

* ``mean``: every language evaluated; ``both`` averages the two directions' accuracies;
* ``seen`` / ``unseen``: languages in / not in ``seen_languages`` (those of a training run;
  ISO 639-1 codes are mapped to Tatoeba's, ``de`` -> ``deu``), when it is given;
* ``low-resource``: languages in ``low_resource`` (default
  :data:`~hbt_fast.data.tatoeba.TATOEBA_LOW_RESOURCE`: fewer than 1,000 pairs in LASER's set).

A section with no language is left out. A language with fewer than ``min_lines`` lines is
skipped with a warning naming it (one line makes retrieval trivial: one candidate).
"""

from __future__ import annotations

import warnings
from typing import Iterable, Optional, Sequence

import numpy as np

from hbt_fast._checks import check_flag, check_integer
from hbt_fast.data.tatoeba import (TATOEBA_LOW_RESOURCE, TatoebaData, load_tatoeba, tatoeba_code,
                                   tatoeba_languages)
from hbt_fast.evaluate._common import l2_normalize
from hbt_fast.evaluate.driver import EncodeJob, run_task
from hbt_fast.evaluate.metrics import bitext_mining_scores
from hbt_fast.evaluate.per_query import PerQuery
from hbt_fast.evaluate.result import TaskResult
from hbt_fast.evaluate.search import as_embeddings, search

__all__ = ["encode_jobs", "evaluate_tatoeba", "load", "score", "tatoeba_languages"]

SIDES = ("passage", "query")
TO_ENGLISH, FROM_ENGLISH, BOTH = "xx->eng", "eng->xx", "both"
F1_TO_ENGLISH, F1_FROM_ENGLISH = f"f1_{TO_ENGLISH}", f"f1_{FROM_ENGLISH}"
LANGUAGE_COUNT = "languages"
LOW_RESOURCE_RULE = ("fewer than 1,000 pairs in LASER's Tatoeba v1 test set "
                     "(hbt_fast.data.tatoeba.TATOEBA_LOW_RESOURCE)")
DEFAULT_MIN_LINES = 2

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


def _nearest(queries: np.ndarray, candidates: np.ndarray) -> tuple:
    """MTEB's scores of the nearest candidates, and per query whether its nearest is its own
    line (accuracy@1's per-query value)."""
    nearest = search(queries, candidates, 1).ids[:, 0]
    return bitext_mining_scores(nearest), nearest == np.arange(len(queries))


def _language_set(languages, name: str) -> Optional[set]:
    """Tatoeba codes of ``languages`` (ISO 639-1 codes mapped), or None when not given."""
    if languages is None:
        return None
    if isinstance(languages, (str, bytes)) or not isinstance(languages, Iterable):
        raise TypeError(f"{name} must be a list of language codes, got {languages!r}")
    languages = list(languages)
    bad = [lang for lang in languages if not isinstance(lang, str) or not lang.strip()]
    if bad:
        raise ValueError(f"{name}: {bad[0]!r} is not a language code")
    return {tatoeba_code(lang) for lang in languages}


def _section(rows: dict, languages: list) -> dict:
    means = {name: float(np.mean([rows[lang][name] for lang in languages]))
             for name in (TO_ENGLISH, FROM_ENGLISH, F1_TO_ENGLISH, F1_FROM_ENGLISH)}
    means[BOTH] = (means[TO_ENGLISH] + means[FROM_ENGLISH]) / 2
    return {**means, LANGUAGE_COUNT: len(languages)}


def score(data: TatoebaData, query_embeddings: dict, candidate_embeddings: dict, *,
          normalize: bool = False, seen_languages: Optional[Sequence[str]] = None,
          low_resource: Sequence[str] = TATOEBA_LOW_RESOURCE) -> TaskResult:
    """Accuracy@1 and MTEB's F1 per language in both directions from ``{language: embeddings}``
    of the ``xx`` sentences (queries) and of the English ones (candidates); see the module doc
    for the sections."""
    seen = _language_set(seen_languages, "seen_languages")
    low = _language_set(low_resource, "low_resource")
    per_language, correct = {}, {TO_ENGLISH: [], FROM_ENGLISH: []}
    for language in data.languages:
        n = len(data.sentences[language])
        source = as_embeddings(query_embeddings[language], n, name=f"{language} embeddings")
        english = as_embeddings(candidate_embeddings[language], n,
                                name=f"eng embeddings of {language}")
        if normalize:
            source, english = l2_normalize(source), l2_normalize(english)
        (to_english, correct_to), (from_english, correct_from) = (_nearest(source, english),
                                                                  _nearest(english, source))
        correct[TO_ENGLISH].append(correct_to)
        correct[FROM_ENGLISH].append(correct_from)
        row = {TO_ENGLISH: to_english["accuracy"], FROM_ENGLISH: from_english["accuracy"],
               F1_TO_ENGLISH: to_english["f1"], F1_FROM_ENGLISH: from_english["f1"],
               "sentences": n, "low_resource": language in low}
        if seen is not None:
            row["seen"] = language in seen
        per_language[language] = row
    groups = {"mean": list(per_language)}
    if seen is not None:
        groups["seen"] = [lang for lang in per_language if lang in seen]
        groups["unseen"] = [lang for lang in per_language if lang not in seen]
    groups["low-resource"] = [lang for lang in per_language if lang in low]
    headline = {name: _section(per_language, languages)
                for name, languages in groups.items() if languages}
    settings = {"low_resource_rule": (LOW_RESOURCE_RULE if low == set(TATOEBA_LOW_RESOURCE)
                                      else f"given: {', '.join(sorted(low))}")}
    if seen is not None:
        settings["seen_languages"] = sorted(seen)
    per_query = PerQuery("tatoeba", {
        "language": np.repeat(np.asarray(data.languages, dtype=str),
                              [len(data.sentences[lang]) for lang in data.languages]),
        "line": np.concatenate([np.arange(len(data.sentences[lang])) for lang in data.languages]),
        "to_english": np.concatenate(correct[TO_ENGLISH]),
        "from_english": np.concatenate(correct[FROM_ENGLISH]),
        "low_resource": np.repeat([lang in low for lang in data.languages],
                                  [len(data.sentences[lang]) for lang in data.languages]),
        **({} if seen is None else {"seen": np.repeat(
            [lang in seen for lang in data.languages],
            [len(data.sentences[lang]) for lang in data.languages])})})
    return TaskResult(task="tatoeba", languages=list(per_language), headline=headline,
                      per_language=per_language, settings=settings, per_query=per_query)


def _keep_long_enough(data: TatoebaData, min_lines: int) -> tuple:
    """``data`` without the languages of fewer than ``min_lines`` lines (each named in a
    warning), and ``{language: why}`` of those skipped."""
    min_lines = check_integer(min_lines, "min_lines")
    skipped = {}
    for language in data.languages:
        lines = len(data.sentences[language])
        if lines < min_lines:
            skipped[language] = f"{lines} line{'s' if lines != 1 else ''}"
            warnings.warn(f"Tatoeba language {language!r} skipped: {skipped[language]}, fewer "
                          f"than min_lines={min_lines}", UserWarning, stacklevel=3)
    if len(skipped) == len(data.languages):
        raise ValueError(f"no Tatoeba language in {data.folder} has {min_lines} lines or more "
                         f"(skipped: {', '.join(skipped)}); lower min_lines")
    kept = [lang for lang in data.languages if lang not in skipped]
    return TatoebaData(data.folder, kept, {lang: data.sentences[lang] for lang in kept},
                       {lang: data.english[lang] for lang in kept}), skipped


def evaluate_tatoeba(encoder, data_dir=None, *, languages: Optional[Sequence[str]] = None,
                     normalize: bool = False, side: str = "passage", progress: bool = False,
                     seen_languages: Optional[Sequence[str]] = None,
                     low_resource: Sequence[str] = TATOEBA_LOW_RESOURCE,
                     min_lines: int = DEFAULT_MIN_LINES) -> TaskResult:
    """Accuracy@1 and MTEB's F1 per language in both directions, and their means over all,
    seen, unseen and low-resource languages; see the module doc."""
    if side not in SIDES:
        raise ValueError(f"side must be 'passage' or 'query', got {side!r}")
    progress = check_flag(progress, "progress")  # refused before the files are read
    _language_set(seen_languages, "seen_languages")  # refused before the long encoding
    _language_set(low_resource, "low_resource")
    data, skipped = _keep_long_enough(load_tatoeba(data_dir, languages), min_lines)
    result = run_task(score, encoder, data, encode_jobs(data, side), progress=progress,
                      description="evaluating tatoeba", normalize=normalize,
                      seen_languages=seen_languages, low_resource=low_resource)
    result.settings.update({"min_lines": int(min_lines), "skipped": skipped})
    return result
