"""Property-based tests (hypothesis) of the loss's public entry points: for any arguments,
info_nce and InfoNCELoss either raise one clear TypeError/ValueError (the same one the
reference raises) or equal info_nce_reference in value and gradients."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbt_fast.losses import MIN_TEMPERATURE, InfoNCELoss, info_nce
from hbt_fast.testing import info_nce_reference

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Values an argument might be given, good and bad.
TEMPERATURES = st.one_of(
    st.floats(min_value=1e-3, max_value=1e3),
    st.sampled_from([0.05, 1, 0.0, -0.5, math.inf, math.nan, 1e-300, True, "0.05", None]),
    st.builds(lambda t: torch.tensor(t, dtype=torch.float64), st.floats(1e-4, 10.0)))
FLAGS = st.one_of(st.booleans(), st.sampled_from(["no", 0, 1, None, np.bool_(True)]))
BACKENDS = st.sampled_from([None, "cpu", "tiled", "gpu", 3])
BLOCK_SIZES = st.sampled_from([None, 1, 2, 5, 1000, 0, -1, 2.5, True])


@st.composite
def batches(draw):
    """q [B, D], p [M, D] (sometimes ill-shaped or of another dtype), and group ids."""
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    num_queries = draw(st.integers(0, 9))
    num_passages = draw(st.integers(max(0, num_queries - 1), num_queries + 5))
    dim = draw(st.integers(1, 6))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    spread = draw(st.sampled_from([1e-3, 1.0, 10.0]))
    q = (torch.randn(num_queries, dim, generator=generator, dtype=torch.float64) * spread)
    p = (torch.randn(num_passages, dim, generator=generator, dtype=torch.float64) * spread)
    if draw(st.booleans()):
        p = p[:, : max(1, dim - draw(st.integers(0, 1)))]  # sometimes a dimension mismatch
    groups = (None, None)
    kind = draw(st.sampled_from(["none", "valid", "one", "short", "float"]))
    if kind != "none":
        num_groups = draw(st.integers(1, 4))
        query_groups = torch.randint(0, num_groups, (num_queries,), generator=generator)
        passage_groups = torch.randint(0, num_groups, (num_passages,), generator=generator)
        groups = {"valid": (query_groups, passage_groups), "one": (query_groups, None),
                  "short": (query_groups[:-1], passage_groups),
                  "float": (query_groups.double(), passage_groups)}[kind]
    return (q.to(dtype).requires_grad_(), p.to(dtype).requires_grad_(), *groups)


def outcome(function, q, p, *groups, **kwargs):
    """("raised", exception type, message) or ("value", loss, grad_q, grad_p)."""
    try:
        loss = function(q, p, *groups, **kwargs)
    except (TypeError, ValueError) as error:
        return ("raised", type(error), str(error))
    return ("value", loss.detach(), *torch.autograd.grad(loss, (q, p)))


def expected_outcome(batch, **kwargs):
    """The reference's outcome: its error, or for float32 inputs its values from the same
    inputs in float64 (float32 logits carry rounding errors ~eps x |logit| in any summation
    order, the float32 reference's included, so float32 is judged against the exact values)."""
    want = outcome(info_nce_reference, *batch, **kwargs)
    q, p = batch[:2]
    if want[0] == "value" and q.dtype == torch.float32:
        exact = [x.detach().double().requires_grad_() for x in (q, p)]
        want = outcome(info_nce_reference, *exact, *batch[2:], **kwargs)
    return want


def conditioning(batch, temperature, normalize) -> dict:
    """What bounds the rounding of any correct computation of these inputs: the largest
    |logit| = |q_i . p_j| / temperature (after the clamp and normalisation), and, with
    normalisation, the largest gradient its Jacobian (I - x x^T) / |x| can round to (the
    gradient of the normalised rows is at most ~2 x scale)."""
    q, p = (x.detach().double() for x in batch[:2])
    # A tensor (learnable) temperature is clamped; a number is used as given.
    scale = 1.0 / (max(float(temperature), MIN_TEMPERATURE) if isinstance(temperature, torch.Tensor)
                   else float(temperature))
    norms = [x.norm(dim=1) if x.numel() else torch.ones(1, dtype=torch.float64) for x in (q, p)]
    if not normalize:
        return {"logit": scale * norms[0].max().item() * norms[1].max().item(), "grad_q": 0.0, "grad_p": 0.0}
    smallest = [n[n > 0].min().item() if (n > 0).any() else 1.0 for n in norms]
    return {"logit": scale, "grad_q": 2 * scale / smallest[0], "grad_p": 2 * scale / smallest[1]}


def assert_same_outcome(got, want, dtype, bounds=None):
    """The same error, or values within what rounding allows: the logits' rounding (eps x
    |logit|, times a small constant for the dot products and sums) bounds the loss's error
    absolutely and the gradients' relative to their largest entry; normalisation adds its
    Jacobian's rounding."""
    assert got[0] == want[0], (got, want)
    if got[0] == "raised":
        assert got[1:] == want[1:]
        return
    eps = torch.finfo(dtype).eps
    base_rtol, base_atol = (1e-6, 1e-8) if dtype == torch.float64 else (1e-3, 1e-4)
    relative = base_rtol + 64 * eps * bounds["logit"]
    for name, got_value, want_value in zip(("loss", "grad_q", "grad_p"), got[1:], want[1:]):
        got_value, want_value = got_value.double(), want_value.double()
        if not torch.isfinite(want_value).all():
            torch.testing.assert_close(got_value, want_value, equal_nan=True, rtol=relative, atol=base_atol)
            continue
        size = want_value.abs().max().item() if want_value.numel() else 0.0
        error = (got_value - want_value).abs().max().item() if want_value.numel() else 0.0
        allowed = base_atol + relative * (size if name != "loss" else 1.0 + size)
        allowed += 64 * eps * bounds.get(name, 0.0)
        assert error <= allowed, f"{name}: error {error:.3g} > {allowed:.3g} (largest {size:.3g})"


@SETTINGS
@given(batch=batches(), temperature=TEMPERATURES, symmetric=FLAGS, normalize=FLAGS,
       backend=BACKENDS, block_size=BLOCK_SIZES)
def test_info_nce_raises_or_equals_reference(batch, temperature, symmetric, normalize, backend,
                                             block_size):
    q, p = batch[:2]
    kwargs = dict(temperature=temperature, symmetric=symmetric, normalize=normalize)
    got = outcome(info_nce, *batch, backend=backend, block_size=block_size, **kwargs)
    if got[0] == "raised" and ("backend" in got[2] or "block_size" in got[2]):
        valid_block_size = not isinstance(block_size, bool) and block_size in (None, 1, 2, 5, 1000)
        assert backend not in (None, "cpu", "tiled") or not valid_block_size
        return
    assert_same_outcome(got, expected_outcome(batch, **kwargs), q.dtype,
                        conditioning(batch, temperature, normalize) if got[0] == "value" else None)


@SETTINGS
@given(batch=batches(), temperature=TEMPERATURES, symmetric=FLAGS, normalize=FLAGS)
def test_module_raises_at_construction_or_equals_reference(batch, temperature, symmetric,
                                                           normalize):
    q, p = batch[:2]
    try:
        loss_fn = InfoNCELoss(temperature=temperature, symmetric=symmetric, normalize=normalize)
    except (TypeError, ValueError) as error:
        # the same check, and message, as the functional form's
        with pytest.raises(type(error)) as functional_error:
            info_nce_reference(torch.ones(1, 1), torch.ones(1, 1), temperature=temperature,
                               symmetric=symmetric, normalize=normalize)
        assert str(functional_error.value) == str(error)
        return
    kwargs = dict(temperature=temperature, symmetric=symmetric, normalize=normalize)
    got = outcome(loss_fn, *batch)
    assert_same_outcome(got, expected_outcome(batch, **kwargs), q.dtype,
                        conditioning(batch, temperature, normalize) if got[0] == "value" else None)
