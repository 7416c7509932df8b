"""The kernel's algorithm in torch operations, for every device and dtype without a kernel
(and for checking the kernels). The whole B x M block in one pass (one product for the logits,
one for each gradient) when it fits ``SCRATCH_ELEMENTS``, else blocks of rows, never thinner
than ``MIN_BLOCK_ROWS``. A fixed element budget, unlike the C++ kernel's, which sizes its
blocks by the CPU's last-level cache and the element size (``info_nce_block_rows``)."""

from __future__ import annotations

import math
from typing import Iterator, Optional, Union

import torch

# Similarities held at once: 64 MiB of float32.
SCRATCH_ELEMENTS = 1 << 24
MIN_BLOCK_ROWS = 256


def block_rows(num_queries: int, num_cols: int, block_size: Optional[int]) -> int:
    if block_size is not None:
        return max(1, min(block_size, num_queries))
    if num_queries * num_cols <= SCRATCH_ELEMENTS:
        return num_queries
    return min(num_queries, max(MIN_BLOCK_ROWS, SCRATCH_ELEMENTS // num_cols))


def _blocks(num_queries: int, num_cols: int, block_size: Optional[int]) -> Iterator[slice]:
    height = block_rows(num_queries, num_cols, block_size)
    for start in range(0, num_queries, height):
        yield slice(start, min(num_queries, start + height))


def _false_negatives(query_groups, passage_groups, rows: slice, num_cols: int):
    """[rows, num_cols] bool mask: same group as the query and not its positive."""
    if query_groups is None:
        return None
    mask = query_groups[rows, None] == passage_groups[None, :num_cols]
    positives = torch.arange(rows.start, rows.stop, device=mask.device)
    mask[positives - rows.start, positives] = False
    return mask


def _masked_sims(q, p, rows: slice, num_cols: int, query_groups, passage_groups,
                 split_at: int = 0):
    """Similarities of a row block against the first num_cols passages, and a copy with the
    false negatives at -inf. With split_at, the columns before it are a product of their own,
    bit-identical to what the column statistics computed (a BLAS may round differently for
    different shapes, and the column softmax must see the values its statistics came from)."""
    if 0 < split_at < num_cols:
        sims = torch.cat([q[rows] @ p[:split_at].T, q[rows] @ p[split_at:num_cols].T], dim=1)
    else:
        sims = q[rows] @ p[:num_cols].T
    masked = _false_negatives(query_groups, passage_groups, rows, num_cols)
    return sims, (sims if masked is None else sims.masked_fill(masked, -math.inf))


def _shift(values, top):
    """values - top where top may be -inf (a column masked so far): then 0 is subtracted."""
    return values - torch.where(torch.isinf(top), 0.0, top)


def _column_statistics(q, p, scale, query_groups, passage_groups, block_size):
    """(top, log_sum) of each column of the B x B block (the passage -> query direction): the
    column's log-sum-exp is scale * top + log_sum, as in the C++ kernel (top in similarity
    units keeps s - top exact, so large logits lose no digits)."""
    num_queries = q.shape[0]
    top = torch.full((num_queries,), -math.inf, dtype=q.dtype, device=q.device)
    total = torch.zeros_like(top)
    for rows in _blocks(num_queries, p.shape[0], block_size):
        _, sims = _masked_sims(q, p, rows, num_queries, query_groups, passage_groups)
        raised = torch.maximum(top, sims.amax(dim=0))
        total = total * torch.exp(scale * _shift(top, raised)) + torch.exp(
            scale * _shift(sims, raised)).sum(dim=0)
        top = raised
    return top, torch.log(total)


def _non_finite(q, p, scale):
    """Checked without a device synchronisation."""
    finite = torch.isfinite(q).all() & torch.isfinite(p).all()
    if isinstance(scale, torch.Tensor):
        finite &= torch.isfinite(scale)
    elif not math.isfinite(scale):
        finite &= False
    return ~finite


def run(q: torch.Tensor, p: torch.Tensor, scale: Union[float, torch.Tensor],
        query_groups: Optional[torch.Tensor], passage_groups: Optional[torch.Tensor], *,
        symmetric: bool, compute_gradients: bool, block_size: Optional[int]):
    num_queries, num_passages = q.shape[0], p.shape[0]
    if isinstance(scale, torch.Tensor):
        scale = scale.to(q.dtype)
    if symmetric:
        col_top, col_log_sum = _column_statistics(q, p, scale, query_groups, passage_groups,
                                                  block_size)
    weight = (0.5 if symmetric else 1.0) / num_queries
    loss = q.new_zeros(())
    grad_scale = q.new_zeros(())
    grad_q = torch.empty_like(q) if compute_gradients else None
    grad_p = torch.zeros_like(p) if compute_gradients else None
    for rows in _blocks(num_queries, num_passages, block_size):
        block = torch.arange(rows.stop - rows.start, device=q.device)
        positives = block + rows.start
        sims, masked_sims = _masked_sims(q, p, rows, num_passages, query_groups,
                                         passage_groups, num_queries if symmetric else 0)
        # In place where possible: block x M temporaries are what this path's memory is.
        row_top = masked_sims.amax(dim=1, keepdim=True)
        log_probs = masked_sims - row_top
        log_probs.mul_(scale)
        log_probs.sub_(torch.logsumexp(log_probs, dim=1, keepdim=True))
        loss -= weight * log_probs[block, positives].sum()
        if symmetric:
            col_log_probs = _shift(masked_sims[:, :num_queries], col_top).mul_(scale)
            col_log_probs.sub_(col_log_sum)
            loss -= weight * col_log_probs[block, positives].sum()
        if not compute_gradients:
            continue
        # d loss / d scale is taken relative to each softmax's top (the row's, the column's):
        # the same sum, since each softmax's gradient sums to zero, but without terms ~1 that
        # cancel down to its size when the softmax sits on the positive.
        grad = log_probs.exp_().mul_(weight)  # d loss / d logits
        grad[block, positives] -= weight
        if symmetric:
            col_grad = col_log_probs.exp_().mul_(weight)
            col_grad[block, positives] -= weight
            grad_scale += torch.dot(col_grad.reshape(-1), _shift(sims[:, :num_queries], col_top).reshape(-1))
        grad_scale += torch.dot(grad.reshape(-1), sims.sub_(row_top).reshape(-1))
        if symmetric:
            grad[:, :num_queries] += col_grad
        grad.mul_(scale)  # d loss / d sims
        grad_q[rows] = grad @ p
        grad_p.addmm_(grad.T, q[rows])
    non_finite = _non_finite(q, p, scale)
    loss = torch.where(non_finite, math.nan, loss)
    if not compute_gradients:
        return loss, None, None, None
    return (loss, torch.where(non_finite, math.nan, grad_scale),
            torch.where(non_finite, math.nan, grad_q), torch.where(non_finite, math.nan, grad_p))
