"""InfoNCE over in-batch negatives, fused: ``InfoNCELoss`` (module) and ``info_nce`` (function).

Formula (q [B, D], p [M, D] with M >= B, p[i] the positive of q[i], p[B:] extra negatives;
s the cosine, or the dot product with ``normalize=False``; tau the temperature):

    L = (1/B) sum_i [ log sum_{j in N(i)} exp(s(q_i, p_j) / tau) - s(q_i, p_i) / tau ],
    N(i) = {i} + {j : j != i and not (query_groups[i] == passage_groups[j])}

``symmetric=True`` averages it with the passage->query direction over the first B passages.
The full definition, references and back-ends are in :func:`info_nce`'s documentation.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from hbt_fast._checks import check_flag
from hbt_fast.ops import _arguments
from hbt_fast.ops._arguments import Temperature
from hbt_fast.ops.functional import info_nce

__all__ = ["InfoNCELoss", "info_nce"]


class InfoNCELoss(nn.Module):
    """``loss_fn(q, p, query_groups=None, passage_groups=None)``: :func:`hbt_fast.losses.info_nce`
    with the settings given here, each checked at construction.

    q [B, D], p [M, D] with M >= B (p[B:] are hard negatives), optional int group ids [B] / [M];
    returns the 0-dim mean loss. Pass an ``nn.Parameter`` as ``temperature`` to learn it (it is
    registered with the module and clamped to at least ``MIN_TEMPERATURE``).

    Example:
        >>> import torch, hbt_fast
        >>> loss_fn = hbt_fast.InfoNCELoss(temperature=0.05, symmetric=True)
        >>> q, p = torch.randn(4, 16, requires_grad=True), torch.randn(6, 16)
        >>> loss_fn(q, p, torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 1, 2, 7, 8])).ndim
        0
    """

    def __init__(self, temperature: Temperature = 0.05, symmetric: bool = False,
                 normalize: bool = True, *, backend: Optional[str] = None,
                 block_size: Optional[int] = None):
        super().__init__()
        self.temperature = _arguments.check_temperature(temperature)
        self.symmetric = check_flag(symmetric, "symmetric")
        self.normalize = check_flag(normalize, "normalize")
        self.backend = _arguments.check_backend(backend)
        self.block_size = _arguments.check_block_size(block_size)

    def forward(self, q: torch.Tensor, p: torch.Tensor,
                query_groups: Optional[torch.Tensor] = None,
                passage_groups: Optional[torch.Tensor] = None) -> torch.Tensor:
        return info_nce(q, p, query_groups, passage_groups, temperature=self.temperature,
                        symmetric=self.symmetric, normalize=self.normalize,
                        backend=self.backend, block_size=self.block_size)

    def extra_repr(self) -> str:
        temperature = self.temperature
        if isinstance(temperature, torch.Tensor):
            temperature = f"learnable ({temperature.item():.4g})"
        settings = (f"temperature={temperature}, symmetric={self.symmetric}, "
                    f"normalize={self.normalize}")
        if self.backend is not None:
            settings += f", backend={self.backend!r}"
        if self.block_size is not None:
            settings += f", block_size={self.block_size}"
        return settings
