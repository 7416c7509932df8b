"""Sampler: index construction, one hybrid epoch through the iterator and through the
DataLoader adapter, C++ core vs the numpy reference (or the previous adapter), at growing sizes.

Run: ``python -m pytest benchmarks/bench_sampler.py``. Each case records the reference's
time, the speed-up and pairs (or rows) per second in ``extra_info`` (shown with --benchmark-json).
"""

import pytest
from hbt_fast import HybridSampler
from hbt_fast.bench import best_time
from hbt_fast.bench.sampler import (
    run_adapter_epoch,
    run_epoch,
    run_list_adapter_epoch,
    run_reference_epoch,
    shuffled_zipf_pairs,
    zipf_pairs,
)
from hbt_fast.testing import ReferenceHybridSampler

# (groups, languages, mean languages per group): 10^4 ... 10^7 pairs, 10 ... 60 languages.
SIZES = [(2_000, 10, 5), (10_000, 20, 10), (70_000, 40, 15), (200_000, 60, 15), (700_000, 60, 15)]
REFERENCE_MAX_PAIRS = 4_000_000  # the per-row reference takes minutes beyond this
INDEX_REFERENCE_MAX_PAIRS = 1_200_000  # its constructor is a Python loop over rows


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


@pytest.mark.parametrize("groups, languages, mean", SIZES, ids=lambda v: str(v))
def test_sampler_index_on_shuffled_pairs(benchmark, groups, languages, mean):
    language_ids, group_ids = shuffled_zipf_pairs(groups, languages, mean)
    benchmark.pedantic(HybridSampler, args=(language_ids, group_ids, 256), rounds=3, iterations=1)
    fast_s = benchmark.stats.stats.min
    info = {"pairs": len(language_ids), "pairs_per_s": len(language_ids) / fast_s}
    if len(language_ids) <= INDEX_REFERENCE_MAX_PAIRS:
        reference_s = best_time(lambda: ReferenceHybridSampler(language_ids, group_ids, 256), 1)
        info.update(reference_s=reference_s, speedup=reference_s / fast_s)
    benchmark.extra_info.update(info)


@pytest.mark.parametrize("batch_size", [32, 100, 256])
def test_dataloader_adapter_epoch(benchmark, batch_size):
    language_ids, group_ids = zipf_pairs(200_000, 60, 15)
    sampler = HybridSampler(language_ids, group_ids, batch_size, mode="hybrid", seed=0)
    rows = benchmark.pedantic(run_adapter_epoch, args=(sampler,), rounds=3, iterations=1)
    fast_s = benchmark.stats.stats.min
    reference_s = best_time(lambda: run_list_adapter_epoch(sampler), 3)
    benchmark.extra_info.update(rows_per_s=rows / fast_s, reference_s=reference_s,
                                speedup=reference_s / fast_s)
