"""Every misuse of the loss's public entry points ends in one exception naming the argument:
TypeError for a wrong type (strict: a str or an int is not a bool, a bool is not a number),
ValueError for a wrong value; InfoNCELoss checks its settings at construction. Second-order
gradients are refused with a RuntimeError that says so. The C++ seam checks what it computes."""

import doctest
import math

import numpy as np
import pytest
import torch
from loss_batches import make_batch

import hbt_fast
import hbt_fast.ops.functional
import hbt_fast.losses.info_nce_loss
from hbt_fast import _C
from hbt_fast.losses import InfoNCELoss, info_nce
from hbt_fast.testing import info_nce_reference
from hbt_fast.ops.autograd import SECOND_ORDER_MESSAGE

Q, P, QG, PG = make_batch(4, 6, 3, torch.float32, num_groups=2)
ENTRY_POINTS = [info_nce, info_nce_reference]

TYPE_ERRORS = [  # (positional args, keyword args, message)
    ((Q.detach().long(), P), {}, "floating-point"),
    ((Q, P.double()), {}, "same dtype"),
    ((Q, P, QG.float(), PG), {}, "integer group ids"),
    ((Q, P, QG.bool(), PG), {}, "integer group ids"),
    ((Q, P, QG.tolist(), PG), {}, "query_groups must be a torch.Tensor"),
    ((Q.tolist(), P), {}, "q must be a torch.Tensor"),
    ((Q, P.detach().numpy()), {}, "p must be a torch.Tensor"),
    ((Q, P), {"temperature": torch.tensor([0.1, 0.2])}, "single floating-point"),
    ((Q, P), {"temperature": torch.tensor(1)}, "single floating-point"),
    ((Q, P), {"temperature": "0.05"}, "temperature must be a real number"),
    ((Q, P), {"temperature": True}, "temperature must be a real number"),
    ((Q, P), {"temperature": None}, "temperature must be a real number"),
    ((Q, P), {"symmetric": "no"}, "symmetric must be True or False, got 'no'"),
    ((Q, P), {"symmetric": 1}, "symmetric must be True or False, got 1"),
    ((Q, P), {"symmetric": None}, "symmetric must be True or False, got None"),
    ((Q, P), {"normalize": "yes"}, "normalize must be True or False, got 'yes'"),
    ((Q, P), {"normalize": 0}, "normalize must be True or False, got 0"),
]

VALUE_ERRORS = [
    ((Q[0], P), {}, "2-D"),
    ((Q, P[:, :2]), {}, "same dimension"),
    ((Q[:, :0], P[:, :0]), {}, "dimension >= 1"),
    ((Q, P[:3]), {}, "at least one passage per query"),
    ((Q[:0], P), {}, "at least one query"),
    ((Q, P, QG, None), {}, "given together"),
    ((Q, P, None, PG), {}, "given together"),
    ((Q, P, QG[:3], PG), {}, r"shape \(4,\)"),
    ((Q, P, QG, PG[:5]), {}, r"shape \(6,\)"),
    ((Q, P, QG[:, None], PG), {}, r"shape \(4,\)"),
    ((Q, P), {"temperature": 0.0}, "temperature"),
    ((Q, P), {"temperature": -1}, "temperature"),
    ((Q, P), {"temperature": math.nan}, "temperature"),
    ((Q, P), {"temperature": math.inf}, "temperature"),
    ((Q, P), {"temperature": 5e-324}, "1 / temperature finite"),
    ((Q, P), {"temperature": 1e-300}, "too small for torch.float32"),
    ((Q, torch.empty(6, 3, device="meta")), {}, "same device"),
    ((Q, P, QG.to("meta"), PG), {}, "embeddings are on"),
    ((Q, P), {"temperature": torch.tensor(0.1, device="meta")}, "temperature is on meta"),
]


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("args, kwargs, message", TYPE_ERRORS)
def test_type_errors(entry, args, kwargs, message):
    with pytest.raises(TypeError, match=message):
        entry(*args, **kwargs)


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("args, kwargs, message", VALUE_ERRORS)
def test_value_errors(entry, args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        entry(*args, **kwargs)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"backend": "gpu"}, ValueError, "backend must be one of"),
    ({"backend": 1}, TypeError, "backend must be a str"),
    ({"backend": "cuda"}, ValueError, "backend 'cuda' runs on CUDA tensors only"),
    ({"block_size": 0}, ValueError, "block_size must be an integer >= 1 or None, got"),
    ({"block_size": 2.0}, TypeError, "block_size must be an integer >= 1 or None, got 2.0"),
    ({"block_size": True}, TypeError, "block_size must be an integer >= 1 or None, got True"),
])
def test_backend_and_block_size_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        info_nce(Q, P, **kwargs)


def test_cpu_backend_refuses_other_devices():
    with pytest.raises(ValueError, match="backend 'cpu' runs on CPU tensors only"):
        info_nce(Q.to("meta"), P.to("meta"), backend="cpu")


def test_numpy_bools_and_integer_temperatures_are_accepted():
    got = info_nce(Q, P, temperature=1, symmetric=np.bool_(True), normalize=np.bool_(False))
    torch.testing.assert_close(got, info_nce_reference(Q, P, temperature=1.0, symmetric=True,
                                                       normalize=False))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"temperature": math.inf}, ValueError, "temperature must be finite"),
    ({"temperature": 0}, ValueError, "temperature must be finite and > 0"),
    ({"temperature": "0.05"}, TypeError, "temperature must be a real number"),
    ({"temperature": False}, TypeError, "temperature must be a real number"),
    ({"symmetric": "no"}, TypeError, "symmetric must be True or False"),
    ({"normalize": 1}, TypeError, "normalize must be True or False"),
    ({"backend": "fast"}, ValueError, "backend must be one of"),
    ({"block_size": -3}, ValueError, "block_size must be an integer >= 1 or None, got"),
])
def test_module_checks_settings_at_construction(kwargs, error, message):
    with pytest.raises(error, match=message):
        InfoNCELoss(**kwargs)


def test_module_and_lazy_exports():
    temperature = torch.nn.Parameter(torch.tensor(0.05))
    loss_fn = hbt_fast.InfoNCELoss(temperature=temperature, symmetric=True, block_size=2)
    assert list(loss_fn.parameters()) == [temperature]
    assert repr(loss_fn) == ("InfoNCELoss(temperature=learnable (0.05), symmetric=True, "
                             "normalize=True, block_size=2)")
    torch.testing.assert_close(loss_fn(Q, P, QG, PG),
                               info_nce_reference(Q, P, QG, PG, temperature=temperature,
                                                  symmetric=True))
    assert hbt_fast.InfoNCELoss is hbt_fast.losses.InfoNCELoss is InfoNCELoss
    assert hbt_fast.functional.info_nce is info_nce
    assert hbt_fast.functional.info_nce_reference is info_nce_reference


@pytest.mark.parametrize("module", [hbt_fast.ops.functional, hbt_fast.losses.info_nce_loss])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- second order
@pytest.mark.parametrize("backend", ["cpu", "tiled"])
@pytest.mark.parametrize("normalize", [True, False])
def test_second_order_gradients_are_refused(backend, normalize):
    q, p, qg, pg = make_batch(5, 7, 4, num_groups=2)
    loss = info_nce(q, p, qg, pg, normalize=normalize, backend=backend)
    with pytest.raises(RuntimeError, match="does not support second-order gradients"):
        torch.autograd.grad(loss, (q, p), create_graph=True)


def test_reference_is_exact_to_second_order():
    q, p, qg, pg = make_batch(4, 6, 3, num_groups=2)
    assert torch.autograd.gradgradcheck(
        lambda q, p: info_nce_reference(q, p, qg, pg, symmetric=True), (q, p))
    assert "info_nce_reference" in SECOND_ORDER_MESSAGE


def test_first_order_twice_with_retain_graph():
    q, p, _, _ = make_batch(5, 7, 4)
    loss = info_nce(q, p)
    first = torch.autograd.grad(loss, q, retain_graph=True)[0]
    second = torch.autograd.grad(2 * loss, q, retain_graph=True)[0]
    torch.testing.assert_close(second, 2 * first)
    loss.backward()
    torch.testing.assert_close(q.grad, first)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()  # the saved gradients were freed, as for any torch op


# ---------------------------------------------------------------- the C++ seam
def arrays(num_queries=4, num_passages=6, dim=3, dtype=np.float32):
    return (np.zeros((num_queries, dim), dtype), np.zeros((num_passages, dim), dtype))


@pytest.mark.parametrize("make, error, message", [
    (lambda: _C.InfoNceInputs(*arrays(dtype=np.int32)), TypeError, "float32 or float64"),
    (lambda: _C.InfoNceInputs(arrays()[0], arrays(dtype=np.float64)[1]), TypeError,
     "same dtype"),
    (lambda: _C.InfoNceInputs(arrays()[0].T, arrays()[1]), TypeError, "C-contiguous"),
    (lambda: _C.InfoNceInputs(arrays()[0][0], arrays()[1]), ValueError, "2 dimensions"),
    (lambda: _C.InfoNceInputs(arrays()[0], arrays(dim=2)[1]), ValueError, "dimension 1"),
    (lambda: _C.InfoNceInputs(*arrays(), np.zeros(3, np.int64), np.zeros(6, np.int64)),
     ValueError, "query_groups has size 3"),
])
def test_core_inputs_checked(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("inputs, options, message", [
    (arrays(num_passages=3), {}, "as many passages"),
    (arrays(num_queries=0), {}, "at least one query"),
    (arrays(dim=0), {}, "dimension >= 1"),
    (arrays(), {"scale": -1.0}, "scale"),
    (arrays(), {"scale": math.inf}, "scale"),
    (arrays(), {"num_threads": 0}, "num_threads"),
    (arrays(), {"block_rows": -1}, "block_rows"),
])
def test_core_values_checked(inputs, options, message):
    with pytest.raises(ValueError, match=message):
        _C.info_nce(_C.InfoNceInputs(*inputs), _C.InfoNceOptions(**options))


def test_core_groups_given_together():
    inputs = _C.InfoNceInputs(*arrays(), np.zeros(4, np.int64), None)
    with pytest.raises(ValueError, match="together"):
        _C.info_nce(inputs, _C.InfoNceOptions())


def test_core_outputs():
    q, p = (np.random.default_rng(0).standard_normal(shape) for shape in ((3, 2), (5, 2)))
    out = _C.info_nce(_C.InfoNceInputs(q, p), _C.InfoNceOptions(scale=2.0))
    want = info_nce_reference(torch.from_numpy(q), torch.from_numpy(p), temperature=0.5,
                              normalize=False)
    assert out.loss == pytest.approx(float(want), rel=1e-12)
    assert out.grad_q.shape == (3, 2) and out.grad_p.shape == (5, 2)
    without = _C.info_nce(_C.InfoNceInputs(q, p),
                          _C.InfoNceOptions(scale=2.0, compute_gradients=False))
    assert without.grad_q is None and without.grad_scale == 0.0
