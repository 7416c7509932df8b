"""Evaluator: metrics against pytrec_eval, full XQuAD-R evaluation against the bare faiss search.

Run: ``python -m pytest benchmarks/bench_metrics.py``. Each case records the reference time
and the ratio in ``extra_info`` (shown with --benchmark-json) and asserts the targets:
metrics >= 10x faster than pytrec_eval with identical values; the whole LAReQA evaluation
under 3x the faiss search it needs.
"""

import numpy as np
import pytest

from hbt_fast.bench import best_time
from hbt_fast.bench.evaluate import (
    faiss_search_only,
    metrics_ours,
    metrics_pytrec_eval,
    metrics_workload,
    synthetic_xquad_r,
)
from hbt_fast.evaluate.lareqa import score_lareqa

pytest.importorskip("pytrec_eval")


def test_metrics_vs_pytrec_eval(benchmark):
    ids, scores, relevant = metrics_workload()
    ours = benchmark.pedantic(metrics_ours, args=(ids, relevant), rounds=5, iterations=1)
    reference = metrics_pytrec_eval(ids, scores, relevant)
    for measure, values in reference.items():
        np.testing.assert_allclose(ours[measure], values, rtol=0, atol=1e-9)
    reference_s = best_time(lambda: metrics_pytrec_eval(ids, scores, relevant), 2)
    speedup = reference_s / benchmark.stats.stats.min
    benchmark.extra_info.update(reference_s=reference_s, speedup=speedup, queries=len(ids))
    assert speedup >= 10


def test_lareqa_full_evaluation_vs_faiss_search(benchmark):
    data, queries, candidates = synthetic_xquad_r(dim=768)
    faiss_s = best_time(lambda: faiss_search_only(queries, candidates), 3)
    benchmark.pedantic(score_lareqa, args=(data, queries, candidates), rounds=3, iterations=1)
    ratio = benchmark.stats.stats.min / faiss_s
    benchmark.extra_info.update(faiss_search_s=faiss_s, ratio_to_faiss=ratio)
    assert ratio < 3
