"""Finite weights: a step whose loss, gradient or updated weights hold NaN or infinity stops the
run before anything is saved, and a checkpoint is *good* only when its saved weights are finite,
so the message after a failure never points at a checkpoint that could not be used."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Optional

import torch

__all__ = ["NonFiniteLossError", "check_loss", "check_parameters", "first_non_finite",
           "last_good_checkpoint", "non_finite_weights"]


class NonFiniteLossError(RuntimeError):
    """The loss, the gradient norm or an updated parameter of a step is NaN or infinite; nothing
    of that step was saved."""


def first_non_finite(named_tensors: Iterable) -> Optional[str]:
    """The name of the first ``(name, tensor)`` holding NaN or infinity, None when all are finite.

    A sum is NaN or infinite whenever one of its values is, and it is the cheapest reduction
    (on CPU a tenth of an AdamW step; a max-norm costs more than the step): every step pays one
    sum per tensor and one device sync. Only a sum that overflowed, or a non-finite value,
    needs the exact check per tensor."""
    named = [(name, tensor.detach()) for name, tensor in named_tensors if tensor.is_floating_point()]
    if not named or torch.isfinite(torch.stack([tensor.sum().float() for _, tensor in named]).sum()):
        return None
    return next((name for name, tensor in named if not torch.isfinite(tensor).all()), None)


def non_finite_weights(folder: Path) -> Optional[str]:
    """The first saved tensor (``file:name``) under ``folder`` that holds NaN or infinity, None
    when every ``*.safetensors`` file there is finite."""
    from safetensors import safe_open

    for path in sorted(Path(folder).rglob("*.safetensors")):
        with safe_open(str(path), framework="pt") as weights:
            tensors = ((name, weights.get_tensor(name)) for name in weights.keys())
            broken = first_non_finite(tensors)
        if broken is not None:
            return f"{path.relative_to(folder)}:{broken}"
    return None


def last_good_checkpoint(checkpoints) -> Optional[str]:
    """The newest checkpoint that is intact and holds finite weights (see ``damage``)."""
    return next((folder.name for folder in checkpoints.candidates() if checkpoints.damage(folder) is None), None)


def _stop(step: int, what: str, checkpoints) -> NonFiniteLossError:
    last = last_good_checkpoint(checkpoints)
    return NonFiniteLossError(f"step {step}: {what}; " + (f"the last good checkpoint is {last}" if last
                                                          else "no good checkpoint exists yet"))


def check_loss(step: int, loss: float, gradient_norm: Optional[float], checkpoints) -> None:
    """Before the update: the loss and the gradient norm (None: not checked here) are finite."""
    if not (math.isfinite(loss) and (gradient_norm is None or math.isfinite(gradient_norm))):
        raise _stop(step, f"the loss is {loss} (gradient norm {gradient_norm}); stopped before updating "
                          "the model", checkpoints)


def check_parameters(step: int, named_parameters: Iterable, checkpoints, when: str) -> None:
    """Every parameter is finite ``when`` (after the update, before a save); nothing is saved
    otherwise."""
    broken = first_non_finite(named_parameters)
    if broken is not None:
        raise _stop(step, f"parameter {broken} is not finite {when}; stopped before saving it", checkpoints)
