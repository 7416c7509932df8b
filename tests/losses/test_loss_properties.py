"""Property-based tests (hypothesis) of the loss's public entry points: for any arguments,
info_nce and InfoNCELoss either raise one clear TypeError/ValueError (the same one the
reference raises) or equal info_nce_reference in value and gradients."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbt_fast.losses import InfoNCELoss, info_nce
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


def assert_same_outcome(got, want, dtype):
    assert got[0] == want[0], (got, want)
    if got[0] == "raised":
        assert got[1:] == want[1:]
        return
    tolerance = dict(rtol=1e-6, atol=1e-8) if dtype == torch.float64 else dict(rtol=1e-3,
                                                                               atol=1e-4)
    for got_value, want_value in zip(got[1:], want[1:]):
        torch.testing.assert_close(got_value, want_value, equal_nan=True, **tolerance)


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
    assert_same_outcome(got, outcome(info_nce_reference, *batch, **kwargs), q.dtype)


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
    assert_same_outcome(outcome(loss_fn, *batch), outcome(info_nce_reference, *batch, **kwargs),
                        q.dtype)
