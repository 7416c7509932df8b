"""Tatoeba bitext retrieval: accuracy@1 of nearest-neighbour search, xx->eng and eng->xx.

Data: ``tatoeba.<xxx>-eng.<xxx>`` and ``tatoeba.<xxx>-eng.eng``, line-aligned (LASER layout).
Sentence ``i`` of one side is the translation of sentence ``i`` of the other; a query is correct
when its nearest neighbour (ties: lower line number first, as ``argmax``) is its own line.

Both sides are sentences of the same kind, so both are encoded with ``encode_passages`` by
default (``side="query"`` uses ``encode_queries``); one embedding per sentence serves both
directions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hbt_fast.evaluate._common import encode, l2_normalize, resolve_data_dir
from hbt_fast.evaluate.result import TaskResult
from hbt_fast.evaluate.search import search

__all__ = ["evaluate_tatoeba", "tatoeba_languages"]

_PAIR = re.compile(r"^tatoeba\.([a-z]+)-eng\.\1$")


def tatoeba_languages(folder) -> list:
    """Language codes with a ``tatoeba.<xxx>-eng.<xxx>`` file in ``folder``, sorted."""
    return sorted(m.group(1) for p in Path(folder).iterdir() if (m := _PAIR.match(p.name)))


def _read_lines(path: Path, language: str) -> list:
    if not path.is_file():
        raise FileNotFoundError(f"language {language!r}: file {path} does not exist")
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle]


def _load_pair(folder: Path, language: str):
    source = _read_lines(folder / f"tatoeba.{language}-eng.{language}", language)
    english = _read_lines(folder / f"tatoeba.{language}-eng.eng", language)
    if len(source) != len(english):
        raise ValueError(
            f"language {language!r}: {len(source)} lines in tatoeba.{language}-eng.{language} but "
            f"{len(english)} in tatoeba.{language}-eng.eng (files must be line-aligned)"
        )
    if not source:
        raise ValueError(f"language {language!r}: tatoeba files are empty")
    return source, english


def _accuracy_at_1(queries: np.ndarray, candidates: np.ndarray) -> float:
    nearest = search(queries, candidates, 1).ids[:, 0]
    return float(np.mean(nearest == np.arange(len(queries))))


def evaluate_tatoeba(
    encoder,
    data_dir=None,
    *,
    languages: Optional[Sequence[str]] = None,
    normalize: bool = False,
    side: str = "passage",
) -> TaskResult:
    """Accuracy@1 per language in both directions and their means; see the module doc."""
    if side not in ("passage", "query"):
        raise ValueError(f"side must be 'passage' or 'query', got {side!r}")
    folder = resolve_data_dir(data_dir, "tatoeba", "tatoeba")
    if languages is None:
        languages = tatoeba_languages(folder)
        if not languages:
            raise FileNotFoundError(f"no tatoeba.<xxx>-eng.<xxx> files in {folder}")
    elif isinstance(languages, str):
        raise TypeError("languages must be a list of language codes, not a single string")
    per_language, dim = {}, None
    for language in languages:
        source, english = _load_pair(folder, language)
        what = f"language {language!r} ({folder})"
        source_emb = encode(encoder, side, source, f"{what}, {language} side", dim)
        dim = source_emb.shape[1]
        english_emb = encode(encoder, side, english, f"{what}, eng side", dim)
        if normalize:
            source_emb, english_emb = l2_normalize(source_emb), l2_normalize(english_emb)
        per_language[language] = {
            "xx->eng": _accuracy_at_1(source_emb, english_emb),
            "eng->xx": _accuracy_at_1(english_emb, source_emb),
            "sentences": len(source),
        }
    to_english = [v["xx->eng"] for v in per_language.values()]
    from_english = [v["eng->xx"] for v in per_language.values()]
    return TaskResult(
        task="tatoeba",
        languages=list(per_language),
        headline={"mean": {
            "xx->eng": float(np.mean(to_english)),
            "eng->xx": float(np.mean(from_english)),
            "both": float(np.mean(to_english + from_english)),
        }},
        per_language=per_language,
    )
