"""The C++ kernel on CPU float32/float64 tensors, ``torch.get_num_threads()`` threads.

The kernel's plan (``_C.info_nce_block_rows``): the whole B x M block in one pass when it fits
its scratch budget (the CPU's last-level cache, within 16..64 MiB) or ``block_size >= B``, else
blocks of rows, one block x M tile at a time. Its threads are OpenMP's team, which is torch's
own where both load libgomp (one copy per process): during training they are awake after the
encoder's pass and take the loss's work at once, where a pool of its own would first wait for
them to give up the cores, which at B <= 256 cost more than the loss itself.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Optional, Union

import torch

import hbt_fast._C as _C
from hbt_fast import _openmp

logger = logging.getLogger("hbt_fast")

DTYPES = (torch.float32, torch.float64)


def _nan_result(q: torch.Tensor, p: torch.Tensor, compute_gradients: bool):
    nan = torch.full((), math.nan, dtype=q.dtype)
    if not compute_gradients:
        return nan, None, None, None
    return nan, nan.clone(), torch.full_like(q, math.nan), torch.full_like(p, math.nan)


def _array(tensor: Optional[torch.Tensor]):
    return None if tensor is None else tensor.contiguous().numpy()


@functools.lru_cache(maxsize=1)
def warn_if_threads_compete() -> None:
    """Once per process: a warning when torch's threads and the kernel's are not the same."""
    loss_runtime, torch_runtime, shared = _openmp.runtimes()
    if not shared:
        logger.warning("fused InfoNCE: %s", _openmp.describe(loss_runtime, torch_runtime, shared))


def options(scale: float, *, symmetric: bool, compute_gradients: bool,
            block_size: Optional[int]) -> "_C.InfoNceOptions":
    return _C.InfoNceOptions(scale=scale, symmetric=symmetric,
                             compute_gradients=compute_gradients,
                             num_threads=torch.get_num_threads(), block_rows=block_size or 0)


def run(q: torch.Tensor, p: torch.Tensor, scale: Union[float, torch.Tensor],
        query_groups: Optional[torch.Tensor], passage_groups: Optional[torch.Tensor], *,
        symmetric: bool, compute_gradients: bool, block_size: Optional[int]):
    scale_value = float(scale)
    if not math.isfinite(scale_value):  # a diverged learnable temperature: propagate, as torch
        return _nan_result(q, p, compute_gradients)
    q, p = q.contiguous(), p.contiguous()
    inputs = _C.InfoNceInputs(q.numpy(), p.numpy(), _array(query_groups), _array(passage_groups))
    settings = options(scale_value, symmetric=symmetric, compute_gradients=compute_gradients,
                       block_size=block_size)
    if settings.num_threads > 1:
        warn_if_threads_compete()
    out = _C.info_nce(inputs, settings)
    loss = torch.from_numpy(out.loss)
    if not compute_gradients:
        return loss, None, None, None
    return (loss, torch.from_numpy(out.grad_scale), torch.from_numpy(out.grad_q),
            torch.from_numpy(out.grad_p))
