"""Fused InfoNCE benchmark: forward + backward of ``hbt_fast.functional.info_nce`` against the
computation sentence-transformers' MultipleNegativesRankingLoss performs,
``F.cross_entropy((q @ p.T) * (1 / tau), arange(B))``, measured in one process.

``bench_info_nce(batch_size)`` runs one workload and returns a :class:`Result` with both times,
both peak memories (growth of the process's peak resident set, which sees every allocator),
the efficiency (the time of the three B x M x D products (torch.mm) over the fused time) and
``kernel_s``, the C++ kernel alone on the same inputs, so that ``fast_s - kernel_s`` is what
the Python side (checks, conversions, autograd) costs.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from hbt_fast.bench import Result
from hbt_fast.losses import info_nce
from hbt_fast.ops.backends import cpu

TEMPERATURE = 0.05


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _return_freed_memory() -> None:
    """Hands memory that earlier calls freed back to the system (glibc's malloc_trim): else a
    later call reuses those still-resident pages and its growth reads as zero."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: growth may then be under-counted, as before


def peak_rss_increase(function: Callable[[], object]) -> Optional[int]:
    """Bytes by which the process's peak resident set rose above its size before one call of
    ``function`` (Linux: resets the high-water mark through /proc/self/clear_refs); None
    where that accounting is unavailable."""
    if not sys.platform.startswith("linux"):
        return None
    _return_freed_memory()
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


def kernel_only(q: torch.Tensor, p: torch.Tensor) -> None:
    """The C++ kernel's call alone, as the CPU back-end makes it (gradients included)."""
    cpu.run(q.detach(), p.detach(), 1 / TEMPERATURE, None, None, symmetric=False,
            compute_gradients=True, block_size=None)


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


def repeats_for(seconds_per_call: float, budget_s: float = 0.6) -> int:
    """Enough calls for a stable minimum in about budget_s, between 3 and 300."""
    return int(min(300, max(3, budget_s / max(seconds_per_call, 1e-6))))


def bench_info_nce(batch_size: int, num_passages: Optional[int] = None, dim: int = 768,
                   repeat: Optional[int] = None, measure_memory: bool = True,
                   measure_products: bool = True) -> Result:
    """Time and memory of one fused InfoNCE forward + backward against the reference."""
    num_passages = num_passages or batch_size
    q, p = make_inputs(batch_size, num_passages, dim)
    fused_step(q, p)  # warm-up (loads BLAS, starts the threads)
    repeat = repeat or repeats_for(best_of_interleaved({"fused": lambda: fused_step(q, p)},
                                                       3)["fused"])
    functions = {"fused": lambda: fused_step(q, p), "kernel": lambda: kernel_only(q, p)}
    needed = reference_bytes_estimate(batch_size, num_passages)
    reference_fits = needed < 0.8 * available_bytes()
    if reference_fits:
        functions["reference"] = lambda: reference_step(q, p)
    if measure_products:
        functions["products"] = lambda: three_products(q, p)
    times = best_of_interleaved(functions, repeat)
    note = "" if reference_fits else (
        f"reference: out of memory (needs ~{needed / 2**30:.0f} GiB, "
        f"{available_bytes() / 2**30:.0f} GiB available)")
    extra = {"threads": torch.get_num_threads(), "dim": dim, "num_passages": num_passages,
             "repeat": repeat, "kernel_s": times["kernel"],
             "python_overhead_s": max(0.0, times["fused"] - times["kernel"])}
    if measure_products:
        extra.update(products_s=times["products"],
                     efficiency=times["products"] / times["fused"])
    result = Result(suite="loss",
                    workload=f"InfoNCE fwd+bwd, B={batch_size}, M={num_passages}, D={dim}, fp32",
                    reference_s=times.get("reference"), fast_s=times["fused"], note=note,
                    extra=extra)
    if measure_memory:
        result.fast_peak_bytes = peak_rss_increase(lambda: fused_step(q, p))
        if reference_fits:
            result.reference_peak_bytes = peak_rss_increase(lambda: reference_step(q, p))
    return result


# (B, D) of the full run: the study's batch (B = 100) and the common sizes at every D, large
# batches at D = 768 (the reference alone needs ~4 B^2 floats of memory).
FULL_WORKLOADS = [(32, 384), (32, 768), (100, 384), (100, 768), (100, 1024), (256, 768),
                  (512, 768), (1024, 384), (1024, 768), (1024, 1024), (2048, 768), (4096, 384),
                  (4096, 768), (4096, 1024), (8192, 768), (16384, 768), (65536, 768)]
QUICK_WORKLOADS = [(32, 768), (100, 768), (1024, 768)]


def run(quick: bool = False) -> list[Result]:
    results = []
    for batch_size, dim in QUICK_WORKLOADS if quick else FULL_WORKLOADS:
        large = batch_size >= 16384
        results.append(bench_info_nce(batch_size, dim=dim, repeat=1 if large else None,
                                      measure_products=not large))
    return results
