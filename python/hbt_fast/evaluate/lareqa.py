"""LAReQA-style evaluation: XQuAD-R (11 languages) and MLQA-R (7), mono / cross / multi.

Data (read by :mod:`hbt_fast.data.lareqa`): one SQuAD-format ``<lang>.json`` per language whose
paragraphs carry a ``sentences`` field. Candidates of a language are all sentences of all its
paragraphs; a question's relevant candidate is the sentence holding its first answer.

Settings (DESIGN.md, "Evaluation definitions"):

* mono ``x -> x`` and cross ``x -> y`` (y != x): queries of ``x`` against the candidates of ``y``
  only; exactly one relevant candidate, so AP@k = 1 / rank when rank <= k. The language x language
  matrix holds the mean over queries of ``x`` that have a counterpart in ``y``; mono is the mean of
  its diagonal, cross the mean of its off-diagonal cells (macro over setups).
* multi: queries of ``x`` against the pool of every language's candidates, with
  ``R`` = number of languages holding the question; mAP@k and Recall@10 averaged over the
  queries of each language, then macro over query languages.
* rank distance: in the multi ranking of a query, the 1-based rank of its worst-ranked relevant
  candidate minus that of its best-ranked one; mean over the queries of a language, then macro
  over languages. Ranks are full ranks over the whole pool (not truncated at k).

Ties: equal scores are ordered by candidate index, lower first, where candidates are numbered
language by language in the order of ``languages`` and, within a language, in file order. The
block (mono/cross) ranks use the same order restricted to the block.

All 121 setups and the multi setting come from one pass over the ``queries x pool`` score matrix
(:mod:`hbt_fast.evaluate.ranking`), computed in row blocks of bounded size, so every text is
encoded once.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from hbt_fast._checks import check_integer
from hbt_fast.data.lareqa import CANDIDATE_TEXTS, LareqaData, LareqaLanguage, load_lareqa
from hbt_fast.evaluate import metrics
from hbt_fast.evaluate._common import l2_normalize, mean_or_nan
from hbt_fast.evaluate.driver import EncodeJob, run_task
from hbt_fast.evaluate.keys import RANK_DISTANCE, SETUPS, map_at, recall_at
from hbt_fast.evaluate.per_query import PerQuery
from hbt_fast.evaluate.ranking import lareqa_ranks
from hbt_fast.evaluate.result import TaskResult
from hbt_fast.evaluate.search import as_embeddings

__all__ = [
    "CANDIDATE_TEXTS",
    "LareqaData",
    "LareqaLanguage",
    "encode_jobs",
    "evaluate_lareqa",
    "load",
    "load_lareqa",
    "metric_names",
    "score",
    "score_lareqa",
]

MULTI_RECALL_K = 10
BLOCK_RECALL_K = 1
DEFAULT_BLOCK_BYTES = 16 * 2**20  # a row block of scores small enough to stay in cache

load = load_lareqa


def metric_names(k: int = 20) -> tuple:
    """The ``"section/metric"`` names a LAReQA result reports at cut-off ``k``."""
    block = (map_at(k), recall_at(BLOCK_RECALL_K))
    return tuple(f"{s}/{m}" for s in ("mono", "cross") for m in block) + (
        f"multi/{map_at(k)}", f"multi/{recall_at(MULTI_RECALL_K)}", f"multi/{RANK_DISTANCE}")


def encode_jobs(data: LareqaData, candidate_text: str = "sentence") -> list:
    """Each language's questions (query side) and candidates (passage side), once each."""
    if candidate_text not in CANDIDATE_TEXTS:
        raise ValueError(f"candidate_text must be one of {CANDIDATE_TEXTS}, got {candidate_text!r}")
    jobs = []
    for language in data.languages:
        entry = data.by_language[language]
        what = f"language {language!r} ({entry.path})"
        jobs.append(EncodeJob("query", language, "query", entry.questions, what))
        jobs.append(EncodeJob("candidate", language, "passage",
                              entry.candidate_texts(candidate_text), what))
    return jobs


def _stack(embeddings, data: LareqaData, counts, name: str) -> np.ndarray:
    if isinstance(embeddings, Mapping):
        missing = [lang for lang in data.languages if lang not in embeddings]
        if missing:
            raise ValueError(f"{name}: no embeddings for languages {missing}")
        parts = [as_embeddings(embeddings[lang], n, name=f"{name}[{lang!r}]")
                 for lang, n in zip(data.languages, counts)]
        return np.concatenate(parts)
    return as_embeddings(embeddings, int(np.sum(counts)), name=name)


def score_lareqa(data: LareqaData, query_embeddings, candidate_embeddings, *, k: int = 20,
                 normalize: bool = False, block_bytes: int = DEFAULT_BLOCK_BYTES) -> TaskResult:
    """All LAReQA figures from precomputed embeddings.

    Embeddings are either dicts ``{language: array}`` or single arrays stacked in
    ``data.languages`` order (queries in file order, candidates in file order).
    """
    k = check_integer(k, "k")
    if not isinstance(data, LareqaData):
        raise TypeError(f"data must be LareqaData (from load_lareqa), got {type(data).__name__}")
    per = [data.by_language[lang] for lang in data.languages]
    queries = _stack(query_embeddings, data, [len(p.questions) for p in per], "query_embeddings")
    candidates = _stack(candidate_embeddings, data, [len(p.sentences) for p in per],
                        "candidate_embeddings")
    if queries.shape[1] != candidates.shape[1]:
        raise ValueError(f"query embeddings have dimension {queries.shape[1]}, "
                         f"candidates {candidates.shape[1]}")
    if normalize:
        queries, candidates = l2_normalize(queries), l2_normalize(candidates)
    depth = min(max(k, MULTI_RECALL_K), data.num_candidates)
    ranks = lareqa_ranks(data.relevant_in, data.candidate_offsets, queries, candidates, depth,
                         block_bytes)
    return _summarise(data, k, ranks)


score = score_lareqa


def _means_by_query_language(values: np.ndarray, data: LareqaData) -> np.ndarray:
    sums = np.bincount(data.query_language, weights=values, minlength=len(data.languages))
    counts = np.bincount(data.query_language, minlength=len(data.languages))
    return sums / counts


def _block_matrices(data: LareqaData, k: int, block_ranks: np.ndarray):
    """Language x language mean AP@k and Recall@1, and the number of queries per cell."""
    num_languages = len(data.languages)
    present = block_ranks > 0
    ap = np.where(present & (block_ranks <= k), 1.0 / np.maximum(block_ranks, 1), 0.0)
    top = (present & (block_ranks <= BLOCK_RECALL_K)).astype(np.float64)
    counts, map_matrix, recall_matrix = (np.zeros((num_languages, num_languages))
                                         for _ in range(3))
    np.add.at(counts, data.query_language, present)
    np.add.at(map_matrix, data.query_language, ap)
    np.add.at(recall_matrix, data.query_language, top)
    with np.errstate(invalid="ignore", divide="ignore"):
        return map_matrix / counts, recall_matrix / counts, counts


def _multi_per_query(data: LareqaData, k: int, ranks) -> dict:
    """Each query's multi AP@k, Recall@10 and rank distance."""
    num_relevant = (data.relevant_in >= 0).sum(axis=1)
    hits = (ranks.multi_ids[:, :, None] == data.relevant_in[:, None, :]).any(axis=2)
    return {
        map_at(k): metrics.average_precision_at_k(hits, num_relevant, k),
        recall_at(MULTI_RECALL_K): metrics.recall_at_k(hits, num_relevant, MULTI_RECALL_K),
        RANK_DISTANCE: (ranks.worst_rank - ranks.best_rank).astype(np.float64),
    }


def _per_query(data: LareqaData, k: int, ranks, multi: dict) -> PerQuery:
    languages = np.asarray(data.languages, dtype=str)
    return PerQuery("lareqa", {
        "query_id": np.asarray([qid for lang in data.languages
                                for qid in data.by_language[lang].question_ids], dtype=str),
        "group": data.query_group, "language": languages[data.query_language],
        "languages": languages, "block_rank": ranks.block_ranks.astype(np.int32),
        "multi_ap": multi[map_at(k)], "multi_recall": multi[recall_at(MULTI_RECALL_K)],
        "best_rank": ranks.best_rank, "worst_rank": ranks.worst_rank,
        "k": np.asarray(k), "multi_recall_k": np.asarray(MULTI_RECALL_K)})


def _off_diagonal(matrix: np.ndarray) -> np.ndarray:
    off = matrix.copy()
    np.fill_diagonal(off, np.nan)
    return off


def _per_language(data, k, map_matrix, multi) -> dict:
    off, key = _off_diagonal(map_matrix), map_at(k)
    rows = {}
    for x, language in enumerate(data.languages):
        entry = data.by_language[language]
        rows[language] = {
            "questions": len(entry.questions),
            "candidates": len(entry.sentences),
            "relevant_candidates": int(np.unique(entry.relevant).size),
            f"mono_{key}": float(map_matrix[x, x]),
            f"cross_{key}_as_query": mean_or_nan(off[x]),
            f"cross_{key}_as_candidate": mean_or_nan(off[:, x]),
            **{f"multi_{name}" if name != RANK_DISTANCE else name: float(values[x])
               for name, values in multi.items()},
        }
    return rows


def _summarise(data: LareqaData, k: int, ranks) -> TaskResult:
    map_matrix, recall_matrix, counts = _block_matrices(data, k, ranks.block_ranks)
    per_query = _multi_per_query(data, k, ranks)
    multi = {name: _means_by_query_language(values, data) for name, values in per_query.items()}
    diagonal = np.eye(len(data.languages), dtype=bool)
    block = {}
    for section, cells in (("mono", diagonal), ("cross", ~diagonal)):
        block[section] = {
            map_at(k): mean_or_nan(map_matrix[cells]),
            recall_at(BLOCK_RECALL_K): mean_or_nan(recall_matrix[cells]),
            SETUPS: int(np.count_nonzero(counts[cells])),
        }
    headline = {**block, "multi": {**{name: float(values.mean()) for name, values in multi.items()},
                                   SETUPS: len(data.languages)}}
    matrix = {"rows": "query language", "columns": "candidate language",
              map_at(k): _nan_to_none(map_matrix),
              recall_at(BLOCK_RECALL_K): _nan_to_none(recall_matrix)}
    return TaskResult(task="lareqa", languages=list(data.languages), headline=headline,
                      per_language=_per_language(data, k, map_matrix, multi), matrix=matrix,
                      settings={"k": k}, per_query=_per_query(data, k, ranks, per_query))


def _nan_to_none(matrix: np.ndarray) -> list:
    """JSON has no NaN: empty setups (no shared questions) become null."""
    return [[None if np.isnan(v) else float(v) for v in row] for row in matrix]


def evaluate_lareqa(
    encoder,
    data_dir=None,
    *,
    languages: Optional[Sequence[str]] = None,
    k: int = 20,
    candidate_text: str = "sentence",
    normalize: bool = False,
    task: str = "xquad-r",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: bool = False,
) -> TaskResult:
    """Evaluate ``encoder`` on a LAReQA-layout folder (XQuAD-R, MLQA-R); see the module doc.

    The encoder needs ``encode_queries(list[str])`` and ``encode_passages(list[str])`` returning
    ``[n, d]`` arrays; each language's questions and candidates are encoded once. Scores are
    inner products (``normalize=True`` turns them into cosines).
    ``candidate_text="sentence_context"`` appends the paragraph to each candidate sentence.
    ``progress=True`` shows one bar over all the texts, with an ETA.
    """
    k = check_integer(k, "k")
    data = load_lareqa(data_dir, languages, task=task)
    result = run_task(score_lareqa, encoder, data, encode_jobs(data, candidate_text),
                      progress=progress, description=f"evaluating {task}", k=k,
                      normalize=normalize, block_bytes=block_bytes)
    result.task = task
    result.settings["candidate_text"] = candidate_text
    return result
