r"""The fused InfoNCE loss, functional form.

Formula. Queries q [B, D] and passages p [M, D], M >= B: p[i] is the positive of q[i] and
p[B:] are extra (hard) negatives shared by every query. With s(a, b) the dot product of
L2-normalised vectors (cosine; the plain dot product when ``normalize=False``), temperature tau
and logits l_ij = s(q_i, p_j) / tau,

    L_q->p = (1/B) sum_i [ log sum_{j in N(i)} exp(l_ij) - l_ii ],
    N(i)   = {i} + {j : j != i and not (query_groups[i] == passage_groups[j])}

(without group ids every j is in N(i)). ``symmetric=True`` returns (L_q->p + L_p->q) / 2, with
L_p->q the same loss over the columns of the first B passages: for passage j < B a softmax over
the B queries, positive q_j, and q_i (i != j) left out when its group equals p_j's.

References: A. van den Oord, Y. Li, O. Vinyals, "Representation Learning with Contrastive
Predictive Coding" (2018), InfoNCE; M. Henderson et al., "Efficient Natural Language Response
Suggestion for Smart Reply" (2017), the multiple-negatives ranking loss that
sentence-transformers implements as ``MultipleNegativesRankingLoss`` (this loss with
tau = 1 / scale = 0.05, cosine similarity, no groups); A. Radford et al., "Learning Transferable
Visual Models From Natural Language Supervision" (2021), the symmetric form (CLIP).
"""

from __future__ import annotations

import functools
import logging
from typing import Optional, Union

import torch
import torch.nn.functional as F

from hbt_fast.ops import _arguments, backends
from hbt_fast.ops._arguments import Temperature
from hbt_fast.ops.autograd import InfoNCEFunction

__all__ = ["MIN_TEMPERATURE", "info_nce", "logit_scale"]

logger = logging.getLogger("hbt_fast")

# A tensor (learnable) temperature is clamped from below here, as CLIP clamps its logit scale
# at 100: the logits stay bounded and a diverging temperature cannot produce inf or NaN.
MIN_TEMPERATURE = 0.01

_HALF = (torch.float16, torch.bfloat16)


def logit_scale(temperature: Temperature, like: torch.Tensor,
                dtype: torch.dtype) -> Union[float, torch.Tensor]:
    """1 / temperature: a float for a float, else a 0-dim tensor of ``dtype`` (differentiable,
    the temperature clamped to at least MIN_TEMPERATURE)."""
    if isinstance(temperature, torch.Tensor):
        return 1.0 / temperature.reshape(()).clamp(min=MIN_TEMPERATURE).to(dtype)
    return 1.0 / temperature


def info_nce(q: torch.Tensor, p: torch.Tensor, query_groups: Optional[torch.Tensor] = None,
             passage_groups: Optional[torch.Tensor] = None, *, temperature: Temperature = 0.05,
             symmetric: bool = False, normalize: bool = True, backend: Optional[str] = None,
             block_size: Optional[int] = None) -> torch.Tensor:
    """In-batch InfoNCE loss, fused: the B x M similarity matrix is never held whole unless it
    fits a small scratch budget (see the module docstring for the formula).

    Args:
        q: queries, [B, D], floating point, B >= 1.
        p: passages, [M, D], M >= B, q's dtype and device. p[i] is the positive of q[i];
            p[B:] are extra (hard) negatives shared by every query.
        query_groups, passage_groups: optional integer group ids, [B] and [M], given together.
            p[j] is not a negative of q[i] (it leaves q[i]'s softmax) when their groups match
            and j != i: parallel or duplicate items are not pushed apart.
        temperature: softmax temperature tau (logits are similarity / tau). A real number must
            be finite and > 0 (a bool is not a number here). A one-element floating tensor
            (e.g. an ``nn.Parameter``) is learnable and clamped to at least ``MIN_TEMPERATURE``
            = 0.01, as CLIP clamps its logit scale at 100.
        symmetric: bool; average with the passage -> query loss over the first B passages.
        normalize: bool; L2-normalise q and p first (cosine similarity), gradients flow through.
        backend: None picks one from q's device and dtype: ``"cpu"`` (the C++ kernel, CPU
            float32/float64), ``"cuda"`` (the CUDA kernel where built, float32/float16/bfloat16)
            or ``"tiled"`` (the same algorithm in torch operations, any device). Naming one
            forces it (ValueError where it cannot run).
        block_size: query rows per block of similarities; None lets the back-end choose (the
            whole B x M in one pass when it fits its scratch budget, else blocks of rows).

    Returns:
        0-dim tensor, the mean loss: float32 for float16/bfloat16 inputs (computed in float32,
        gradients cast back), else the inputs' dtype. Extra memory O(block * M + (B + M) * D).
        NaN or inf in q, p or the temperature makes the loss and all gradients NaN (as
        unfused code would: ``torch.amp.GradScaler`` still skips such steps).
        First-order gradients only: ``create_graph=True`` raises RuntimeError (the reference
        :func:`hbt_fast.testing.info_nce_reference` is differentiable to any order).

    Example:
        >>> import torch
        >>> from hbt_fast.losses import info_nce
        >>> from hbt_fast.testing import info_nce_reference
        >>> q, p = torch.randn(8, 32, requires_grad=True), torch.randn(12, 32)
        >>> loss = info_nce(q, p, temperature=0.05)
        >>> loss.backward()
        >>> q.grad.shape
        torch.Size([8, 32])
        >>> torch.allclose(loss, info_nce_reference(q, p, temperature=0.05), atol=1e-5)
        True
    """
    query_groups, passage_groups, temperature, symmetric, normalize = (
        _arguments.check_loss_arguments(q, p, query_groups, passage_groups, temperature,
                                        symmetric, normalize))
    block_size = _arguments.check_block_size(block_size)
    name, run = backends.select(q.device, q.dtype, _arguments.check_backend(backend))
    if q.dtype in _HALF and name != "cuda":  # the CUDA kernel takes 16-bit inputs as they are
        q, p = q.float(), p.float()
    scale = logit_scale(temperature, q, torch.float32 if q.dtype in _HALF else q.dtype)
    if normalize:
        q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
    compute = functools.partial(
        run, query_groups=query_groups, passage_groups=passage_groups, symmetric=symmetric,
        compute_gradients=_needs_gradients(q, p, scale), block_size=block_size)
    return InfoNCEFunction.apply(q, p, scale, compute)


def _needs_gradients(q: torch.Tensor, p: torch.Tensor, scale: Union[float, torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and (
        q.requires_grad or p.requires_grad or getattr(scale, "requires_grad", False))
