"""BEIR-layout evaluation (MIRACL and any dataset in that layout): nDCG@10 and Recall@100 per
language.

Data layout: see :mod:`hbt_fast.data.beir`. Every search result is kept, including a document
whose id equals the query id (some BEIR evaluators silently drop those; we do not). Only
queries with at least one positive judgement are scored, as trec_eval does; graded judgements
are linear gains in nDCG.

With ``embedding_cache`` the corpus is never held: passages are read as a stream, encoded in
shards to ``<embedding_cache>/<language>/`` (:mod:`hbt_fast.evaluate.shards`: resumable, checked)
and searched shard by shard, so memory is one shard plus the queries and the judged documents'
ids. Exact search gives the figures of the in-memory path, bit for bit (float16 shards: those of
the embeddings rounded to float16).
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hbt_fast._checks import check_flag, check_integer
from hbt_fast.data.beir import (BeirData, CorpusIds, _warn_about_unknown_documents, beir_folders,
                                iter_corpus, load_beir, load_beir_topics)
from hbt_fast.data.files import refuse_overlap
from hbt_fast.data.locations import resolve_data_dir
from hbt_fast.evaluate import metrics
from hbt_fast.evaluate._common import l2_normalize
from hbt_fast.evaluate.driver import EncodeJob, encode_job, encoder_method, run_task
from hbt_fast.evaluate.keys import ndcg_at, recall_at
from hbt_fast.evaluate.per_query import PerQuery
from hbt_fast.evaluate.result import TaskResult
from hbt_fast.evaluate.search import INDEX_KINDS, search
from hbt_fast.evaluate.shards import (DEFAULT_SHARD_ROWS, EmbeddingShards, _check_dtype,
                                      encoder_identity, search_shards)

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


def _judged_arrays(query_ids, qrels, doc_index, ids: np.ndarray, n_docs: int):
    """Gains of the ranked results and the ideal gains, as arrays (``doc_index``: the row of
    each judged document present, among ``n_docs``)."""
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
    n_docs = max(n_docs, 1)
    keys = np.asarray(rows, dtype=np.int64) * n_docs + np.asarray(cols, dtype=np.int64)
    order = np.argsort(keys)
    keys, values = keys[order], np.asarray(values, dtype=np.float64)[order]
    if len(keys):
        wanted = np.arange(len(query_ids))[:, None] * n_docs + ids
        found = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        match = (keys[found] == wanted) & (ids >= 0)
        gains[match] = values[found[match]]
    return gains, ideal


def _per_query_parts() -> dict:
    return {"language": [], "query_id": [], "ndcg": [], "recall": [], "first_relevant_rank": []}


def _language_figures(judged, qrels, doc_index, n_docs: int, result, ndcg_k: int,
                      recall_k: int, language: str, per_query: dict) -> dict:
    """One language's figures; its per-query values are appended to ``per_query``."""
    gains, ideal = _judged_arrays(judged, qrels, doc_index, result.ids, n_docs)
    num_relevant = (ideal > 0).sum(axis=1)
    ndcg = metrics.ndcg_at_k(gains, ideal, ndcg_k)
    recall = metrics.recall_at_k(gains > 0, num_relevant, recall_k)
    found = gains > 0
    first_relevant = np.where(found.any(axis=1), np.argmax(found, axis=1) + 1, 0)
    for name, values in (("language", [language] * len(ndcg)), ("query_id", judged), ("ndcg", ndcg),
                         ("recall", recall), ("first_relevant_rank", first_relevant)):
        per_query[name].append(np.asarray(values))
    figures = {
        ndcg_at(ndcg_k): float(ndcg.mean()),
        recall_at(recall_k): float(recall.mean()),
        "queries": len(judged),
        "documents": n_docs,
    }
    if result.recall_vs_exact is not None:
        figures["recall_vs_exact"] = result.recall_vs_exact
    return figures


def _task_result(per_language: dict, per_query: dict, ndcg_k: int, recall_k: int,
                 settings: dict) -> TaskResult:
    mean = {key: float(np.mean([v[key] for v in per_language.values()]))
            for key in (ndcg_at(ndcg_k), recall_at(recall_k))}
    arrays = {name: np.concatenate(parts) for name, parts in per_query.items()}
    arrays.update(language=arrays["language"].astype(str), query_id=arrays["query_id"].astype(str))
    arrays.update(ndcg_k=np.asarray(ndcg_k), recall_k=np.asarray(recall_k))
    return TaskResult(task="miracl", languages=list(per_language), headline={"mean": mean},
                      per_language=per_language, settings=settings,
                      per_query=PerQuery("beir", arrays))


def score(data: BeirData, query_embeddings: dict, candidate_embeddings: dict, *,
          normalize: bool = False, index: str = "exact", ndcg_k: int = 10,
          recall_k: int = 100) -> TaskResult:
    """nDCG@``ndcg_k`` and Recall@``recall_k`` per language from ``{language: embeddings}``."""
    ndcg_k, recall_k = check_integer(ndcg_k, "ndcg_k"), check_integer(recall_k, "recall_k")
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {index!r}")
    per_language, per_query = {}, _per_query_parts()
    for language in data.languages:
        entry = data.by_language[language]
        queries, docs = query_embeddings[language], candidate_embeddings[language]
        if normalize:
            queries, docs = l2_normalize(queries), l2_normalize(docs)
        result = search(queries, docs, max(ndcg_k, recall_k), index=index)
        doc_index = {d: i for i, d in enumerate(entry.doc_ids)}
        per_language[language] = _language_figures(entry.judged, entry.qrels, doc_index,
                                                    len(entry.doc_ids), result, ndcg_k, recall_k,
                                                    language, per_query)
    return _task_result(per_language, per_query, ndcg_k, recall_k, {"index": index})


def evaluate_beir(encoder, data_dir=None, *, languages: Optional[Sequence[str]] = None,
                  normalize: bool = False, index: str = "exact", ndcg_k: int = 10,
                  recall_k: int = 100, progress: bool = False, embedding_cache=None,
                  shard_rows: Optional[int] = None,
                  embedding_dtype: Optional[str] = None) -> TaskResult:
    """nDCG@``ndcg_k`` and Recall@``recall_k`` per language (folder) and their means.

    ``embedding_cache`` (a folder outside the data): stream the corpus and keep its passage
    embeddings in shards of ``shard_rows`` passages (default 100,000) stored as
    ``embedding_dtype`` ("float32", the default, or "float16") in ``<embedding_cache>/<language>/``;
    a later run with the same corpus, encoder and settings reuses them, an interrupted one
    resumes. The encoder's ``clear_cache()``, where it has one, is called after each chunk of
    passages, so a text cache (:class:`~hbt_fast.models.TextEncoder`'s) stays small."""
    check_integer(ndcg_k, "ndcg_k"), check_integer(recall_k, "recall_k")
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {index!r}")
    if embedding_cache is None:
        for name, value in (("shard_rows", shard_rows), ("embedding_dtype", embedding_dtype)):
            if value is not None:
                raise ValueError(f"{name} applies to an embedding cache; give embedding_cache too")
        data = load_beir(data_dir, languages)
        return run_task(score, encoder, data, encode_jobs(data), progress=progress,
                        description="evaluating miracl", normalize=normalize, index=index,
                        ndcg_k=ndcg_k, recall_k=recall_k)
    progress = check_flag(progress, "progress")
    shard_rows = check_integer(DEFAULT_SHARD_ROWS if shard_rows is None else shard_rows, "shard_rows")
    embedding_dtype = _check_dtype("float32" if embedding_dtype is None else embedding_dtype)
    streamed = _StreamedBeir(encoder, Path(embedding_cache), shard_rows, embedding_dtype, progress)
    refuse_overlap(embedding_cache, {"the data folder": resolve_data_dir(data_dir, "miracl", "miracl")},
                   name="embedding_cache")
    topics = {lang: load_beir_topics(folder)  # every small file checked before any encoding
              for lang, folder in beir_folders(data_dir, languages).items()}
    per_language = streamed.run(topics, normalize=normalize, index=index, ndcg_k=ndcg_k,
                                recall_k=recall_k)
    return _task_result(per_language, streamed.per_query, ndcg_k, recall_k,
                        {"index": index, "embedding_dtype": embedding_dtype})


def _count_lines(path: Path) -> int:
    """Lines of a file, for the progress bar's total (a fast byte count, no parsing)."""
    count = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            count += block.count(b"\n")
    return count


class _StreamedBeir:
    """The evaluation of :func:`evaluate_beir` with an embedding cache, language by language."""

    def __init__(self, encoder, cache: Path, shard_rows: int, dtype: str, progress: bool):
        self.cache, self.shard_rows, self.dtype, self.progress = cache, shard_rows, dtype, progress
        self.encode_queries = encoder_method(encoder, "query")
        self.encode_passages = encoder_method(encoder, "passage")
        clear = getattr(encoder, "clear_cache", None)
        self.clear_cache = clear if callable(clear) else (lambda: None)
        self.identity = encoder_identity(encoder)
        self.per_query = _per_query_parts()

    def run(self, topics: dict, *, normalize: bool, index: str, ndcg_k: int,
            recall_k: int) -> dict:
        from tqdm.auto import tqdm

        total = sum(len(t.judged) + _count_lines(t.corpus_path) for t in topics.values())
        with tqdm(total=total, desc="evaluating miracl", unit="text", disable=not self.progress,
                  dynamic_ncols=True) as self.bar:
            return {language: self._language(language, entry, normalize=normalize, index=index,
                                             ndcg_k=ndcg_k, recall_k=recall_k)
                    for language, entry in topics.items()}

    def _language(self, language: str, topics, *, normalize, index, ndcg_k, recall_k) -> dict:
        what = f"language {language!r} ({topics.folder})"
        queries = encode_job(self.encode_queries, EncodeJob(
            "query", language, "query", [topics.queries[q] for q in topics.judged], what),
            None, self.bar.update)
        ids = CorpusIds(topics.corpus_path, {d for judged in topics.qrels.values() for d in judged})

        def encode(texts):
            return encode_job(self.encode_passages, EncodeJob("candidate", language, "passage",
                                                              texts, what), queries.shape[1],
                              self._passages_done)

        with EmbeddingShards(self.cache / language, dtype=self.dtype, shard_rows=self.shard_rows,
                             identity=self.identity) as shards:
            records = iter_corpus(topics.corpus_path)
            chunks = iter(lambda: list(islice(records, self.shard_rows)), [])
            for number, chunk in enumerate(chunks):
                lines, docids, texts = zip(*chunk)
                ids.add(docids, lines)
                counted = self.bar.n
                shards.ensure(number, list(texts), encode)
                # a shard counts its texts once, encoded, kept, or kept after a check of a few
                self.bar.update(counted + len(texts) - self.bar.n)
            if not ids.count:
                raise ValueError(f"{topics.corpus_path}: the corpus is empty")
            shards.finish(ids.count)
            _warn_about_unknown_documents(topics.qrels, set(ids.rows), topics.qrels_path,
                                          topics.corpus_path)
            if normalize:
                queries = l2_normalize(queries)
            result = search_shards(queries, shards, max(ndcg_k, recall_k), index=index,
                                   normalize=normalize)
        return _language_figures(topics.judged, topics.qrels, ids.rows, ids.count, result, ndcg_k,
                                 recall_k, language, self.per_query)

    def _passages_done(self, count: int) -> None:
        self.bar.update(count)
        self.clear_cache()
