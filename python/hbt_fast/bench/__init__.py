"""Benchmarks of each hot part against its plain reference, measured in the same process.

Each suite returns :class:`Result` rows; ``hbt-fast bench`` prints them as one table and the
pytest-benchmark suites in ``benchmarks/`` reuse the same workloads.
"""

from __future__ import annotations

import dataclasses
import time
import tracemalloc
from typing import Callable, Optional


@dataclasses.dataclass
class Result:
    suite: str
    workload: str
    reference_s: Optional[float]  # None when the reference could not run (see note)
    fast_s: float
    reference_peak_bytes: Optional[int] = None
    fast_peak_bytes: Optional[int] = None
    note: str = ""
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def speedup(self) -> Optional[float]:
        return None if self.reference_s is None else self.reference_s / self.fast_s


def best_time(function: Callable[[], object], repeat: int) -> float:
    """Minimum wall time over ``repeat`` calls (the least noisy estimate on a shared box)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def traced_peak(function: Callable[[], object]) -> int:
    """Peak bytes allocated through Python's allocators (numpy included) during one call."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
