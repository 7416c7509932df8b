"""Whether the fused loss's C++ threads are torch's own. They are OpenMP's team, and torch's CPU
wheels and a GCC build of hbt_fast both load ``libgomp.so.1``, one copy per process: then one
set of threads serves both. A torch bringing another runtime (a renamed libgomp, Intel's
libiomp5) or a clang build with libomp makes two sets that compete for the cores, and small
batches lose their speed-up. (Other packages' private copies, such as scikit-learn's, do not
matter: neither torch nor the loss runs on them.)"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path
from typing import Optional

_PROBE = "omp_get_thread_num"  # an OpenMP entry point every runtime exports


def _probe_address(library: str) -> Optional[int]:
    """Where ``omp_get_thread_num`` resolves for this (already loaded) library: the runtime
    it is bound to. None if it is bound to none."""
    try:
        return ctypes.cast(getattr(ctypes.CDLL(library), _PROBE), ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None


def file_containing(address: int, maps_text: str) -> Optional[str]:
    """The file mapped at ``address`` in a /proc/<pid>/maps text, or None."""
    for line in maps_text.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6:
            start, end = (int(bound, 16) for bound in fields[0].split("-"))
            if start <= address < end:
                return fields[5].strip()
    return None


def _runtime_name(address: Optional[int], maps_text: Optional[str]) -> Optional[str]:
    if address is None:
        return None
    path = file_containing(address, maps_text) if maps_text is not None else None
    return Path(path).name if path else f"runtime at {address:#x}"


@functools.lru_cache(maxsize=1)
def runtimes() -> tuple[Optional[str], Optional[str], bool]:
    """(the loss's runtime, torch's runtime, whether they are one), as file names."""
    import torch

    import hbt_fast._C as _C

    ours = _probe_address(_C.__file__)
    theirs = _probe_address(os.path.join(os.path.dirname(torch.__file__), "lib",
                                         "libtorch_cpu.so"))
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        maps = None
    return (_runtime_name(ours, maps), _runtime_name(theirs, maps),
            ours is not None and ours == theirs)


def describe(loss_runtime: Optional[str], torch_runtime: Optional[str], shared: bool) -> str:
    """One line for ``hbt_fast.info()`` and ``hbt-fast bench``."""
    if shared:
        return f"OpenMP, torch's own threads ({loss_runtime})"
    return (f"OpenMP ({loss_runtime or 'runtime not found'}), not torch's "
            f"({torch_runtime or 'no OpenMP runtime found'}): the two sets of threads compete "
            "for the cores and small batches are slower")
