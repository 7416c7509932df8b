"""Private machinery of the fused InfoNCE loss: the C++ entry points (CPU, and CUDA where
built), the tiled pure-torch implementation of the same algorithm (every other case), the
choice between them, and the autograd Function.

Both back-ends take already validated, normalised tensors of one floating dtype and a logit
scale (1 / temperature) as a 0-dim tensor, and return ``(loss, grad_scale, grad_q, grad_p)``:
the gradients of the loss with respect to the scale, q and p, computed in the forward pass
(the loss is a scalar, so the backward pass only multiplies them by ``grad_output``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Iterator, Optional

import torch
from torch.autograd.function import once_differentiable

from hbt_fast import _cuda

logger = logging.getLogger("hbt_fast")

# Similarities held at once by the tiled torch path: about 64 MiB of float32 per block.
TORCH_BLOCK_ELEMENTS = 1 << 24

# Input dtypes of the CUDA kernel (its _C_cuda dtype codes); all accumulate in float32.
CUDA_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}

BACKENDS = ("cpp", "cuda", "torch")

_settings = {"backend": None, "block_rows": 0}


@contextlib.contextmanager
def kernel_settings(backend: Optional[str] = None, block_rows: int = 0) -> Iterator[None]:
    """Force a back-end ("cpp", "cuda" or "torch") and/or a block height; for tests and
    benchmarks."""
    if backend not in (None, *BACKENDS):
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    saved = dict(_settings)
    _settings.update(backend=backend, block_rows=block_rows)
    try:
        yield
    finally:
        _settings.update(saved)


def select_backend(device: torch.device, dtype: torch.dtype) -> str:
    """Which implementation runs tensors of this device and dtype: "cpp" for CPU tensors,
    "cuda" for CUDA tensors of a CUDA_DTYPE_CODES dtype where _C_cuda is built and usable,
    else "torch" (the tiled path); kernel_settings can force one. Logged at debug level."""
    forced = _settings["backend"]
    if forced == "cpp" and device.type != "cpu":
        raise ValueError("the C++ back-end runs on CPU tensors only")
    if forced == "cuda":
        if device.type != "cuda":
            raise ValueError("the CUDA back-end runs on CUDA tensors only")
        module, status = _cuda.backend()
        if module is None:
            raise ValueError(f"the CUDA back-end is unavailable: {status}")
        if dtype not in CUDA_DTYPE_CODES:
            raise ValueError(f"the CUDA back-end takes float32, float16 or bfloat16, got {dtype}")
    if forced is not None:
        choice, why = forced, "forced by kernel_settings"
    elif device.type == "cpu":
        choice, why = "cpp", "CPU tensors"
    elif device.type != "cuda":
        choice, why = "torch", f"no kernel for {device.type} tensors"
    else:
        module, status = _cuda.backend()
        if module is None:
            choice, why = "torch", f"CUDA kernel unavailable: {status}"
        elif dtype not in CUDA_DTYPE_CODES:
            choice, why = "torch", f"the CUDA kernel does not take {dtype}"
        else:
            choice, why = "cuda", "CUDA kernel"
    logger.debug("fused InfoNCE on %s %s: %s path (%s)", device, dtype, choice, why)
    return choice


def _nan_result(q, p, scale, compute_gradients):
    nan = torch.full((), math.nan, dtype=q.dtype, device=q.device)
    if not compute_gradients:
        return nan, None, None, None
    return nan, nan.clone(), torch.full_like(q, math.nan), torch.full_like(p, math.nan)


def run_cpp(q, p, scale, query_groups, passage_groups, symmetric, compute_gradients):
    """The C++ kernel on contiguous CPU float32/float64 tensors (copies others cheaply)."""
    from hbt_fast import _C

    entry = _C.info_nce_float32 if q.dtype == torch.float32 else _C.info_nce_float64
    scale_value = float(scale)
    if not math.isfinite(scale_value):  # a diverged learnable temperature: propagate, as torch
        return _nan_result(q, p, scale, compute_gradients)

    def as_numpy(tensor):
        return None if tensor is None else tensor.detach().contiguous().numpy()

    loss, grad_scale, grad_q, grad_p = entry(
        as_numpy(q), as_numpy(p), as_numpy(query_groups), as_numpy(passage_groups),
        scale_value, symmetric, compute_gradients, torch.get_num_threads(),
        _settings["block_rows"])
    loss = torch.tensor(loss, dtype=q.dtype)
    if not compute_gradients:
        return loss, None, None, None
    return (loss, torch.tensor(grad_scale, dtype=q.dtype), torch.from_numpy(grad_q),
            torch.from_numpy(grad_p))


def run_cuda(q, p, scale, query_groups, passage_groups, symmetric, compute_gradients):
    """The CUDA kernel (hbt_fast._C_cuda) on CUDA float32/float16/bfloat16 tensors, queued on
    the current stream without a host synchronisation. Every buffer, workspace included, comes
    from torch's caching allocator (stream-ordered, and visible to its memory statistics).
    The loss and d loss / d scale are float32; the gradients have the inputs' dtype."""
    module, _ = _cuda.backend()
    q, p = q.detach().contiguous(), p.detach().contiguous()
    scale = scale.detach().to(torch.float32).reshape(()).contiguous()
    shape = dict(num_queries=q.shape[0], num_passages=p.shape[0], dim=q.shape[1],
                 dtype=CUDA_DTYPE_CODES[q.dtype], symmetric=symmetric,
                 compute_gradients=compute_gradients, block_rows=_settings["block_rows"])

    def address(tensor):
        return 0 if tensor is None else tensor.data_ptr()

    with torch.cuda.device(q.device):
        workspace = torch.empty(module.workspace_bytes(**shape), dtype=torch.uint8,
                                device=q.device)
        result = torch.empty(2, dtype=torch.float32, device=q.device)
        grad_q = torch.empty_like(q) if compute_gradients else None
        grad_p = torch.empty_like(p) if compute_gradients else None
        module.info_nce(
            q=q.data_ptr(), p=p.data_ptr(), query_groups=address(query_groups),
            passage_groups=address(passage_groups), scale=scale.data_ptr(),
            result=result.data_ptr(), grad_q=address(grad_q), grad_p=address(grad_p),
            workspace=workspace.data_ptr(), workspace_bytes=workspace.numel(),
            allow_tf32=torch.backends.cuda.matmul.allow_tf32, device=q.device.index,
            stream=torch.cuda.current_stream(q.device).cuda_stream, **shape)
    loss, grad_scale = result.unbind()
    if not compute_gradients:
        return loss, None, None, None
    return loss, grad_scale, grad_q, grad_p


def _false_negatives(query_groups, passage_groups, rows: slice, num_cols: int):
    """[rows, num_cols] bool mask: same group as the query and not its positive."""
    if query_groups is None:
        return None
    mask = query_groups[rows, None] == passage_groups[None, :num_cols]
    positives = torch.arange(rows.start, rows.stop, device=mask.device)
    mask[positives - rows.start, positives] = False
    return mask


def _blocks(num_queries: int, num_cols: int) -> Iterator[slice]:
    height = _settings["block_rows"] or max(1, TORCH_BLOCK_ELEMENTS // num_cols)
    for start in range(0, num_queries, height):
        yield slice(start, min(num_queries, start + height))


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


def _column_statistics(q, p, scale, query_groups, passage_groups):
    """(top, log_sum) of each column of the B x B block (the passage -> query direction): the
    column's log-sum-exp is scale * top + log_sum, as in the C++ kernel (top in similarity
    units keeps s - top exact, so large logits lose no digits)."""
    num_queries = q.shape[0]
    top = torch.full((num_queries,), -math.inf, dtype=q.dtype, device=q.device)
    total = torch.zeros_like(top)
    for rows in _blocks(num_queries, num_queries):
        _, sims = _masked_sims(q, p, rows, num_queries, query_groups, passage_groups)
        raised = torch.maximum(top, sims.amax(dim=0))
        total = total * torch.exp(scale * _shift(top, raised)) + torch.exp(
            scale * _shift(sims, raised)).sum(dim=0)
        top = raised
    return top, torch.log(total)


def run_tiled_torch(q, p, scale, query_groups, passage_groups, symmetric, compute_gradients):
    """The kernel's algorithm in torch operations, one block of query rows at a time: works on
    any device in O(block * M) memory."""
    num_queries, num_passages = q.shape[0], p.shape[0]
    scale = scale.detach().to(q.dtype)
    q, p = q.detach(), p.detach()
    if symmetric:
        col_top, col_log_sum = _column_statistics(q, p, scale, query_groups, passage_groups)
    weight = (0.5 if symmetric else 1.0) / num_queries
    loss = q.new_zeros(())
    grad_scale = q.new_zeros(())
    grad_q = torch.empty_like(q) if compute_gradients else None
    grad_p = torch.zeros_like(p) if compute_gradients else None
    for rows in _blocks(num_queries, num_passages):
        block = torch.arange(rows.stop - rows.start, device=q.device)
        positives = block + rows.start
        sims, masked_sims = _masked_sims(q, p, rows, num_passages, query_groups,
                                         passage_groups, num_queries if symmetric else 0)
        shifted = scale * (masked_sims - masked_sims.amax(dim=1, keepdim=True))
        log_probs = shifted - torch.logsumexp(shifted, dim=1, keepdim=True)
        loss -= weight * log_probs[block, positives].sum()
        if symmetric:
            col_log_probs = scale * _shift(masked_sims[:, :num_queries], col_top) - col_log_sum
            loss -= weight * col_log_probs[block, positives].sum()
        if not compute_gradients:
            continue
        grad = torch.exp(log_probs).mul_(weight)  # d loss / d logits
        grad[block, positives] -= weight
        if symmetric:
            col_grad = torch.exp(col_log_probs).mul_(weight)
            col_grad[block, positives] -= weight
            grad[:, :num_queries] += col_grad
        grad_scale += (grad * sims).sum()
        grad.mul_(scale)  # d loss / d sims
        grad_q[rows] = grad @ p
        grad_p.addmm_(grad.T, q[rows])
    # NaN/inf inputs propagate, as the unfused loss would (checked without a device sync).
    non_finite = ~(torch.isfinite(q).all() & torch.isfinite(p).all() & torch.isfinite(scale))
    loss = torch.where(non_finite, math.nan, loss)
    if not compute_gradients:
        return loss, None, None, None
    return (loss, torch.where(non_finite, math.nan, grad_scale),
            torch.where(non_finite, math.nan, grad_q), torch.where(non_finite, math.nan, grad_p))


_RUNNERS = {"cpp": run_cpp, "cuda": run_cuda, "torch": run_tiled_torch}


class FusedInfoNCE(torch.autograd.Function):
    """loss = FusedInfoNCE.apply(q, p, scale, query_groups, passage_groups, symmetric,
    compute_gradients[, backend]). Saves the gradients (O((B + M) * D)), never the B x M
    logits. backend (see select_backend) is chosen from q when not given."""

    @staticmethod
    def forward(ctx, q, p, scale, query_groups, passage_groups, symmetric, compute_gradients,
                backend=None):
        run = _RUNNERS[backend or select_backend(q.device, q.dtype)]
        loss, grad_scale, grad_q, grad_p = run(q, p, scale, query_groups, passage_groups,
                                               symmetric, compute_gradients)
        if compute_gradients:
            ctx.save_for_backward(grad_q, grad_p, grad_scale.to(scale.dtype))
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        grad_q, grad_p, grad_scale = ctx.saved_tensors
        needs = ctx.needs_input_grad
        return (grad_q * grad_loss if needs[0] else None,
                grad_p * grad_loss if needs[1] else None,
                grad_scale * grad_loss if needs[2] else None,
                None, None, None, None, None)
