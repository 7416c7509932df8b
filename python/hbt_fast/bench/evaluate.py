"""Evaluator benchmarks, reusable by ``hbt-fast bench`` (``run(quick)``) and benchmarks/.

* metrics: mAP@20 / Recall@10 / nDCG@10 of a 13,090-query run over 13,014 candidates (the
  XQuAD-R multilingual size), from the search result: our array code against building
  pytrec_eval's dict input and evaluating (values compared exactly, to 1e-9).
* LAReQA: the full evaluation (121 setups + multi + rank distance) from cached embeddings,
  against the bare faiss flat search it needs (top-20 of every query in the whole pool); the
  target is at most 2x. The two are timed alternately, so both see the same machine load.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from hbt_fast.bench import best_time
from hbt_fast.evaluate import metrics
from hbt_fast.data.lareqa import LareqaData, LareqaLanguage
from hbt_fast.evaluate.lareqa import score_lareqa
from hbt_fast.evaluate.search import search

XQUAD_R_CANDIDATES = {"ar": 1222, "de": 1276, "el": 1234, "en": 1180, "es": 1215, "hi": 1244,
                      "ru": 1219, "th": 852, "tr": 1167, "vi": 1209, "zh": 1196}
XQUAD_R_QUESTIONS = 1190


def synthetic_xquad_r(dim: int = 768, seed: int = 0, questions: int = XQUAD_R_QUESTIONS,
                      candidates: Optional[dict] = None):
    """XQuAD-R-shaped data (11 x 1190 questions, 13,014 candidates) with embeddings whose
    relevant candidates are noisily aligned with their questions. Returns (data, Q, C)."""
    candidates = candidates or XQUAD_R_CANDIDATES
    rng = np.random.default_rng(seed)
    by_language = {}
    codes = rng.standard_normal((questions, dim)).astype(np.float32)
    query_parts, candidate_parts = [], []
    for language, count in candidates.items():
        relevant = rng.integers(0, count, size=questions)
        ids = [f"q{i}" for i in range(questions)]
        by_language[language] = LareqaLanguage(
            language, None, ids, ids, [""] * count, [""] * count, relevant.astype(np.int64))
        cand = rng.standard_normal((count, dim)).astype(np.float32)
        cand[relevant] += 0.5 * codes  # last writer wins for shared sentences, as noise
        query_parts.append(codes + rng.standard_normal((questions, dim)).astype(np.float32))
        candidate_parts.append(cand)
    data = LareqaData(list(candidates), by_language)
    normalise = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return data, normalise(np.concatenate(query_parts)), normalise(np.concatenate(candidate_parts))


def _docid(index: int) -> str:
    # trec_eval breaks ties by docid descending; these names reproduce our lower-index-first rule
    return f"d{10**8 - index:09d}"


def metrics_ours(ids: np.ndarray, relevant: np.ndarray) -> dict:
    hits = (ids[:, :, None] == relevant[:, None, :]).any(axis=2)
    num_relevant = (relevant >= 0).sum(axis=1)
    ideal = (relevant >= 0).astype(np.float64)
    return {
        "map_cut_20": metrics.average_precision_at_k(hits, num_relevant, 20),
        "recall_10": metrics.recall_at_k(hits, num_relevant, 10),
        "ndcg_cut_10": metrics.ndcg_at_k(hits.astype(np.float64), ideal, 10),
    }


def metrics_pytrec_eval(ids: np.ndarray, scores: np.ndarray, relevant: np.ndarray) -> dict:
    import pytrec_eval

    qrels = {f"q{q}": {_docid(int(c)): 1 for c in row if c >= 0} for q, row in enumerate(relevant)}
    run = {f"q{q}": {_docid(int(c)): float(s) for c, s in zip(id_row, score_row)}
           for q, (id_row, score_row) in enumerate(zip(ids, scores))}
    measures = {"map_cut_20", "recall_10", "ndcg_cut_10"}
    out = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    return {m: np.array([out[f"q{q}"][m] for q in range(len(ids))]) for m in measures}


def metrics_workload(dim: int = 64, seed: int = 0, questions: int = XQUAD_R_QUESTIONS):
    """The run both sides score: top-20 ids and scores plus each query's relevant candidates."""
    data, queries, candidates = synthetic_xquad_r(dim, seed, questions)
    result = search(queries, candidates, 20)
    return result.ids, result.scores, data.relevant_in


def compare_metrics_with_pytrec_eval(repeat: int = 3, **workload):
    """(reference seconds, our seconds, values identical to 1e-9) on the metrics workload."""
    ids, scores, relevant = metrics_workload(**workload)
    ours_s = best_time(lambda: metrics_ours(ids, relevant), repeat)
    reference_s = best_time(lambda: metrics_pytrec_eval(ids, scores, relevant), 1)
    ours, reference = metrics_ours(ids, relevant), metrics_pytrec_eval(ids, scores, relevant)
    match = all(np.allclose(ours[m], reference[m], rtol=0, atol=1e-9) for m in reference)
    return reference_s, ours_s, match


def faiss_search_only(queries, candidates, k: int = 20):
    import faiss

    index = faiss.IndexFlatIP(candidates.shape[1])
    index.add(candidates)
    return index.search(queries, k)


LAREQA_TARGET_RATIO = 2.0


def compare_lareqa_with_faiss(repeat: int = 3, dim: int = 768, seed: int = 0):
    """(bare faiss search seconds, full evaluation seconds, results) from cached embeddings,
    each the best of ``repeat`` runs taken alternately."""
    data, queries, candidates = synthetic_xquad_r(dim, seed)
    faiss_s = ours_s = float("inf")
    for _ in range(repeat):
        faiss_s = min(faiss_s, best_time(lambda: faiss_search_only(queries, candidates), 1))
        ours_s = min(ours_s, best_time(lambda: score_lareqa(data, queries, candidates), 1))
    return faiss_s, ours_s, score_lareqa(data, queries, candidates)


def run(quick: bool = False) -> list:
    """Rows for ``hbt-fast bench``."""
    from hbt_fast.bench import Result

    rows = []
    try:
        reference_s, ours_s, match = compare_metrics_with_pytrec_eval(repeat=1 if quick else 3)
        note = "values identical" if match else "VALUES DIFFER"
    except ImportError:
        ids, _, relevant = metrics_workload()
        reference_s, note = None, "reference: pytrec_eval not installed"
        ours_s = best_time(lambda: metrics_ours(ids, relevant), 3)
    rows.append(Result("metrics", "map@20/R@10/nDCG@10, 13,090 x top-20 (vs pytrec_eval)",
                       reference_s, ours_s, note=note))
    faiss_s, ours_s, _ = compare_lareqa_with_faiss(repeat=1 if quick else 3,
                                                   dim=256 if quick else 768)
    rows.append(Result("lareqa", "XQuAD-R 121 setups + multi from embeddings (vs faiss search)",
                       faiss_s, ours_s,
                       note=f"{ours_s / faiss_s:.2f}x the bare faiss top-20 search "
                            f"(target <= {LAREQA_TARGET_RATIO:.0f}x)"))
    return rows
