"""Sampler benchmarks against the numpy reference, in one run: building the index (digest
included) from shuffled pairs, one hybrid epoch through the Python iterator, and one epoch
through the DataLoader adapter (against the adapter's previous list-of-tuples batches)."""

from __future__ import annotations

import numpy as np

from hbt_fast.bench import Result, best_time, traced_peak
from hbt_fast.sampler import HybridBatchSampler, HybridSampler
from hbt_fast.testing import ReferenceHybridSampler


def zipf_pairs(num_groups: int, num_languages: int, mean_languages: float, seed: int = 0):
    """Parallel corpus with Zipf-like language coverage: language l holds a share of the
    groups that falls as 1 / (l + 1) ** 0.9, scaled so a group has ``mean_languages`` on
    average (capped at every group). Returns (languages, groups) int64 arrays."""
    coverage = 1.0 / np.arange(1, num_languages + 1) ** 0.9
    for _ in range(50):  # rescale until the capped coverages sum to the mean
        coverage = np.minimum(1.0, coverage * mean_languages / coverage.sum())
    rng = np.random.default_rng(seed)
    languages, groups = [], []
    for start in range(0, num_groups, 100_000):  # bounded memory for 10^7 pairs
        block = min(100_000, num_groups - start)
        present = rng.random((block, num_languages)) < coverage
        group, language = np.nonzero(present)
        groups.append(group + start)
        languages.append(language)
    return np.concatenate(languages).astype(np.int64), np.concatenate(groups).astype(np.int64)


def shuffled_zipf_pairs(num_groups: int, num_languages: int, mean_languages: float, seed: int = 0):
    """:func:`zipf_pairs` in random row order, as real training files come."""
    languages, groups = zipf_pairs(num_groups, num_languages, mean_languages, seed)
    order = np.random.default_rng(seed + 1).permutation(len(languages))
    return languages[order], groups[order]


def run_epoch(sampler) -> int:
    """Iterate one fresh epoch as a training loop would; returns the number of rows produced."""
    sampler.set_epoch(sampler.epoch + 1)
    rows = 0
    for query_rows, _ in sampler:
        rows += len(query_rows)
    return rows


def run_adapter_epoch(sampler) -> int:
    """One epoch through the DataLoader adapter; returns the number of pair indices."""
    sampler.set_epoch(sampler.epoch + 1)
    return sum(len(batch) for batch in HybridBatchSampler(sampler))


def run_list_adapter_epoch(sampler) -> int:
    """The adapter as it was: a list of (query_row, passage_row) tuples per batch."""
    sampler.set_epoch(sampler.epoch + 1)
    return sum(len(list(zip(q.tolist(), p.tolist()))) for q, p in sampler)


def run_reference_epoch(reference) -> int:
    return sum(len(query_rows) for query_rows, _ in reference.epoch_batches(0))


def bench_sampler(num_groups: int, num_languages: int, batch_size: int = 256,
                  mean_languages: float = 15.0, repeat: int = 3) -> Result:
    languages, groups = zipf_pairs(num_groups, num_languages, mean_languages)
    sampler = HybridSampler(languages, groups, batch_size, mode="hybrid", seed=0)
    reference = ReferenceHybridSampler(languages, groups, batch_size, mode="hybrid", seed=0)
    fast_s = best_time(lambda: run_epoch(sampler), repeat)
    reference_s = best_time(lambda: run_reference_epoch(reference), 1)
    rows = len(sampler) * batch_size
    return Result(
        suite="sampler",
        workload=f"hybrid epoch, {num_groups:,} groups x {num_languages} langs "
                 f"({len(languages):,} pairs), batch {batch_size}",
        reference_s=reference_s,
        fast_s=fast_s,
        reference_peak_bytes=traced_peak(lambda: run_reference_epoch(reference)),
        fast_peak_bytes=sampler.memory_bytes + traced_peak(lambda: run_epoch(sampler)),
        note=f"{rows / fast_s / 1e6:.1f} M rows/s",
        extra={"pairs": len(languages), "rows_per_s": rows / fast_s,
               "reference_rows_per_s": rows / reference_s},
    )


def bench_index(num_groups: int, num_languages: int, batch_size: int = 256,
                mean_languages: float = 15.0, repeat: int = 3) -> Result:
    languages, groups = shuffled_zipf_pairs(num_groups, num_languages, mean_languages)

    def build():
        return HybridSampler(languages, groups, batch_size, mode="hybrid", seed=0)

    def build_reference():
        return ReferenceHybridSampler(languages, groups, batch_size, mode="hybrid", seed=0)

    fast_s = best_time(build, repeat)
    reference_s = best_time(build_reference, 1)
    return Result(
        suite="sampler",
        workload=f"index (digest included), {num_groups:,} groups x {num_languages} langs "
                 f"({len(languages):,} shuffled pairs)",
        reference_s=reference_s,
        fast_s=fast_s,
        fast_peak_bytes=build().memory_bytes,
        note=f"{len(languages) / fast_s / 1e6:.1f} M pairs/s",
        extra={"pairs": len(languages), "pairs_per_s": len(languages) / fast_s,
               "reference_pairs_per_s": len(languages) / reference_s},
    )


def bench_adapter(num_groups: int, num_languages: int, batch_size: int = 256,
                  mean_languages: float = 15.0, repeat: int = 3) -> Result:
    languages, groups = zipf_pairs(num_groups, num_languages, mean_languages)
    sampler = HybridSampler(languages, groups, batch_size, mode="hybrid", seed=0)
    fast_s = best_time(lambda: run_adapter_epoch(sampler), repeat)
    reference_s = best_time(lambda: run_list_adapter_epoch(sampler), repeat)
    rows = len(sampler) * batch_size
    return Result(
        suite="sampler",
        workload=f"DataLoader adapter epoch vs list-of-tuples batches, {len(languages):,} pairs, "
                 f"batch {batch_size}",
        reference_s=reference_s,
        fast_s=fast_s,
        note=f"{rows / fast_s / 1e6:.1f} M pair indices/s",
        extra={"pairs": len(languages), "rows_per_s": rows / fast_s,
               "reference_rows_per_s": rows / reference_s},
    )


def run(quick: bool = False) -> list[Result]:
    if quick:
        return [bench_index(20_000, 20), bench_sampler(20_000, 20), bench_adapter(20_000, 20)]
    return [bench_index(20_000, 20), bench_index(200_000, 60), bench_sampler(20_000, 20),
            bench_sampler(200_000, 60), bench_adapter(200_000, 60)]
