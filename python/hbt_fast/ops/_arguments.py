"""Argument checks of the public loss entry points. Python's share of the seam: types, dtypes
and devices (the C++ core checks the values it computes with). Each misuse raises one
exception naming the argument."""

from __future__ import annotations

import math
from typing import Optional, Union

import torch

from hbt_fast._checks import check_flag, check_integer, is_real

Temperature = Union[float, torch.Tensor]

BACKENDS = ("cpu", "cuda", "tiled")


def check_temperature(temperature: object) -> Temperature:
    """A finite positive real (bool excluded), or a one-element floating-point tensor (learnable;
    its value is clamped, not checked)."""
    if isinstance(temperature, torch.Tensor):
        if temperature.numel() != 1 or not temperature.is_floating_point():
            raise TypeError("a tensor temperature must be a single floating-point value, got "
                            f"shape {tuple(temperature.shape)} and dtype {temperature.dtype}")
        return temperature
    if not is_real(temperature):
        raise TypeError("temperature must be a real number or a floating-point tensor, got "
                        f"{type(temperature).__name__} {temperature!r}")
    value = float(temperature)
    if not (math.isfinite(value) and value > 0 and math.isfinite(1.0 / value)):
        raise ValueError(f"temperature must be finite and > 0 (with 1 / temperature finite), "
                         f"got {temperature!r}")
    return value


def check_backend(backend: object) -> Optional[str]:
    if backend is None:
        return None
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str or None, got {type(backend).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    return backend


def check_block_size(block_size: object) -> Optional[int]:
    """Query rows per block: an integer >= 1, or None (the back-end's choice)."""
    return check_integer(block_size, "block_size", optional=True, not_integer=TypeError)


def check_embeddings(q: object, p: object) -> None:
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
    if q.shape[1] == 0:
        raise ValueError("q and p must have dimension >= 1, got 0")
    if q.shape[0] == 0:
        raise ValueError("info_nce needs at least one query")
    if p.shape[0] < q.shape[0]:
        raise ValueError(f"p must hold at least one passage per query: got {p.shape[0]} "
                         f"passages for {q.shape[0]} queries")


def _check_groups(groups: object, name: str, length: int, device: torch.device):
    if not isinstance(groups, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(groups).__name__}")
    if groups.dtype == torch.bool or groups.is_floating_point() or groups.is_complex():
        raise TypeError(f"{name} must hold integer group ids, got {groups.dtype}")
    if groups.dtype == torch.uint64 and bool((groups > torch.iinfo(torch.int64).max).any()):
        raise ValueError(f"{name} holds ids >= 2**63, which int64 cannot represent")
    if groups.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {tuple(groups.shape)}")
    if groups.device != device:
        raise ValueError(f"{name} is on {groups.device} but the embeddings are on {device}")
    return groups.to(torch.int64).contiguous()


def check_groups(query_groups: object, passage_groups: object, q: torch.Tensor,
                 p: torch.Tensor):
    """The group ids as contiguous int64 tensors on the embeddings' device (or None, None)."""
    if query_groups is None and passage_groups is None:
        return None, None
    if query_groups is None or passage_groups is None:
        raise ValueError("query_groups and passage_groups must be given together")
    return (_check_groups(query_groups, "query_groups", q.shape[0], q.device),
            _check_groups(passage_groups, "passage_groups", p.shape[0], q.device))


def check_temperature_for(temperature: Temperature, like: torch.Tensor) -> None:
    """A tensor temperature on the embeddings' device; a float one whose 1 / temperature fits
    the dtype the loss is computed in (float32 for 16-bit inputs)."""
    if isinstance(temperature, torch.Tensor):
        if temperature.device != like.device:
            raise ValueError(f"temperature is on {temperature.device} but the embeddings are "
                             f"on {like.device}")
        return
    dtype = torch.float32 if like.dtype in (torch.float16, torch.bfloat16) else like.dtype
    if 1.0 / temperature > torch.finfo(dtype).max:
        raise ValueError(f"temperature {temperature!r} is too small for {dtype}: 1 / temperature "
                         f"exceeds its largest value")


def check_loss_arguments(q, p, query_groups, passage_groups, temperature, symmetric, normalize):
    """The checks info_nce and info_nce_reference share, in the order of their signature;
    returns (query_groups, passage_groups, temperature, symmetric, normalize), converted."""
    check_embeddings(q, p)
    query_groups, passage_groups = check_groups(query_groups, passage_groups, q, p)
    temperature = check_temperature(temperature)
    symmetric = check_flag(symmetric, "symmetric")
    normalize = check_flag(normalize, "normalize")
    check_temperature_for(temperature, q)
    return query_groups, passage_groups, temperature, symmetric, normalize
