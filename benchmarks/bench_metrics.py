"""Evaluator: metrics against pytrec_eval, full XQuAD-R evaluation against the bare faiss search.

Run: ``python -m pytest benchmarks/bench_metrics.py``. Each case records the reference time
and the ratio in ``extra_info`` (shown with --benchmark-json) and asserts the targets:
metrics >= 10x faster than pytrec_eval with identical values; the whole LAReQA evaluation
at most 2x the faiss search it needs (both timed alternately in the same run).
"""

import numpy as np
import pytest

from hbt_fast.bench import best_time
from hbt_fast.bench.evaluate import (
    LAREQA_TARGET_RATIO,
    compare_lareqa_with_faiss,
    metrics_ours,
    metrics_pytrec_eval,
    metrics_workload,
)

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
    faiss_s, ours_s, result = benchmark.pedantic(
        compare_lareqa_with_faiss, kwargs={"repeat": 3}, rounds=1, iterations=1)
    ratio = ours_s / faiss_s
    benchmark.extra_info.update(faiss_search_s=faiss_s, evaluation_s=ours_s, ratio_to_faiss=ratio)
    assert result["cross"]["setups"] == 110
    assert ratio <= LAREQA_TARGET_RATIO
