"""The fused loss in plain torch, through the full [B, M] logits: the test oracle."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from hbt_fast.ops import _arguments
from hbt_fast.ops._arguments import Temperature
from hbt_fast.ops.functional import logit_scale

__all__ = ["info_nce_reference"]


def info_nce_reference(q: torch.Tensor, p: torch.Tensor,
                       query_groups: Optional[torch.Tensor] = None,
                       passage_groups: Optional[torch.Tensor] = None, *,
                       temperature: Temperature = 0.05, symmetric: bool = False,
                       normalize: bool = True) -> torch.Tensor:
    """The same loss as :func:`hbt_fast.losses.info_nce` (same arguments, same checks), computed
    with ``F.cross_entropy`` on the materialised logits (memory O(B * M)) in the inputs' dtype.
    Differentiable to any order."""
    query_groups, passage_groups, temperature, symmetric, normalize = (
        _arguments.check_loss_arguments(q, p, query_groups, passage_groups, temperature,
                                        symmetric, normalize))
    scale = logit_scale(temperature, q, q.dtype)
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
