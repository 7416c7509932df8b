"""Tatoeba (LASER layout) -> training pairs for 50+ languages and a held-out Tatoeba folder.

Each ``tatoeba.<xxx>-eng.*`` pair of files holds sentences of language xxx line-aligned with
their English translations, and English sentences recur across languages (the same English
sentence translated into several languages). Joining the files through their English side gives
parallel groups of many languages. The split is drawn over distinct English sentences, the same
in every file, so no held-out sentence nor any translation of it is in the training data::

    output/train.jsonl  one row per (group, language): query = passage = the sentence; a group
                        is one English sentence with all its training translations, English
                        included, so X-Y batches pair any two languages of a group
    output/heldout/     tatoeba.<xxx>-eng.<xxx> / .eng with the held-out lines, the layout that
                        ``hbt-fast eval --task tatoeba`` reads
    output/split.json   the seed, the fraction, kept and skipped languages, counts

A row's query and passage are the same sentence: X-X batches of such a file would be trivial, so
it is meant for X-Y batches (e.g. X-X from XQuAD-R and X-Y from Tatoeba). A language whose
training or held-out part would have fewer than ``min_lines`` lines is skipped with a warning
naming it. A second translation of an English sentence in one language (Tatoeba has a few) is
left out of training, since a group holds one row per language; both stay held out.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hbt_fast._checks import check_integer, is_real
from hbt_fast.data.files import atomic_output, refuse_overlap
from hbt_fast.data.locations import check_languages
from hbt_fast.data.pairs import write_pairs_jsonl
from hbt_fast.data.tatoeba import load_tatoeba

__all__ = ["split_tatoeba"]

ENGLISH = "eng"


def _check_arguments(heldout_fraction, seed, min_lines) -> tuple[int, int]:
    """``(seed, min_lines)`` as ints once every argument is checked."""
    if not is_real(heldout_fraction) or not (math.isfinite(heldout_fraction) and 0 < heldout_fraction < 1):
        raise ValueError(f"heldout_fraction must be a number in (0, 1), got {heldout_fraction!r}")
    return check_integer(seed, "seed", minimum=0), check_integer(min_lines, "min_lines")


def _held_out_english(english_sentences: list, fraction: float, seed: int) -> set:
    """A seeded ``fraction`` of the distinct English sentences (independent of file order)."""
    distinct = sorted(set(english_sentences))
    order = np.random.default_rng(seed).permutation(len(distinct))
    return {distinct[i] for i in order[:round(fraction * len(distinct))].tolist()}


def split_tatoeba(data_dir, output_dir, *, heldout_fraction: float = 0.2, seed: int = 0,
                  min_lines: int = 20, languages: Optional[Sequence[str]] = None) -> dict:
    """Write ``output_dir/train.jsonl``, ``output_dir/heldout/`` and ``split.json``; returns the
    summary written to ``split.json``."""
    seed, min_lines = _check_arguments(heldout_fraction, seed, min_lines)
    output_dir = Path(output_dir)
    data = load_tatoeba(data_dir, None if languages is None else check_languages(languages))
    refuse_overlap(output_dir, {"the data folder": data.folder})
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"output {output_dir} exists and is not a folder")
    held_out = _held_out_english([e for lang in data.languages for e in data.english[lang]],
                                 heldout_fraction, seed)

    kept, skipped, train_lines, heldout_lines = [], {}, {}, {}
    for language in data.languages:
        pairs = list(zip(data.sentences[language], data.english[language]))
        test = [(s, e) for s, e in pairs if e in held_out]
        train = [(s, e) for s, e in pairs if e not in held_out]
        if min(len(train), len(test)) < min_lines:
            skipped[language] = f"{len(train)} training and {len(test)} held-out lines"
            warnings.warn(f"Tatoeba language {language!r} skipped: {skipped[language]}, fewer "
                          f"than min_lines={min_lines}", stacklevel=2)
            continue
        kept.append(language)
        train_lines[language], heldout_lines[language] = train, test
    if not kept:
        raise ValueError(f"no Tatoeba language in {data.folder} has {min_lines} training and "
                         f"{min_lines} held-out lines; lower min_lines or heldout_fraction")

    heldout = output_dir / "heldout"
    heldout.mkdir(parents=True, exist_ok=True)
    for language in kept:
        source, english = zip(*heldout_lines[language])
        for suffix, lines in ((language, source), (ENGLISH, english)):
            with atomic_output(heldout / f"tatoeba.{language}-eng.{suffix}") as handle:
                handle.write("".join(f"{line}\n" for line in lines))
    num_pairs = write_pairs_jsonl(output_dir / "train.jsonl", _records(train_lines))
    summary = {
        "seed": seed, "heldout_fraction": heldout_fraction, "min_lines": min_lines,
        "languages": kept, "skipped": skipped, "train_pairs": num_pairs,
        "heldout_lines": {language: len(heldout_lines[language]) for language in kept},
        "heldout_english_sentences": len(held_out),
    }
    with atomic_output(output_dir / "split.json") as handle:
        json.dump(summary, handle, indent=2)
    return summary


def _records(train_lines: dict) -> list:
    """One row per (English sentence, language), English rows included; group ids number the
    English sentences in sorted order, so the file does not depend on the languages' order."""
    english = sorted({e for pairs in train_lines.values() for _, e in pairs})
    group_of = {sentence: number for number, sentence in enumerate(english)}
    rows, seen = [], set()
    for sentence in english:
        rows.append({"group": group_of[sentence], "lang": ENGLISH, "query": sentence,
                     "passage": sentence})
    for language in sorted(train_lines):
        for source, english_sentence in train_lines[language]:
            key = (group_of[english_sentence], language)
            if key not in seen:
                seen.add(key)
                rows.append({"group": key[0], "lang": language, "query": source, "passage": source})
    return rows
