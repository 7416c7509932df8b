"""Mewsli-X (XTREME-R): entity mentions in WikiNews articles in 11 languages, each to be linked
to its WikiData entity by retrieving the entity's description from a fixed pool of about a
million descriptions in 50 languages.

Two layouts, as distributed:

* XTREME-R's (``scripts/download_data.sh`` of google-research/xtreme writes ``mewslix/``)::

      candidate_set_entities.jsonl
      wikinews_mentions/<split>-<lang>.jsonl   one article per line, with its mentions
      wikinews_labels/<split>-<lang>.json      {example_id: [gold entity id]}

  XTREME-R withholds the test labels (its test label files hold empty ids): use ``dev`` there,
  or the release below for ``test``.
* the Mewsli-X release's (``get-mewsli-x.sh`` of google-research/google-research writes
  ``mewsli_x/output/dataset/``): ``candidate_set_entities.jsonl`` and
  ``wikinews_mentions-<split>.jsonl`` (every language in one file, gold ids included). The
  archive's ``wikinews_mentions_no_text-<split>.jsonl`` lack the article text, which that script
  fills in from WikiNews dumps.

An article line is ``{"context": {"language", "text", "sentence_spans": [{"start", "end"}]},
"mentions": [{"example_id", "entity_id", "mention_span": {"start", "end", "text"}}]}``; an
entity line ``{"entity_id", "description", "sentence_spans", ...}``.

Texts are built as XTREME-R's baseline builds them (``third_party/utils_mewslix.py``):

* a mention becomes ``"<mention>: <left> { <mention> } <right>"``, where left and right are the
  rest of the one sentence holding the mention (the first ``sentence_spans`` entry containing
  it), braces already in that text become parentheses, and line breaks become spaces;
* an entity becomes the text of its ``sentence_spans`` joined by spaces, line breaks likewise.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from hbt_fast._checks import is_integer
from hbt_fast.data.files import json_record, read_json, text_lines
from hbt_fast.data.locations import DATA_SOURCES, check_languages, resolve_data_dir

__all__ = ["CANDIDATES_FILE", "MewsliXData", "entity_text", "load_mewsli_x", "mention_query"]

CANDIDATES_FILE = "candidate_set_entities.jsonl"
SPLITS = ("dev", "test")
# XTREME-R's markup of the mention span, and its escaping of braces already in the text.
_MARKED = re.compile(r"\{(.*?)\}")


@dataclass
class MewsliXData:
    """Mentions per language (query texts and gold entities) and the entity candidate pool."""

    folder: Path
    split: str
    languages: list
    example_ids: dict  # language -> mention example ids, in file order
    queries: dict  # language -> mention query texts
    gold: dict  # language -> int64 array: index of the gold entity in the pool, -1 if absent
    entity_ids: list
    entity_texts: list


def _normalized(text: str) -> str:
    """XTREME-R's normalisation: lines joined by spaces, one pass of double spaces, stripped."""
    return " ".join(text.splitlines()).replace("  ", " ").strip()


def _span(value, where: str, length: int) -> tuple:
    """``(start, end)`` of a ``{"start", "end"}`` object, checked against a text's length."""
    if not isinstance(value, dict):
        raise ValueError(f"{where}: a span must be an object with 'start' and 'end'")
    start, end = value.get("start"), value.get("end")
    if not all(is_integer(v) for v in (start, end)) \
            or not 0 <= start < end <= length:
        raise ValueError(f"{where}: span {value!r} is not 0 <= start < end <= {length}")
    return start, end


def _sentence_spans(record: dict, text: str, where: str) -> list:
    spans = record.get("sentence_spans")
    if not isinstance(spans, list):
        raise ValueError(f"{where}: 'sentence_spans' must be a list of spans")
    return [_span(span, f"{where}: sentence_spans[{i}]", len(text)) for i, span in enumerate(spans)]


def mention_query(text: str, sentences: list, start: int, end: int) -> Optional[str]:
    """The query text of the mention ``text[start:end]`` (None when no sentence contains it)."""
    focus = next(((s, e) for s, e in sentences if s <= start < e and s < end <= e), None)
    if focus is None:
        return None
    mention = text[start:end]
    left = _MARKED.sub(r"(\1)", text[focus[0]:start])
    right = _MARKED.sub(r"(\1)", text[end:focus[1]])
    return _normalized(f"{mention}: {left} {{ {mention} }} {right}")


def entity_text(description: str, sentences: list) -> str:
    """The candidate text of an entity: its description's sentences joined by spaces."""
    return _normalized(" ".join(description[s:e] for s, e in sentences))


def _read_entities(path: Path) -> tuple:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (Mewsli-X's entity candidate set); "
                                f"obtain the data from {DATA_SOURCES['mewsli-x']}")
    ids, texts, lines = [], [], {}
    for line_number, line in text_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        record = json_record(line, where)
        entity, description = record.get("entity_id"), record.get("description")
        if not isinstance(entity, str) or not entity or not isinstance(description, str):
            raise ValueError(f"{where}: an entity needs a string 'entity_id' and 'description'")
        if entity in lines:
            raise ValueError(f"{where}: entity {entity!r} already on line {lines[entity]}")
        lines[entity] = line_number
        ids.append(entity)
        texts.append(entity_text(description, _sentence_spans(record, description, where)))
    if not ids:
        raise ValueError(f"{path}: no entity in the candidate set")
    return ids, texts


def _article_mentions(record: dict, where: str) -> Iterator[tuple]:
    """``(language, example id, gold entity id, query text)`` of each mention of an article."""
    context, mentions = record.get("context"), record.get("mentions")
    if not isinstance(context, dict) or not isinstance(mentions, list):
        raise ValueError(f"{where}: an article needs a 'context' object and a 'mentions' list")
    language, text = context.get("language"), context.get("text")
    if not isinstance(language, str) or not language or not isinstance(text, str):
        raise ValueError(f"{where}: the context needs a string 'language' and 'text'")
    if not text and mentions:
        raise ValueError(f"{where}: the article text is empty; Mewsli-X ships it without text "
                         "and get-mewsli-x.sh fills it in from WikiNews dumps "
                         f"({DATA_SOURCES['mewsli-x']})")
    sentences = _sentence_spans(context, text, where)
    for number, mention in enumerate(mentions):
        here = f"{where}: mentions[{number}]"
        example = mention.get("example_id") if isinstance(mention, dict) else None
        if not isinstance(example, str) or not isinstance(mention.get("entity_id"), str):
            raise ValueError(f"{here}: a mention needs a string 'example_id' and 'entity_id'")
        span = mention.get("mention_span")
        start, end = _span(span, f"{here} ({example})", len(text))
        if span.get("text") != text[start:end]:
            raise ValueError(f"{here} ({example}): mention text {span.get('text')!r} is not "
                             f"{text[start:end]!r}, the context at [{start}, {end})")
        query = mention_query(text, sentences, start, end)
        if query is None:
            raise ValueError(f"{here} ({example}): no sentence of the context holds the mention "
                             f"[{start}, {end}) whole")
        yield language, example, mention["entity_id"].strip(), query


def _read_articles(path: Path) -> Iterator[tuple]:
    for line_number, line in text_lines(path):
        if line.strip():
            where = f"{path}:{line_number}"
            yield from _article_mentions(json_record(line, where), where)


def _xtreme_labels(path: Path, language: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (the gold entities of language "
                                f"{language!r}); obtain the data from {DATA_SOURCES['mewsli-x']}")
    labels = read_json(path)
    if not isinstance(labels, dict) or not all(
            isinstance(v, list) and v and isinstance(v[0], str) for v in labels.values()):
        raise ValueError(f"{path}: expected {{example_id: [entity id]}}")
    return {example: golds[0].strip() for example, golds in labels.items()}


def _from_xtreme(folder: Path, split: str, languages) -> dict:
    """``{language: [(example id, gold, query)]}`` from XTREME-R's per-language files."""
    mentions_folder = folder / "wikinews_mentions"
    if languages is None:
        languages = sorted(p.name[len(split) + 1:-len(".jsonl")]
                           for p in mentions_folder.glob(f"{split}-*.jsonl"))
    by_language = {}
    for language in languages:
        path = mentions_folder / f"{split}-{language}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"language {language!r}: {path} does not exist; obtain the "
                                    f"data from {DATA_SOURCES['mewsli-x']}")
        labels_path = folder / "wikinews_labels" / f"{split}-{language}.json"
        labels = _xtreme_labels(labels_path, language)
        rows = []
        for _, example, _, query in _read_articles(path):
            gold = labels.get(example)
            if gold is None:
                raise ValueError(f"{labels_path}: no gold entity for mention {example!r} of {path}")
            if not gold:
                raise ValueError(f"{labels_path}: the gold entity of {example!r} is empty; "
                                 f"XTREME-R withholds the {split} labels: evaluate split 'dev', "
                                 f"or the Mewsli-X release's wikinews_mentions-{split}.jsonl")
            rows.append((example, gold, query))
        by_language[language] = rows
    return by_language


def _from_release(path: Path, languages) -> dict:
    """``{language: [(example id, gold, query)]}`` from the release's one file of mentions."""
    by_language: dict = {}
    for language, example, gold, query in _read_articles(path):
        if not gold:
            raise ValueError(f"{path}: mention {example!r} has no gold 'entity_id'")
        by_language.setdefault(language, []).append((example, gold, query))
    if languages is None:
        return dict(sorted(by_language.items()))
    absent = [lang for lang in languages if lang not in by_language]
    if absent:
        raise ValueError(f"{path}: no mention in language(s) {absent}; it has "
                         f"{sorted(by_language)}")
    return {lang: by_language[lang] for lang in languages}


def _mentions(folder: Path, split: str, languages) -> dict:
    if (folder / "wikinews_mentions").is_dir():
        return _from_xtreme(folder, split, languages)
    release = folder / f"wikinews_mentions-{split}.jsonl"
    if release.is_file():
        return _from_release(release, languages)
    no_text = folder / f"wikinews_mentions_no_text-{split}.jsonl"
    hint = (f"; {no_text.name} is there but lacks the article text: run get-mewsli-x.sh, which "
            "fills it in" if no_text.is_file() else "")
    raise FileNotFoundError(
        f"{folder}: no Mewsli-X mentions of split {split!r}: expected "
        f"wikinews_mentions/{split}-<lang>.jsonl (XTREME-R) or {release.name} (Mewsli-X "
        f"release){hint}. Obtain the data from {DATA_SOURCES['mewsli-x']}")


def load_mewsli_x(data_dir=None, languages: Optional[Sequence[str]] = None, *,
                  split: str = "test") -> MewsliXData:
    """Mentions of ``split`` (default every language found) and the entity pool; see the module
    doc. A language without mentions is skipped with a warning; a gold entity missing from the
    pool is counted (warning) and can never be retrieved."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = resolve_data_dir(data_dir, "mewsli-x", "mewsli-x")
    if languages is not None:
        languages = check_languages(languages)
    rows = _mentions(folder, split, languages)
    for language in [lang for lang, found in rows.items() if not found]:
        warnings.warn(f"Mewsli-X language {language!r} skipped: no mention in split {split!r}",
                      UserWarning, stacklevel=2)
        del rows[language]
    if not rows:
        raise ValueError(f"{folder}: no Mewsli-X mention of split {split!r} to evaluate")
    entity_ids, entity_texts = _read_entities(folder / CANDIDATES_FILE)
    index = {entity: number for number, entity in enumerate(entity_ids)}
    gold = {lang: np.array([index.get(g, -1) for _, g, _ in found], dtype=np.int64)
            for lang, found in rows.items()}
    missing = {lang: int((g < 0).sum()) for lang, g in gold.items() if (g < 0).any()}
    if missing:
        warnings.warn(f"{folder / CANDIDATES_FILE}: the gold entities of "
                      f"{sum(missing.values())} mention(s) are not in the candidate set "
                      f"({', '.join(f'{k}: {v}' for k, v in missing.items())}); they count as "
                      "misses", UserWarning, stacklevel=2)
    return MewsliXData(folder, split, list(rows),
                       {lang: [e for e, _, _ in found] for lang, found in rows.items()},
                       {lang: [q for _, _, q in found] for lang, found in rows.items()},
                       gold, entity_ids, entity_texts)
