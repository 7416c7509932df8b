"""What turns token states into one embedding: pooling, optional Dense layers, normalisation.

The pooling modes compute exactly what sentence-transformers' ``Pooling`` module computes for
right- or left-padded batches, so a model read from its ``modules.json`` embeds the same here as
in ``SentenceTransformer.encode``.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["ACTIVATIONS", "Dense", "PoolingHead", "pool"]


def _first_token(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # argmax finds the first real token, which also serves left-padded batches.
    first = mask.to(torch.int).argmax(dim=1)
    return states[torch.arange(states.shape[0], device=states.device), first]


def _last_token(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    seq_len = states.shape[1]
    values, from_end = mask.flip(1).max(1)
    from_end = torch.where(values == 0, seq_len - 1, from_end)
    last = seq_len - from_end - 1
    masked = states * mask.unsqueeze(-1).to(states.dtype)
    return masked[torch.arange(states.shape[0], device=states.device), last]


def _mean(states: torch.Tensor, mask: torch.Tensor, sqrt_length: bool = False) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(states.dtype)
    counts = weights.sum(dim=1).clamp(min=1e-9)
    return (states * weights).sum(dim=1) / (counts.sqrt() if sqrt_length else counts)


def _weighted_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Position weights 1, 2, ... start at the first real token (left padding shifts them).
    positions = torch.arange(1, states.shape[1] + 1, device=states.device, dtype=states.dtype)
    first = mask.to(torch.int32).argmax(dim=1, keepdim=True)
    weights = mask.to(states.dtype) * (positions.unsqueeze(0) - first)
    total = weights.sum(dim=1, keepdim=True).clamp(min=1e-9)
    return (states * weights.unsqueeze(-1)).sum(dim=1) / total


def pool(mode: str, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One sentence-transformers pooling mode over ``states`` ``[B, T, H]`` and ``mask`` ``[B, T]``."""
    if mode == "mean":
        return _mean(states, mask)
    if mode == "mean_sqrt_len_tokens":
        return _mean(states, mask, sqrt_length=True)
    if mode == "cls":
        return _first_token(states, mask)
    if mode == "lasttoken":
        return _last_token(states, mask)
    if mode == "max":
        return states.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).max(dim=1).values
    if mode == "weightedmean":
        return _weighted_mean(states, mask)
    raise ValueError(f"unknown pooling mode {mode!r}")


#: The activations a Dense layer may name: torch.nn's element-wise activations that take no
#: arguments and hold no weights, by sentence-transformers' names for them
#: ("torch.nn.modules.activation.Tanh", also "torch.nn.Tanh"). Nothing else is ever imported,
#: so a model folder from anywhere cannot make us run other code.
ACTIVATIONS = {
    f"{prefix}.{cls.__name__}": cls
    for cls in (torch.nn.Identity, torch.nn.CELU, torch.nn.ELU, torch.nn.GELU,
                torch.nn.Hardshrink, torch.nn.Hardsigmoid, torch.nn.Hardswish, torch.nn.Hardtanh,
                torch.nn.LeakyReLU, torch.nn.LogSigmoid, torch.nn.Mish, torch.nn.ReLU,
                torch.nn.ReLU6, torch.nn.SELU, torch.nn.SiLU, torch.nn.Sigmoid, torch.nn.Softplus,
                torch.nn.Softshrink, torch.nn.Softsign, torch.nn.Tanh, torch.nn.Tanhshrink)
    for prefix in (cls.__module__, "torch.nn")
}


def activation_from_name(name: str) -> torch.nn.Module:
    """``torch.nn.modules.activation.Tanh`` -> ``Tanh()``, for the names in :data:`ACTIVATIONS`."""
    activation = ACTIVATIONS.get(name) if isinstance(name, str) else None
    if activation is None:
        allowed = sorted({cls.__name__ for cls in ACTIVATIONS.values()})
        raise ValueError(f"activation_function {name!r} is not an allowed torch.nn activation "
                         f"(torch.nn.modules.activation.<name> for <name> in {allowed}, or "
                         "torch.nn.modules.linear.Identity)")
    return activation()


class Dense(torch.nn.Module):
    """sentence-transformers' ``Dense`` module: ``activation(linear(x))``."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 activation: str = "torch.nn.modules.activation.Tanh"):
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features, bias=bias)
        self.activation_name = activation
        self.activation = activation_from_name(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))


class PoolingHead(torch.nn.Module):
    """Pooling (``pooler`` = the transformer's own pooler output), then each Dense layer in
    order, then L2 normalisation when ``normalize``."""

    def __init__(self, pooling: str, normalize: bool, dense: Sequence[Dense] = ()):
        super().__init__()
        self.pooling = pooling
        self.normalize = normalize
        self.dense = torch.nn.ModuleList(dense)

    def forward(self, outputs, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "pooler":
            pooled = getattr(outputs, "pooler_output", None)
            if pooled is None:
                raise ValueError("pooling='pooler' needs a model with a pooler layer")
        else:
            pooled = pool(self.pooling, outputs.last_hidden_state, attention_mask)
        for layer in self.dense:
            pooled = layer(pooled)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled

    @property
    def output_dim(self) -> int | None:
        return int(self.dense[-1].linear.out_features) if len(self.dense) else None
