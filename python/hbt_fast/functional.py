"""Functional forms of hbt_fast's losses.

``info_nce`` is the fused in-batch InfoNCE loss (never materialises the B x M similarities);
``info_nce_reference`` computes the same value in plain torch through the full B x M logits and
serves as the test oracle. See :mod:`hbt_fast.losses.info_nce` for the formula.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F

from hbt_fast.losses._fused import FusedInfoNCE, select_backend

__all__ = ["MIN_TEMPERATURE", "info_nce", "info_nce_reference"]

# A tensor (learnable) temperature is clamped from below here, as CLIP clamps its logit scale
# at 100: the logits stay bounded and a diverging temperature cannot produce inf or NaN.
MIN_TEMPERATURE = 0.01

Temperature = Union[float, torch.Tensor]


def _check_embeddings(q: torch.Tensor, p: torch.Tensor) -> None:
    for name, tensor in (("q", q), ("p", p)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
        if tensor.dim() != 2:
            raise ValueError(f"{name} must be 2-D [n, dim], got shape {tuple(tensor.shape)}")
    if q.dtype != p.dtype:
        raise TypeError(f"q and p must have the same dtype, got {q.dtype} and {p.dtype}")
    if q.device != p.device:
        raise ValueError(f"q and p must be on the same device, got {q.device} and {p.device}")
    if q.shape[1] != p.shape[1]:
        raise ValueError(f"q and p must have the same dimension, got {q.shape[1]} and {p.shape[1]}")
    if q.shape[0] == 0:
        raise ValueError("info_nce needs at least one query")
    if p.shape[0] < q.shape[0]:
        raise ValueError(f"p must hold at least one passage per query: got {p.shape[0]} "
                         f"passages for {q.shape[0]} queries")


def _check_groups(groups: Optional[torch.Tensor], name: str, length: int,
                  device: torch.device) -> Optional[torch.Tensor]:
    if groups is None:
        return None
    if not isinstance(groups, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(groups).__name__}")
    if groups.dtype == torch.bool or groups.is_floating_point() or groups.is_complex():
        raise TypeError(f"{name} must hold integer group ids, got {groups.dtype}")
    if groups.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {tuple(groups.shape)}")
    if groups.device != device:
        raise ValueError(f"{name} is on {groups.device} but the embeddings are on {device}")
    return groups.to(torch.int64).contiguous()


def _prepare(q, p, query_groups, passage_groups):
    """Validates the arguments; returns the group ids as contiguous int64 (or None)."""
    _check_embeddings(q, p)
    if (query_groups is None) != (passage_groups is None):
        raise ValueError("query_groups and passage_groups must be given together")
    return (_check_groups(query_groups, "query_groups", q.shape[0], q.device),
            _check_groups(passage_groups, "passage_groups", p.shape[0], q.device))


def _logit_scale(temperature: Temperature, like: torch.Tensor,
                 dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """1 / temperature as a 0-dim tensor of dtype (default like's) on like's device
    (differentiable for a tensor)."""
    dtype = dtype or like.dtype
    if isinstance(temperature, torch.Tensor):
        if temperature.numel() != 1 or not temperature.is_floating_point():
            raise TypeError("a tensor temperature must be a single floating-point value, got "
                            f"shape {tuple(temperature.shape)} and dtype {temperature.dtype}")
        if temperature.device != like.device:
            raise ValueError(f"temperature is on {temperature.device} but the embeddings are "
                             f"on {like.device}")
        return 1.0 / temperature.reshape(()).clamp(min=MIN_TEMPERATURE).to(dtype)
    temperature = float(temperature)
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    return torch.tensor(1.0 / temperature, dtype=dtype, device=like.device)


def info_nce(q: torch.Tensor, p: torch.Tensor, query_groups: Optional[torch.Tensor] = None,
             passage_groups: Optional[torch.Tensor] = None, *, temperature: Temperature = 0.05,
             symmetric: bool = False, normalize: bool = True) -> torch.Tensor:
    """In-batch InfoNCE loss, fused: the B x M similarity matrix is never materialised.

    Args:
        q: queries, [B, D], floating point.
        p: passages, [M, D] with M >= B and p's dtype and device. p[i] is the positive of
            q[i]; p[B:] are extra (hard) negatives shared by every query.
        query_groups, passage_groups: optional integer group ids, [B] and [M], given together.
            p[j] is not a negative of q[i] (it is left out of q[i]'s softmax) when their groups
            match and j != i: parallel or duplicate items are not pushed apart.
        temperature: softmax temperature tau (logits are similarity / tau). A float must be
            finite and > 0. A 0-dim tensor (e.g. an ``nn.Parameter``) is learnable and clamped
            to at least ``MIN_TEMPERATURE`` = 0.01, as CLIP clamps its logit scale at 100.
        symmetric: average the query -> passage loss with the passage -> query loss over the
            first B passages (the B x B block), as CLIP does.
        normalize: L2-normalise q and p first (cosine similarity); gradients flow through.

    Returns:
        0-dim tensor: the mean loss, in float32 for float16/bfloat16 inputs (computed in
        float32, gradients cast back), else in the inputs' dtype.

    CPU float32/float64 tensors run the C++ kernel; CUDA float32/float16/bfloat16 tensors
    run the CUDA kernel where it is built (16-bit inputs stay 16-bit, with float32
    accumulation; ``hbt_fast.info()["loss_cuda"]`` says whether it is); every other case runs
    the same algorithm in torch operations, block by block. All keep O(block * M + (B + M) * D)
    extra memory; the ``hbt_fast`` logger says at debug level which one ran. NaN or inf in q, p or the temperature makes the loss and all gradients NaN (as the
    unfused computation would), so ``torch.amp.GradScaler`` still skips such steps.

    Example:
        >>> import torch
        >>> from hbt_fast.functional import info_nce, info_nce_reference
        >>> q, p = torch.randn(8, 32, requires_grad=True), torch.randn(12, 32)
        >>> loss = info_nce(q, p, temperature=0.05)
        >>> loss.backward()
        >>> torch.allclose(loss, info_nce_reference(q, p, temperature=0.05), atol=1e-5)
        True
    """
    query_groups, passage_groups = _prepare(q, p, query_groups, passage_groups)
    backend = select_backend(q.device, q.dtype)
    half = q.dtype in (torch.float16, torch.bfloat16)
    if half and backend != "cuda":  # the CUDA kernel takes 16-bit inputs as they are
        q, p = q.float(), p.float()
    scale = _logit_scale(temperature, q, torch.float32 if half else None)
    if normalize:
        q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
    compute_gradients = torch.is_grad_enabled() and (
        q.requires_grad or p.requires_grad or scale.requires_grad)
    return FusedInfoNCE.apply(q, p, scale, query_groups, passage_groups, bool(symmetric),
                              compute_gradients, backend)


def info_nce_reference(q: torch.Tensor, p: torch.Tensor,
                       query_groups: Optional[torch.Tensor] = None,
                       passage_groups: Optional[torch.Tensor] = None, *,
                       temperature: Temperature = 0.05, symmetric: bool = False,
                       normalize: bool = True) -> torch.Tensor:
    """The same loss as :func:`info_nce` in plain torch, through the full [B, M] logits
    (memory O(B * M)); computes in the inputs' dtype. The oracle for tests and benchmarks."""
    query_groups, passage_groups = _prepare(q, p, query_groups, passage_groups)
    scale = _logit_scale(temperature, q)
    if normalize:
        q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
    num_queries = q.shape[0]
    logits = (q @ p.T) * scale
    labels = torch.arange(num_queries, device=q.device)
    if query_groups is not None:
        false_negatives = query_groups[:, None] == passage_groups[None, :]
        false_negatives[labels, labels] = False
        logits = logits.masked_fill(false_negatives, -math.inf)
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        loss = (loss + F.cross_entropy(logits[:, :num_queries].T, labels)) / 2
    return loss
