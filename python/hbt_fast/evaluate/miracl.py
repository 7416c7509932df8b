"""MIRACL / BEIR-layout evaluation: nDCG@10 and Recall@100 per language.

Layout of one language folder (``data_dir/<lang>/``, or ``data_dir`` itself for one language):

* queries: ``queries.tsv`` (``qid<TAB>query`` per line) or BEIR ``queries.jsonl``
  (``_id``/``text``);
* qrels: ``qrels.txt`` / ``qrels.trec`` / ``qrels.tsv`` (TREC ``qid Q0 docid grade``, or BEIR
  ``qid docid grade`` with an optional header), or BEIR ``qrels/test.tsv``;
* corpus: ``corpus.jsonl`` with ``docid`` (or BEIR ``_id``), ``title`` and ``text``; a passage
  is ``title + " " + text`` (just ``text`` when the title is empty).

Every search result is kept, including a document whose id equals the query id (some BEIR
evaluators silently drop those; we do not). Only queries with at least one positive judgement are
scored, as trec_eval does; graded judgements are linear gains in nDCG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hbt_fast.evaluate import metrics
from hbt_fast.evaluate._common import encode, l2_normalize, resolve_data_dir
from hbt_fast.evaluate.result import TaskResult
from hbt_fast.evaluate.search import search

__all__ = ["evaluate_beir", "load_beir_language"]

_QUERY_FILES = ("queries.tsv", "topics.tsv", "queries.jsonl")
_QREL_FILES = ("qrels.txt", "qrels.trec", "qrels.tsv", "qrels/test.tsv")


def _first_existing(folder: Path, names, what: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {what} file (looked for {', '.join(names)})")


def _read_queries(path: Path) -> dict:
    queries = {}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                record = json.loads(line)
                qid, text = str(record["_id"]), record["text"]
            else:
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 2:
                    raise ValueError(f"{path}:{line_no}: expected 'qid<TAB>query'")
                qid, text = parts[0], parts[1]
            queries[qid] = text
    return queries


def _read_qrels(path: Path) -> dict:
    qrels: dict = {}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
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
                raise ValueError(f"{path}:{line_no}: relevance grade {grade!r} is not an integer")
            qrels.setdefault(qid, {})[docid] = grade
    return qrels


def _read_corpus(path: Path):
    ids, texts = [], []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            docid = record.get("docid", record.get("_id"))
            if docid is None:
                raise ValueError(f"{path}:{line_no}: corpus record has no 'docid' or '_id'")
            title = record.get("title") or ""
            text = record.get("text") or ""
            ids.append(str(docid))
            texts.append(f"{title} {text}" if title else text)
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate document ids")
    return ids, texts


def load_beir_language(folder) -> tuple:
    """``(queries {qid: text}, qrels {qid: {docid: grade}}, doc_ids, doc_texts)`` of one folder."""
    folder = Path(folder)
    queries = _read_queries(_first_existing(folder, _QUERY_FILES, "queries"))
    qrels = _read_qrels(_first_existing(folder, _QREL_FILES, "qrels"))
    doc_ids, doc_texts = _read_corpus(_first_existing(folder, ("corpus.jsonl",), "corpus"))
    return queries, qrels, doc_ids, doc_texts


def _judged_arrays(query_ids, qrels, doc_index, ids: np.ndarray):
    """Gains of the ranked results and the ideal gains, as arrays."""
    gains = np.zeros(ids.shape, dtype=np.float64)
    positives = [
        [g for g in qrels[q].values() if g > 0] for q in query_ids
    ]
    ideal = np.zeros((len(query_ids), max(len(p) for p in positives)))
    rows, cols, values = [], [], []
    for row, qid in enumerate(query_ids):
        ideal[row, : len(positives[row])] = positives[row]
        for docid, grade in qrels[qid].items():
            if grade > 0 and docid in doc_index:
                rows.append(row)
                cols.append(doc_index[docid])
                values.append(grade)
    # Judgement lookup as one sorted-key search instead of a per-result dictionary probe.
    n_docs = max(len(doc_index), 1)
    keys = np.asarray(rows, dtype=np.int64) * n_docs + np.asarray(cols, dtype=np.int64)
    order = np.argsort(keys)
    keys, values = keys[order], np.asarray(values, dtype=np.float64)[order]
    wanted = np.arange(len(query_ids))[:, None] * n_docs + ids
    found = np.searchsorted(keys, wanted)
    found = np.minimum(found, max(len(keys) - 1, 0))
    if len(keys):
        match = (keys[found] == wanted) & (ids >= 0)
        gains[match] = values[found[match]]
    return gains, ideal


def evaluate_beir(
    encoder,
    data_dir=None,
    *,
    languages: Optional[Sequence[str]] = None,
    normalize: bool = False,
    index: str = "exact",
    ndcg_k: int = 10,
    recall_k: int = 100,
) -> TaskResult:
    """nDCG@``ndcg_k`` and Recall@``recall_k`` per language (folder) and their means."""
    root = resolve_data_dir(data_dir, "miracl", "miracl")
    if languages is None:
        languages = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "qrels")
        folders = {lang: root / lang for lang in languages} or {root.name: root}
    else:
        if isinstance(languages, str):
            raise TypeError("languages must be a list of language codes, not a single string")
        folders = {lang: root / lang for lang in languages}
        for lang, folder in folders.items():
            if not folder.is_dir():
                raise FileNotFoundError(f"language {lang!r}: folder {folder} does not exist")
    per_language, dim = {}, None
    for language, folder in folders.items():
        queries, qrels, doc_ids, doc_texts = load_beir_language(folder)
        judged = [q for q in queries if any(g > 0 for g in qrels.get(q, {}).values())]
        if not judged:
            raise ValueError(f"language {language!r} ({folder}): no query has a positive qrel")
        what = f"language {language!r} ({folder})"
        query_emb = encode(encoder, "query", [queries[q] for q in judged], what, dim)
        dim = query_emb.shape[1]
        doc_emb = encode(encoder, "passage", doc_texts, what, dim)
        if normalize:
            query_emb, doc_emb = l2_normalize(query_emb), l2_normalize(doc_emb)
        result = search(query_emb, doc_emb, max(ndcg_k, recall_k), index=index)
        doc_index = {d: i for i, d in enumerate(doc_ids)}
        gains, ideal = _judged_arrays(judged, qrels, doc_index, result.ids)
        num_relevant = (ideal > 0).sum(axis=1)
        per_language[language] = {
            f"ndcg@{ndcg_k}": float(metrics.ndcg_at_k(gains, ideal, ndcg_k).mean()),
            f"recall@{recall_k}": float(
                metrics.recall_at_k(gains > 0, num_relevant, recall_k).mean()
            ),
            "queries": len(judged),
            "documents": len(doc_ids),
        }
        if result.recall_vs_exact is not None:
            per_language[language]["recall_vs_exact"] = result.recall_vs_exact
    keys = [f"ndcg@{ndcg_k}", f"recall@{recall_k}"]
    return TaskResult(
        task="miracl",
        languages=list(per_language),
        headline={"mean": {key: float(np.mean([v[key] for v in per_language.values()]))
                           for key in keys}},
        per_language=per_language,
    )
