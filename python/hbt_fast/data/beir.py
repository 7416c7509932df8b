"""MIRACL / BEIR layout: queries, relevance judgements (qrels) and a corpus per language.

Layout of one language folder (``data_dir/<lang>/``, or ``data_dir`` itself for one language):

* queries: ``queries.tsv`` / ``topics.tsv`` (``qid<TAB>query`` per line) or BEIR
  ``queries.jsonl`` (``_id``/``text``);
* qrels: ``qrels.txt`` / ``qrels.trec`` / ``qrels.tsv`` (TREC ``qid Q0 docid grade``, or BEIR
  ``qid docid grade`` with an optional header), or BEIR ``qrels/test.tsv``;
* corpus: ``corpus.jsonl`` with ``docid`` (or BEIR ``_id``), ``title`` and ``text``; a passage
  is ``title + " " + text`` (just ``text`` when the title is empty).

Only queries with at least one positive judgement are kept (``judged``), as trec_eval scores.

A corpus of millions of passages is read as a stream (:func:`iter_corpus`, :class:`CorpusIds`):
queries and qrels are small and read whole (:func:`load_beir_topics`), while passages go by in
chunks, each passage's id kept only when a judgement names it; repeated ids are found through a
sorted array of 64-bit hashes (8 bytes a passage), not a dictionary of every id.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from hbt_fast.data.files import json_record, text_lines
from hbt_fast.data.locations import check_languages, resolve_data_dir

__all__ = ["BeirData", "BeirLanguage", "BeirTopics", "CorpusIds", "beir_folders", "iter_corpus",
           "load_beir", "load_beir_language", "load_beir_topics", "passage_text"]

QUERY_FILES = ("queries.tsv", "topics.tsv", "queries.jsonl")
QREL_FILES = ("qrels.txt", "qrels.trec", "qrels.tsv", "qrels/test.tsv")


@dataclass
class BeirLanguage:
    folder: Path
    judged: list  # ids of the queries with at least one positive judgement, in file order
    queries: dict  # qid -> text
    qrels: dict  # qid -> {docid: grade}
    doc_ids: list
    doc_texts: list


@dataclass
class BeirTopics:
    """A language folder without its corpus: what a streamed evaluation holds in memory."""

    folder: Path
    judged: list
    queries: dict
    qrels: dict
    qrels_path: Path
    corpus_path: Path


@dataclass
class BeirData:
    languages: list
    by_language: dict


def _first_existing(folder: Path, names, what: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {what} file (looked for {', '.join(names)})")


def _read_queries(path: Path) -> dict:
    queries = {}
    for line_no, line in text_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        if path.suffix == ".jsonl":
            record = json_record(line, where)
            if "_id" not in record or not isinstance(record.get("text"), str):
                raise ValueError(f"{where}: a query needs '_id' and a string 'text'")
            qid, text = str(record["_id"]), record["text"]
        else:
            parts = line.split("\t")
            if len(parts) < 2:
                raise ValueError(f"{where}: expected 'qid<TAB>query'")
            qid, text = parts[0], parts[1]
        if qid in queries:
            raise ValueError(f"{where}: query id {qid!r} appears twice")
        queries[qid] = text
    return queries


def _read_qrels(path: Path) -> dict:
    qrels: dict = {}
    for line_no, line in text_lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 4:
            qid, _, docid, grade = parts
        elif len(parts) == 3:
            qid, docid, grade = parts
        else:
            raise ValueError(f"{path}:{line_no}: expected 'qid Q0 docid grade'")
        try:
            grade = int(grade)
        except ValueError:
            if line_no == 1:  # BEIR header "query-id corpus-id score"
                continue
            raise ValueError(f"{path}:{line_no}: relevance grade {grade!r} is not an integer") \
                from None
        qrels.setdefault(qid, {})[docid] = grade
    return qrels


def passage_text(title: str, text: str) -> str:
    """A passage as it is encoded: its title, a space, its text (the text alone without a title)."""
    return f"{title} {text}" if title else text


def iter_corpus(path) -> Iterator[tuple[int, str, str]]:
    """``(line_number, docid, passage)`` of each record of a ``corpus.jsonl``, read as a stream
    (the passage as :func:`passage_text` makes it); a malformed record raises ValueError naming
    the file and line."""
    path = Path(path)
    for line_no, line in text_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        record = json_record(line, where)
        docid = record.get("docid", record.get("_id"))
        if docid is None:
            raise ValueError(f"{where}: corpus record has no 'docid' or '_id'")
        title, text = record.get("title") or "", record.get("text") or ""
        if not isinstance(title, str) or not isinstance(text, str):
            raise ValueError(f"{where}: 'title' and 'text' must be strings")
        yield line_no, str(docid), passage_text(title, text)


def _read_corpus(path: Path):
    ids, texts, seen = [], [], {}
    for line_no, docid, text in iter_corpus(path):
        if docid in seen:
            raise ValueError(f"{path}:{line_no}: document id {docid!r} already on line {seen[docid]}")
        seen[docid] = line_no
        ids.append(docid)
        texts.append(text)
    if not ids:
        raise ValueError(f"{path}: the corpus is empty")
    return ids, texts


def _contains(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    if not sorted_values.size:
        return np.zeros(values.shape, dtype=bool)
    found = np.minimum(np.searchsorted(sorted_values, values), sorted_values.size - 1)
    return sorted_values[found] == values


class CorpusIds:
    """The ids of a corpus met chunk by chunk (:meth:`add`), in memory bounded by the corpus'
    judged documents plus 8 bytes a passage.

    ``rows`` maps each id in ``wanted`` (the ids the judgements name) to its row; ``count`` is
    the number of passages so far. A repeated id raises the ValueError the in-memory reader
    raises (file, line, and the line of its first occurrence): ids are compared through their
    64-bit hashes, and an equal hash is confirmed by reading the file again up to it."""

    def __init__(self, path, wanted):
        self.path, self.wanted = Path(path), set(wanted)
        self.rows: dict = {}
        self.count = 0
        self._hashes = np.empty(0, dtype=np.int64)  # sorted

    def add(self, docids: Sequence[str], lines: Sequence[int]) -> None:
        hashes = np.fromiter((hash(d) for d in docids), dtype=np.int64, count=len(docids))
        order = np.argsort(hashes, kind="stable")
        later_in_chunk = order[1:][hashes[order][1:] == hashes[order][:-1]]
        seen_before = np.flatnonzero(_contains(self._hashes, hashes))
        for position in sorted({*later_in_chunk.tolist(), *seen_before.tolist()}):
            self._refuse_if_repeated(docids[position], lines[position])
        for row, docid in enumerate(docids, self.count):
            if docid in self.wanted:
                self.rows[docid] = row
        self.count += len(docids)
        self._hashes = np.sort(np.concatenate([self._hashes, hashes]))

    def _refuse_if_repeated(self, docid: str, line: int) -> None:
        for earlier_line, earlier, _ in iter_corpus(self.path):
            if earlier_line >= line:
                return  # only the hash was equal
            if earlier == docid:
                raise ValueError(f"{self.path}:{line}: document id {docid!r} already on line "
                                 f"{earlier_line}")


def _warn_about_unknown_documents(qrels: dict, doc_ids: set, qrels_path: Path,
                                  corpus_path: Path) -> None:
    """Judgements of documents the corpus lacks: the relevant ones still count (as trec_eval
    counts them) and cap recall and nDCG below 1. Said with the count, never silently."""
    unknown = [docid for judged in qrels.values() for docid in judged if docid not in doc_ids]
    if unknown:
        warnings.warn(
            f"{qrels_path}: {len(unknown)} judgement(s) name {len(set(unknown))} document(s) "
            f"not in {corpus_path} (e.g. {unknown[0]!r}); relevant ones count but can never be "
            "retrieved, so scores stay below 1", UserWarning, stacklevel=3)


def load_beir_topics(folder) -> BeirTopics:
    """Queries and qrels of one language folder, and where its corpus is (not read)."""
    folder = Path(folder)
    queries = _read_queries(_first_existing(folder, QUERY_FILES, "queries"))
    qrels_path = _first_existing(folder, QREL_FILES, "qrels")
    qrels = _read_qrels(qrels_path)
    corpus_path = _first_existing(folder, ("corpus.jsonl",), "corpus")
    judged = [q for q in queries if any(g > 0 for g in qrels.get(q, {}).values())]
    if not judged:
        raise ValueError(f"{folder}: no query has a positive qrel")
    return BeirTopics(folder, judged, queries, qrels, qrels_path, corpus_path)


def load_beir_language(folder) -> BeirLanguage:
    """Queries, qrels and corpus of one language folder."""
    topics = load_beir_topics(folder)
    doc_ids, doc_texts = _read_corpus(topics.corpus_path)
    _warn_about_unknown_documents(topics.qrels, set(doc_ids), topics.qrels_path, topics.corpus_path)
    return BeirLanguage(topics.folder, topics.judged, topics.queries, topics.qrels, doc_ids,
                        doc_texts)


def beir_folders(data_dir=None, languages: Optional[Sequence[str]] = None) -> dict:
    """``{language: folder}``: every language folder of ``data_dir`` (or ``data_dir`` itself
    when it is one language), or those of ``languages``."""
    root = resolve_data_dir(data_dir, "miracl", "miracl")
    if languages is None:
        languages = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "qrels")
        return {lang: root / lang for lang in languages} or {root.name: root}
    folders = {lang: root / lang for lang in check_languages(languages)}
    for lang, folder in folders.items():
        if not folder.is_dir():
            raise FileNotFoundError(f"language {lang!r}: folder {folder} does not exist")
    return folders


def load_beir(data_dir=None, languages: Optional[Sequence[str]] = None) -> BeirData:
    """Every language folder of ``data_dir`` (or ``data_dir`` itself when it is one language)."""
    by_language = {lang: load_beir_language(folder)
                   for lang, folder in beir_folders(data_dir, languages).items()}
    return BeirData(list(by_language), by_language)
