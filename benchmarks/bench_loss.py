"""Fused InfoNCE forward + backward vs ``F.cross_entropy((q @ p.T) / tau, arange(B))`` (what
sentence-transformers' MultipleNegativesRankingLoss computes), fp32, torch's threads.

Run: ``python -m pytest benchmarks/bench_loss.py`` (several minutes on 2 cores; ``-k "not
65536"`` skips the largest case). Each case stores in ``extra_info`` the reference time, the
speed-up, the kernel-only time and Python overhead, the efficiency (three plain torch.mm
products / fused time) and, where measured, both peak memory growths, all measured in the same
run; ``hbt-fast bench`` reuses ``hbt_fast.bench.loss``.
"""

import pytest

from hbt_fast.bench.loss import (
    available_bytes,
    best_of_interleaved,
    fused_step,
    kernel_only,
    make_inputs,
    peak_rss_increase,
    reference_bytes_estimate,
    reference_step,
    repeats_for,
    three_products,
)

SMALL = [32, 100, 256, 512, 1024]
LARGE = [2048, 4096, 8192]


def record(benchmark, **info):
    benchmark.extra_info.update(info)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in info.items()))


def measure(benchmark, batch_size, dim):
    q, p = make_inputs(batch_size, dim=dim)
    benchmark.pedantic(fused_step, args=(q, p), rounds=3, iterations=1, warmup_rounds=1)
    repeat = repeats_for(benchmark.stats.stats.min)
    # The others interleaved with further fused runs: ratios from the same minutes.
    times = best_of_interleaved({"fused": lambda: fused_step(q, p),
                                 "reference": lambda: reference_step(q, p),
                                 "kernel": lambda: kernel_only(q, p),
                                 "products": lambda: three_products(q, p)}, repeat=repeat)
    fused_s = min(times["fused"], benchmark.stats.stats.min)
    record(benchmark, batch_size=batch_size, dim=dim, fused_s=fused_s,
           reference_s=times["reference"], speedup=times["reference"] / fused_s,
           kernel_s=times["kernel"], python_overhead_s=max(0.0, fused_s - times["kernel"]),
           efficiency=times["products"] / fused_s)


@pytest.mark.parametrize("dim", [384, 768, 1024])
@pytest.mark.parametrize("batch_size", SMALL + LARGE)
def test_speed(benchmark, batch_size, dim):
    measure(benchmark, batch_size, dim)


def test_speed_16384(benchmark):
    measure(benchmark, 16384, 768)


def test_peak_memory_16384(benchmark):
    q, p = make_inputs(16384)
    fused_bytes = benchmark.pedantic(peak_rss_increase, args=(lambda: fused_step(q, p),),
                                     rounds=1, iterations=1)
    reference_bytes = peak_rss_increase(lambda: reference_step(q, p))
    record(benchmark, fused_peak_mib=fused_bytes / 2**20,
           reference_peak_mib=reference_bytes / 2**20,
           fused_share=fused_bytes / reference_bytes)


def test_batch_65536_completes(benchmark):
    batch_size = 65536
    q, p = make_inputs(batch_size)
    needed = reference_bytes_estimate(batch_size, batch_size)
    fused_bytes = benchmark.pedantic(peak_rss_increase, args=(lambda: fused_step(q, p),),
                                     rounds=1, iterations=1)
    # The reference would allocate B x M matrices of 16 GiB each: it is reported, not run.
    record(benchmark, fused_s=benchmark.stats.stats.min, fused_peak_mib=fused_bytes / 2**20,
           reference="out of memory" if needed > available_bytes() else "not run",
           reference_needs_gib=needed / 2**30, available_gib=available_bytes() / 2**30)
