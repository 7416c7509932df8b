r"""InfoNCE loss with in-batch (and hard) negatives, fused so that the B x M similarity matrix
is never materialised.

Formula. Queries q [B, D] and passages p [M, D], M >= B: p[i] is the positive of q[i] and
p[B:] are extra (hard) negatives shared by every query. With s(a, b) the dot product of
L2-normalised vectors (cosine; plain dot product when ``normalize=False``), temperature tau and
logits l_ij = s(q_i, p_j) / tau,

    L_q->p = (1/B) sum_i [ log sum_{j in N(i)} exp(l_ij) - l_ii ],
    N(i)   = {i} + {j : j != i and not (query_groups[i] == passage_groups[j])}

(without group ids every j is in N(i)). ``symmetric=True`` returns (L_q->p + L_p->q) / 2, with
L_p->q the same loss over the columns of the first B passages: for passage j < B, a softmax
over the B queries, positive q_j, and q_i (i != j) left out when its group equals p_j's.

Shapes: q [B, D]; p [M, D]; query_groups int [B]; passage_groups int [M]; result 0-dim.

References: A. van den Oord, Y. Li, O. Vinyals, "Representation Learning with Contrastive
Predictive Coding" (2018), InfoNCE; M. Henderson et al., "Efficient Natural Language Response
Suggestion for Smart Reply" (2017), the multiple-negatives ranking loss that
sentence-transformers implements as ``MultipleNegativesRankingLoss`` (= this loss with
tau = 1 / scale = 0.05, cosine similarity, no groups).

Example (runnable):

    >>> import torch
    >>> import hbt_fast
    >>> loss_fn = hbt_fast.InfoNCELoss(temperature=0.05)
    >>> q = torch.randn(4, 16, requires_grad=True)
    >>> p = torch.randn(6, 16, requires_grad=True)          # 4 positives + 2 hard negatives
    >>> loss = loss_fn(q, p, torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 1, 2, 7, 8]))
    >>> loss.backward()
    >>> q.grad.shape, p.grad.shape
    (torch.Size([4, 16]), torch.Size([6, 16]))
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from hbt_fast import functional

__all__ = ["InfoNCELoss"]


class InfoNCELoss(nn.Module):
    """``loss_fn(q, p, query_groups=None, passage_groups=None)``: see the module docstring and
    :func:`hbt_fast.functional.info_nce` (which this module calls).

    Pass an ``nn.Parameter`` as ``temperature`` to learn it (it is registered with the module
    and clamped to at least ``functional.MIN_TEMPERATURE``).
    """

    def __init__(self, temperature: Union[float, torch.Tensor] = 0.05, symmetric: bool = False,
                 normalize: bool = True):
        super().__init__()
        if not isinstance(temperature, torch.Tensor) and not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.symmetric = symmetric
        self.normalize = normalize

    def forward(self, q: torch.Tensor, p: torch.Tensor,
                query_groups: Optional[torch.Tensor] = None,
                passage_groups: Optional[torch.Tensor] = None) -> torch.Tensor:
        return functional.info_nce(q, p, query_groups, passage_groups,
                                   temperature=self.temperature, symmetric=self.symmetric,
                                   normalize=self.normalize)

    def extra_repr(self) -> str:
        temperature = self.temperature
        if isinstance(temperature, torch.Tensor):
            temperature = f"learnable ({temperature.item():.4g})"
        return f"temperature={temperature}, symmetric={self.symmetric}, normalize={self.normalize}"
