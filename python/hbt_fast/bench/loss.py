"""Fused InfoNCE benchmark: forward + backward of ``hbt_fast.functional.info_nce`` against the
computation sentence-transformers' MultipleNegativesRankingLoss performs,
``F.cross_entropy((q @ p.T) * (1 / tau), arange(B))``, measured in one process.

``bench_info_nce(batch_size)`` runs one workload and returns a :class:`Result` with both times,
both peak memories (growth of the process's peak resident set, which sees every allocator) and
the efficiency: the time of the three B x M x D products (torch.mm) over the fused time.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from hbt_fast.bench import Result
from hbt_fast.functional import info_nce

TEMPERATURE = 0.05


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_rss_increase(function: Callable[[], object]) -> Optional[int]:
    """Bytes by which the process's peak resident set rose above its size before one call of
    ``function`` (Linux: resets the high-water mark through /proc/self/clear_refs); None
    where that accounting is unavailable."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")  # reset VmHWM to the current RSS
        before = _status_kib("VmRSS")
        function()
        return max(0, _status_kib("VmHWM") - before) * 1024
    except OSError:
        return None


def available_bytes() -> int:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def make_inputs(batch_size: int, num_passages: Optional[int] = None, dim: int = 768,
                seed: int = 0):
    """Unit-norm float32 embeddings (as after a cosine model) that require grad."""
    generator = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(batch_size, dim, generator=generator), dim=-1)
    p = F.normalize(torch.randn(num_passages or batch_size, dim, generator=generator), dim=-1)
    return q.requires_grad_(), p.requires_grad_()


def reference_step(q: torch.Tensor, p: torch.Tensor) -> None:
    labels = torch.arange(q.shape[0])
    F.cross_entropy((q @ p.T) * (1 / TEMPERATURE), labels).backward()
    q.grad = p.grad = None


def fused_step(q: torch.Tensor, p: torch.Tensor) -> None:
    info_nce(q, p, temperature=TEMPERATURE, normalize=False).backward()
    q.grad = p.grad = None


def three_products(q: torch.Tensor, p: torch.Tensor) -> None:
    """The matrix products any exact InfoNCE forward + backward must do: q p^T, G p, G^T q."""
    q, p = q.detach(), p.detach()
    sims = q @ p.T
    torch.mm(sims, p)
    torch.mm(sims.T, q)


def reference_bytes_estimate(batch_size: int, num_passages: int) -> int:
    """The reference holds about four B x M float32 matrices at its peak."""
    return 4 * batch_size * num_passages * 4


def best_of_interleaved(functions: dict, repeat: int) -> dict:
    """Minimum time of each function, calling them in turn so that drifts in machine speed
    touch every one alike."""
    best = {name: float("inf") for name in functions}
    for _ in range(repeat):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_info_nce(batch_size: int, num_passages: Optional[int] = None, dim: int = 768,
                   repeat: int = 3, measure_memory: bool = True,
                   measure_products: bool = True) -> Result:
    """Time and memory of one fused InfoNCE forward + backward against the reference."""
    num_passages = num_passages or batch_size
    q, p = make_inputs(batch_size, num_passages, dim)
    fused_step(q, p)  # warm-up (loads BLAS, spawns pools)
    functions = {"fused": lambda: fused_step(q, p)}
    reference_fits = reference_bytes_estimate(batch_size, num_passages) < 0.8 * available_bytes()
    if reference_fits:
        functions["reference"] = lambda: reference_step(q, p)
    if measure_products:
        functions["products"] = lambda: three_products(q, p)
    times = best_of_interleaved(functions, repeat)
    note = "" if reference_fits else (
        f"reference: out of memory (needs ~{reference_bytes_estimate(batch_size, num_passages) / 2**30:.0f} "
        f"GiB, {available_bytes() / 2**30:.0f} GiB available)")
    extra = {"threads": torch.get_num_threads(), "dim": dim, "num_passages": num_passages}
    if measure_products:
        extra.update(products_s=times["products"],
                     efficiency=times["products"] / times["fused"])
    result = Result(
        suite="loss",
        workload=f"InfoNCE fwd+bwd, B={batch_size}, M={num_passages}, D={dim}, fp32",
        reference_s=times.get("reference"),
        fast_s=times["fused"],
        note=note,
        extra=extra,
    )
    if measure_memory:
        result.fast_peak_bytes = peak_rss_increase(lambda: fused_step(q, p))
        if reference_fits:
            result.reference_peak_bytes = peak_rss_increase(lambda: reference_step(q, p))
    return result


def run(quick: bool = False) -> list[Result]:
    if quick:
        return [bench_info_nce(1024)]
    return [bench_info_nce(4096), bench_info_nce(8192),
            bench_info_nce(16384, repeat=1, measure_products=False),
            bench_info_nce(65536, repeat=1, measure_products=False)]
