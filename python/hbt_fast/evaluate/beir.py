"""BEIR-layout evaluation (MIRACL and any dataset in that layout): nDCG@10 and Recall@100 per
language.

Data layout: see :mod:`hbt_fast.data.beir`. Every search result is kept, including a document
whose id equals the query id (some BEIR evaluators silently drop those; we do not). Only
queries with at least one positive judgement are scored, as trec_eval does; graded judgements
are linear gains in nDCG.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from hbt_fast.data.beir import BeirData, load_beir
from hbt_fast.evaluate import metrics
from hbt_fast.evaluate._common import l2_normalize
from hbt_fast.evaluate.driver import EncodeJob, run_task
from hbt_fast.evaluate.keys import ndcg_at, recall_at
from hbt_fast.evaluate.per_query import PerQuery
from hbt_fast.evaluate.result import TaskResult
from hbt_fast.evaluate.search import INDEX_KINDS, search

__all__ = ["encode_jobs", "evaluate_beir", "load", "score"]

load = load_beir


def encode_jobs(data: BeirData) -> list:
    jobs = []
    for language in data.languages:
        entry = data.by_language[language]
        what = f"language {language!r} ({entry.folder})"
        jobs.append(EncodeJob("query", language, "query",
                              [entry.queries[q] for q in entry.judged], what))
        jobs.append(EncodeJob("candidate", language, "passage", entry.doc_texts, what))
    return jobs


def _judged_arrays(query_ids, qrels, doc_index, ids: np.ndarray):
    """Gains of the ranked results and the ideal gains, as arrays."""
    gains = np.zeros(ids.shape, dtype=np.float64)
    positives = [[g for g in qrels[q].values() if g > 0] for q in query_ids]
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
    if len(keys):
        wanted = np.arange(len(query_ids))[:, None] * n_docs + ids
        found = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        match = (keys[found] == wanted) & (ids >= 0)
        gains[match] = values[found[match]]
    return gains, ideal


def _check_cutoff(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def score(data: BeirData, query_embeddings: dict, candidate_embeddings: dict, *,
          normalize: bool = False, index: str = "exact", ndcg_k: int = 10,
          recall_k: int = 100) -> TaskResult:
    """nDCG@``ndcg_k`` and Recall@``recall_k`` per language from ``{language: embeddings}``."""
    ndcg_k, recall_k = _check_cutoff("ndcg_k", ndcg_k), _check_cutoff("recall_k", recall_k)
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {index!r}")
    ndcg_key, recall_key = ndcg_at(ndcg_k), recall_at(recall_k)
    per_language, per_query = {}, {"language": [], "query_id": [], "ndcg": [], "recall": [],
                                   "first_relevant_rank": []}
    for language in data.languages:
        entry = data.by_language[language]
        queries, docs = query_embeddings[language], candidate_embeddings[language]
        if normalize:
            queries, docs = l2_normalize(queries), l2_normalize(docs)
        result = search(queries, docs, max(ndcg_k, recall_k), index=index)
        doc_index = {d: i for i, d in enumerate(entry.doc_ids)}
        gains, ideal = _judged_arrays(entry.judged, entry.qrels, doc_index, result.ids)
        num_relevant = (ideal > 0).sum(axis=1)
        ndcg = metrics.ndcg_at_k(gains, ideal, ndcg_k)
        recall = metrics.recall_at_k(gains > 0, num_relevant, recall_k)
        found = gains > 0
        for name, values in (("language", [language] * len(ndcg)), ("query_id", entry.judged),
                             ("ndcg", ndcg), ("recall", recall),
                             ("first_relevant_rank", np.where(found.any(axis=1),
                                                              np.argmax(found, axis=1) + 1, 0))):
            per_query[name].append(np.asarray(values))
        per_language[language] = {
            ndcg_key: float(ndcg.mean()),
            recall_key: float(recall.mean()),
            "queries": len(entry.judged),
            "documents": len(entry.doc_ids),
        }
        if result.recall_vs_exact is not None:
            per_language[language]["recall_vs_exact"] = result.recall_vs_exact
    mean = {key: float(np.mean([v[key] for v in per_language.values()]))
            for key in (ndcg_key, recall_key)}
    arrays = {name: np.concatenate(parts) for name, parts in per_query.items()}
    arrays.update(language=arrays["language"].astype(str), query_id=arrays["query_id"].astype(str))
    arrays.update(ndcg_k=np.asarray(ndcg_k), recall_k=np.asarray(recall_k))
    return TaskResult(task="miracl", languages=list(per_language), headline={"mean": mean},
                      per_language=per_language, settings={"index": index},
                      per_query=PerQuery("beir", arrays))


def evaluate_beir(encoder, data_dir=None, *, languages: Optional[Sequence[str]] = None,
                  normalize: bool = False, index: str = "exact", ndcg_k: int = 10,
                  recall_k: int = 100, progress: bool = False) -> TaskResult:
    """nDCG@``ndcg_k`` and Recall@``recall_k`` per language (folder) and their means."""
    _check_cutoff("ndcg_k", ndcg_k), _check_cutoff("recall_k", recall_k)
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {index!r}")
    data = load_beir(data_dir, languages)
    return run_task(score, encoder, data, encode_jobs(data), progress=progress,
                    description="evaluating miracl", normalize=normalize, index=index,
                    ndcg_k=ndcg_k, recall_k=recall_k)
