"""The autograd Function of the fused loss.

The loss is a scalar, so a back-end computes its gradients in the forward pass, while each
block of similarities is in memory, and the backward pass only scales them by the incoming
gradient: saved are the gradients, O((B + M) * D), never the B x M logits (recomputing them
in backward, as flash-attention does from its saved row log-sum-exp, would cost a fourth
B x M x D product).
"""

from __future__ import annotations

from typing import Callable, Union

import torch

SECOND_ORDER_MESSAGE = (
    "info_nce does not support second-order gradients (create_graph=True / double backward): "
    "its backward pass replays gradients the fused kernel computed in the forward pass. Use "
    "hbt_fast.testing.info_nce_reference, which is differentiable to any order.")


class InfoNCEFunction(torch.autograd.Function):
    """``InfoNCEFunction.apply(q, p, scale, compute)`` with ``scale`` (1 / temperature) a float
    or a 0-dim tensor and ``compute(q, p, scale)`` a back-end's ``run`` with the remaining
    settings bound, returning (loss, grad_scale, grad_q, grad_p). Inputs are validated by the
    caller. Four inputs, not one per setting: each costs the autograd engine time on every
    call, which at B ~ 32 is a visible share of the whole loss."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, p: torch.Tensor, scale: Union[float, torch.Tensor],
                compute: Callable) -> torch.Tensor:
        if isinstance(scale, torch.Tensor):
            scale = scale.detach()
        loss, grad_scale, grad_q, grad_p = compute(q.detach(), p.detach(), scale)
        if grad_q is not None:
            # Saved, the graph frees them after backward (unless retain_graph), so that a
            # gradient handed back unscaled becomes .grad without a copy.
            ctx.save_for_backward(grad_q, grad_p, grad_scale)
        ctx.has_gradients = grad_q is not None
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        if torch.is_grad_enabled():
            raise RuntimeError(SECOND_ORDER_MESSAGE)
        if not ctx.has_gradients:
            raise RuntimeError("info_nce computed no gradients: no input required grad when "
                               "the loss was computed")
        grad_q, grad_p, grad_scale = ctx.saved_tensors
        # loss.backward() passes 1: then the gradients are used as they are (checked on CPU
        # only, where reading the value costs no device synchronisation). Gradients for tensor
        # inputs that do not require one are dropped by autograd; a float scale takes None.
        if not (grad_loss.device.type == "cpu" and grad_loss.item() == 1.0):
            grad_q = grad_q * grad_loss.to(grad_q.dtype)
            grad_p = grad_p * grad_loss.to(grad_p.dtype)
            grad_scale = grad_scale * grad_loss
        return grad_q, grad_p, grad_scale if ctx.needs_input_grad[2] else None, None
