"""MIRACL training pairs (queries, relevant and judged non-relevant passages) from the layout of
MIRACL's two Hugging Face dataset repositories, as distributed::

    MIRACL/   a copy of https://huggingface.co/datasets/miracl/miracl
      miracl-v1.0-<lang>/topics/topics.miracl-v1.0-<lang>-<split>.tsv   qid<TAB>query
      miracl-v1.0-<lang>/qrels/qrels.miracl-v1.0-<lang>-<split>.tsv     qid Q0 docid relevance
    CORPUS/   a copy of https://huggingface.co/datasets/miracl/miracl-corpus
      miracl-corpus-v1.0-<lang>/docs-<n>.jsonl.gz                        {"docid", "title", "text"}

(both may be one folder). Each query with a relevant passage in the corpus gives one training
row ``{"group": "miracl-<lang>-<qid>", "lang", "query", "passage", "negatives"}``: the passage is
its first relevant one in qrels order, the negatives the passages judged not relevant
(relevance 0), in qrels order, at most ``max_negatives``. Its other relevant passages are left
out rather than made negatives. A passage is ``title + " " + text``, as the BEIR reader builds
it. MIRACL's queries are not translations of each other, so every group holds one language:
the rows feed X-X batches.

Queries with no relevant passage in the corpus are left out, counted in a warning; a language
found without the split (MIRACL has no train split for de and yo) is skipped with a warning
naming it, and one asked for by name is an error naming the missing file.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Optional, Sequence

from hbt_fast._checks import check_integer
from hbt_fast.data.beir import _read_qrels, _read_queries, passage_text
from hbt_fast.data.files import json_record, text_lines
from hbt_fast.data.locations import DATA_SOURCES, check_languages
from hbt_fast.data.pairs import PairCorpus, corpus_from_records

__all__ = ["miracl_languages", "read_miracl"]

_TOPICS = "miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-{split}.tsv"
_QRELS = "miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv"
_CORPUS = "miracl-corpus-v1.0-{lang}"
_LANGUAGE_FOLDER = re.compile(r"^miracl-v1\.0-(.+)$")
# A corpus line starts {"docid": "..."}: reading the id alone skips parsing the passages no
# query needs, nearly all of a corpus of millions.
_DOCID = re.compile(r'"docid"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _required(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist ({what}); obtain MIRACL from "
                                f"{DATA_SOURCES['miracl-train']}")
    return path


def miracl_languages(miracl_dir, split: str = "train") -> list:
    """Languages with a ``miracl-v1.0-<lang>`` folder in ``miracl_dir``, sorted; those without
    the split's topics are skipped with a warning naming them."""
    found = sorted(m.group(1) for p in Path(miracl_dir).iterdir()
                   if p.is_dir() and (m := _LANGUAGE_FOLDER.match(p.name)))
    if not found:
        raise FileNotFoundError(f"{miracl_dir}: no miracl-v1.0-<lang> folder; obtain MIRACL from "
                                f"{DATA_SOURCES['miracl-train']}")
    languages = []
    for language in found:
        if (Path(miracl_dir) / _TOPICS.format(lang=language, split=split)).is_file():
            languages.append(language)
        else:
            warnings.warn(f"MIRACL language {language!r} skipped: it has no {split!r} split "
                          f"({_TOPICS.format(lang=language, split=split)})", UserWarning,
                          stacklevel=3)
    return languages


def _corpus_files(corpus_dir: Path, language: str) -> list:
    folder = corpus_dir / _CORPUS.format(lang=language)
    files = sorted(folder.glob("docs-*.jsonl.gz")) + sorted(folder.glob("docs-*.jsonl"))
    if not files:
        raise FileNotFoundError(f"{folder}: no docs-<n>.jsonl.gz file (MIRACL's corpus of "
                                f"{language!r}); obtain it from {DATA_SOURCES['miracl-train']}")
    return files


def _passages(files: list, wanted: set) -> dict:
    """``{docid: passage}`` of the wanted documents, read from the corpus shards."""
    passages, where_found = {}, {}
    for path in files:
        for line_number, line in text_lines(path):
            found = _DOCID.search(line)
            if (found is not None and "\\" not in found.group(1) and found.group(1) not in wanted) \
                    or not line.strip():
                continue
            where = f"{path}:{line_number}"
            record = json_record(line, where)
            docid, title, text = record.get("docid"), record.get("title") or "", record.get("text")
            if not isinstance(docid, str):
                raise ValueError(f"{where}: a passage needs a string 'docid'")
            if docid not in wanted:
                continue
            if not isinstance(title, str) or not isinstance(text, str):
                raise ValueError(f"{where}: 'title' and 'text' must be strings")
            if docid in where_found:
                raise ValueError(f"{where}: document {docid!r} already at {where_found[docid]}")
            where_found[docid] = where
            passages[docid] = passage_text(title, text)
    return passages


def _language_records(miracl_dir: Path, corpus_dir: Path, language: str, split: str,
                      max_negatives: Optional[int]) -> tuple:
    """The rows of one language and the number of queries left without a relevant passage."""
    topics = _required(miracl_dir / _TOPICS.format(lang=language, split=split),
                       f"the {split} queries of {language!r}")
    qrels_path = _required(miracl_dir / _QRELS.format(lang=language, split=split),
                           f"the {split} judgements of {language!r}")
    queries, qrels = _read_queries(topics), _read_qrels(qrels_path)
    unknown = sorted(set(qrels) - set(queries))
    if unknown:
        raise ValueError(f"{qrels_path}: judges query {unknown[0]!r}, which {topics} lacks")
    wanted = {docid for judged in qrels.values() for docid in judged}
    passages = _passages(_corpus_files(corpus_dir, language), wanted)
    rows, unanswered = [], 0
    for qid, query in queries.items():
        judged = qrels.get(qid, {})
        relevant = [passages[d] for d, grade in judged.items() if grade > 0 and d in passages]
        if not relevant:
            unanswered += 1
            continue
        negatives = [passages[d] for d, grade in judged.items() if grade <= 0 and d in passages]
        rows.append({"group": f"miracl-{language}-{qid}", "lang": language, "query": query,
                     "passage": relevant[0], "negatives": negatives[:max_negatives]})
    return rows, unanswered


def read_miracl(miracl_dir, corpus_dir=None, languages: Optional[Sequence[str]] = None, *,
                split: str = "train", max_negatives: Optional[int] = None) -> PairCorpus:
    """Training pairs of ``languages`` (default: every language with the split) from the MIRACL
    layout; see the module doc. ``corpus_dir`` defaults to ``miracl_dir``."""
    if not isinstance(split, str) or not split or "/" in split:
        raise ValueError(f"split must be a MIRACL split name such as 'train', got {split!r}")
    max_negatives = check_integer(max_negatives, "max_negatives", minimum=0, optional=True)  # None: all
    miracl_dir = Path(miracl_dir)
    corpus_dir = miracl_dir if corpus_dir is None else Path(corpus_dir)
    for folder, what in ((miracl_dir, "MIRACL"), (corpus_dir, "MIRACL corpus")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} folder {folder} does not exist; obtain MIRACL from "
                                    f"{DATA_SOURCES['miracl-train']}")
    languages = (miracl_languages(miracl_dir, split) if languages is None
                 else check_languages(languages))
    records, unanswered = [], {}
    for language in languages:
        rows, unanswered[language] = _language_records(miracl_dir, corpus_dir, language, split,
                                                       max_negatives)
        records.extend(rows)
    left_out = {lang: n for lang, n in unanswered.items() if n}
    if left_out:
        warnings.warn(f"MIRACL: {sum(left_out.values())} {split} queries left out, no relevant "
                      f"passage in the corpus ({', '.join(f'{k}: {v}' for k, v in left_out.items())})",
                      UserWarning, stacklevel=2)
    if not records:
        raise ValueError(f"{miracl_dir}: no {split} query with a relevant passage in "
                         f"{list(languages)}")
    return corpus_from_records(records)
