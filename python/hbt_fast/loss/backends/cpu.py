"""The C++ kernel on CPU float32/float64 tensors, ``torch.get_num_threads()`` threads.

The kernel's plan (``_C.info_nce_block_rows``): the whole B x M block in one pass when it fits
its scratch budget (the CPU's last-level cache, within 16..64 MiB) or ``block_size >= B``, else
blocks of rows, one block x M tile at a time, every thread of hbt_fast's persistent pool on
every block (``_C.info_nce``).

Small multi-threaded single passes (``TORCH_PRODUCTS`` bounds B x M x D) instead run their
three products on torch's BLAS and thread pool, with the element-wise work (row statistics, loss,
d loss / d logits, in place) in ``_C.info_nce_from_similarities``: during training torch's
threads are awake (spinning) after the encoder's backward, and a second pool must wait for
them, which costs more than these products take. Measured on a 2-core EPYC at 2 threads
(B = M, D = 768): 0.049 vs 0.056 ms at B = 32, 0.30 vs 0.32 ms at B = 100, 1.6 vs 2.7 ms at
B = 256, while from B = 512 up (and at any B with one thread) the kernel's own products win.
Tiny problems (below the range) stay in the kernel, single-threaded: their products take
microseconds, and one call beats three torch calls.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch

from hbt_fast import _C

DTYPES = (torch.float32, torch.float64)

# Multiply-adds of one product (B x M x D) for which a multi-threaded single pass runs its
# products on torch's BLAS (see the module docstring).
TORCH_PRODUCTS = range(1 << 18, (1 << 26) + 1)


def _nan_result(q: torch.Tensor, p: torch.Tensor, compute_gradients: bool):
    nan = torch.full((), math.nan, dtype=q.dtype)
    if not compute_gradients:
        return nan, None, None, None
    return nan, nan.clone(), torch.full_like(q, math.nan), torch.full_like(p, math.nan)


def _array(tensor: Optional[torch.Tensor]):
    return None if tensor is None else tensor.contiguous().numpy()


def _single_pass(q: torch.Tensor, p: torch.Tensor, inputs, settings):
    sims = torch.mm(q, p.T)
    out = _C.info_nce_from_similarities(sims.numpy(), inputs.query_groups, inputs.passage_groups,
                                        settings)
    loss = torch.from_numpy(out.loss)
    if not settings.compute_gradients:
        return loss, None, None, None
    # sims now holds d loss / d sims (NaN throughout for non-finite inputs)
    return loss, torch.from_numpy(out.grad_scale), torch.mm(sims, p), torch.mm(sims.T, q)


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
    small = settings.num_threads > 1 and q.shape[0] * p.shape[0] * q.shape[1] in TORCH_PRODUCTS
    if small and _C.info_nce_block_rows(inputs, settings) >= q.shape[0]:
        return _single_pass(q, p, inputs, settings)
    out = _C.info_nce(inputs, settings)
    loss = torch.from_numpy(out.loss)
    if not compute_gradients:
        return loss, None, None, None
    return (loss, torch.from_numpy(out.grad_scale), torch.from_numpy(out.grad_q),
            torch.from_numpy(out.grad_p))
