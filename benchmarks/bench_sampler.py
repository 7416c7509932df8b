"""Sampler: one hybrid epoch, C++ core vs the numpy reference, at growing sizes.

Run: ``python -m pytest benchmarks/bench_sampler.py``. Each case records the reference's
time, the speed-up and rows per second in ``extra_info`` (shown with --benchmark-json).
"""

import pytest

from hbt_fast import HybridSampler
from hbt_fast.bench import best_time
from hbt_fast.bench.sampler import run_epoch, run_reference_epoch, zipf_pairs
from hbt_fast.testing import ReferenceHybridSampler

# (groups, languages, mean languages per group): 10^4 ... 10^7 pairs, 10 ... 60 languages.
SIZES = [(2_000, 10, 5), (10_000, 20, 10), (70_000, 40, 15), (200_000, 60, 15), (700_000, 60, 15)]
REFERENCE_MAX_PAIRS = 4_000_000  # the per-row reference takes minutes beyond this


@pytest.mark.parametrize("groups, languages, mean", SIZES, ids=lambda v: str(v))
def test_sampler_epoch(benchmark, groups, languages, mean):
    language_ids, group_ids = zipf_pairs(groups, languages, mean)
    sampler = HybridSampler(language_ids, group_ids, 256, mode="hybrid", seed=0)
    rows = benchmark.pedantic(run_epoch, args=(sampler,), rounds=5, iterations=1)
    fast_s = benchmark.stats.stats.min
    info = {"pairs": len(language_ids), "rows_per_s": rows / fast_s,
            "memory_bytes": sampler.memory_bytes}
    if len(language_ids) <= REFERENCE_MAX_PAIRS:
        reference = ReferenceHybridSampler(language_ids, group_ids, 256, mode="hybrid", seed=0)
        reference_s = best_time(lambda: run_reference_epoch(reference), 1)
        info.update(reference_s=reference_s, speedup=reference_s / fast_s)
    benchmark.extra_info.update(info)
