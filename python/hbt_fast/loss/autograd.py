"""The autograd Function of the fused loss.

The loss is a scalar, so a back-end computes its gradients in the forward pass, while each
block of similarities is in memory, and the backward pass only scales them by the incoming
gradient: saved are the gradients, O((B + M) * D), never the B x M logits (recomputing them
in backward, as flash-attention does from its saved row log-sum-exp, would cost a fourth
B x M x D product).
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

SECOND_ORDER_MESSAGE = (
    "info_nce does not support second-order gradients (create_graph=True / double backward): "
    "its backward pass replays gradients the fused kernel computed in the forward pass. Use "
    "hbt_fast.loss.info_nce_reference, which is differentiable to any order.")


class InfoNCEFunction(torch.autograd.Function):
    """``InfoNCEFunction.apply(q, p, scale, query_groups, passage_groups, run, symmetric,
    compute_gradients, block_size)`` with ``run`` a back-end's ``run`` and ``scale`` (1 /
    temperature) a float or a 0-dim tensor. Inputs are validated by the caller."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, p: torch.Tensor, scale: Union[float, torch.Tensor],
                query_groups: Optional[torch.Tensor], passage_groups: Optional[torch.Tensor],
                run: Callable, symmetric: bool, compute_gradients: bool,
                block_size: Optional[int]) -> torch.Tensor:
        if isinstance(scale, torch.Tensor):
            scale = scale.detach()
        loss, grad_scale, grad_q, grad_p = run(
            q.detach(), p.detach(), scale, query_groups, passage_groups, symmetric=symmetric,
            compute_gradients=compute_gradients, block_size=block_size)
        ctx.gradients = (grad_q, grad_p, grad_scale) if compute_gradients else None
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        if torch.is_grad_enabled():
            raise RuntimeError(SECOND_ORDER_MESSAGE)
        if ctx.gradients is None:
            raise RuntimeError("info_nce computed no gradients: no input required grad when "
                               "the loss was computed")
        grad_q, grad_p, grad_scale = ctx.gradients
        needs_q, needs_p, needs_scale = ctx.needs_input_grad[:3]
        return (grad_q * grad_loss.to(grad_q.dtype) if needs_q else None,
                grad_p * grad_loss.to(grad_p.dtype) if needs_p else None,
                grad_scale * grad_loss if needs_scale else None,
                None, None, None, None, None, None)
