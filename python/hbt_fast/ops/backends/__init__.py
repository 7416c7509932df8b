"""The fused loss's back-ends, each a module with one ``run(q, p, scale, query_groups,
passage_groups, *, symmetric, compute_gradients, block_size)`` returning ``(loss, grad_scale,
grad_q, grad_p)`` (the last three None without gradients). Inputs arrive validated, detached
and normalised; ``scale`` is 1 / temperature, a float or a 0-dim tensor; ``block_size`` is
the query rows per block, or None for the back-end's own choice. No back-end reads any
module-level setting: everything it needs is an argument.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Tuple

import torch

from hbt_fast import _cuda
from hbt_fast.ops.backends import cpu, cuda, tiled

logger = logging.getLogger("hbt_fast")

_RUN = {"cpu": cpu.run, "cuda": cuda.run, "tiled": tiled.run}


def _forced(name: str, device: torch.device, dtype: torch.dtype) -> str:
    if name == "cpu":
        if device.type != "cpu":
            raise ValueError(f"backend 'cpu' runs on CPU tensors only, got {device}")
        if dtype not in cpu.DTYPES:
            raise ValueError(f"backend 'cpu' takes float32 or float64 (16-bit inputs are "
                             f"upcast), got {dtype}")
    elif name == "cuda":
        if device.type != "cuda":
            raise ValueError(f"backend 'cuda' runs on CUDA tensors only, got {device}")
        module, status = _cuda.backend()
        if module is None:
            raise ValueError(f"backend 'cuda' is unavailable: {status}")
        if dtype not in cuda.DTYPES:
            raise ValueError(f"backend 'cuda' takes float32, float16 or bfloat16, got {dtype}")
    return "forced by the backend argument"


def _automatic(device: torch.device, dtype: torch.dtype) -> Tuple[str, str]:
    if device.type == "cpu":
        return "cpu", "CPU tensors"
    if device.type != "cuda":
        return "tiled", f"no kernel for {device.type} tensors"
    module, status = _cuda.backend()
    if module is None:
        return "tiled", f"CUDA kernel unavailable: {status}"
    if dtype not in cuda.DTYPES:
        return "tiled", f"the CUDA kernel does not take {dtype}"
    return "cuda", "CUDA kernel"


def select(device: torch.device, dtype: torch.dtype,
           requested: Optional[str] = None) -> Tuple[str, Callable]:
    """(name, run) of the back-end for tensors of this device and dtype: ``requested`` when
    given (ValueError where it cannot run), else "cpu" for CPU tensors, "cuda" for CUDA tensors
    the CUDA kernel takes where it is built and usable, else "tiled". Logged at debug level."""
    if requested is not None:
        name, why = requested, _forced(requested, device, dtype)
    else:
        name, why = _automatic(device, dtype)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("fused InfoNCE on %s %s: %s path (%s)", device, dtype, name, why)
    return name, _RUN[name]
