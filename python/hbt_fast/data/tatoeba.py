"""Tatoeba test sets (LASER layout): ``tatoeba.<xxx>-eng.<xxx>`` and ``tatoeba.<xxx>-eng.eng``.

The two files of a language are line-aligned: line ``i`` of one is the translation of line
``i`` of the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from hbt_fast.data.files import text_lines
from hbt_fast.data.locations import check_languages, resolve_data_dir

__all__ = ["TatoebaData", "load_tatoeba", "tatoeba_languages"]

_PAIR = re.compile(r"^tatoeba\.([a-z]+)-eng\.\1$")


@dataclass
class TatoebaData:
    """Per language, the sentences in that language and their English translations."""

    folder: Path
    languages: list
    sentences: dict  # language -> list of sentences
    english: dict  # language -> list of English sentences, line-aligned with ``sentences``


def tatoeba_languages(folder) -> list:
    """Language codes with a ``tatoeba.<xxx>-eng.<xxx>`` file in ``folder``, sorted."""
    return sorted(m.group(1) for p in Path(folder).iterdir() if (m := _PAIR.match(p.name)))


def _read_lines(path: Path, language: str) -> list:
    if not path.is_file():
        raise FileNotFoundError(f"language {language!r}: file {path} does not exist")
    return [line for _, line in text_lines(path)]


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


def load_tatoeba(data_dir=None, languages: Optional[Sequence[str]] = None) -> TatoebaData:
    """Read the given languages (default: every pair of files in the folder)."""
    folder = resolve_data_dir(data_dir, "tatoeba", "tatoeba")
    if languages is None:
        languages = tatoeba_languages(folder)
        if not languages:
            raise FileNotFoundError(f"no tatoeba.<xxx>-eng.<xxx> files in {folder}")
    else:
        languages = check_languages(languages)
    sentences, english = {}, {}
    for language in languages:
        sentences[language], english[language] = _load_pair(folder, language)
    return TatoebaData(folder, list(languages), sentences, english)
