"""Fused InfoNCE: parity with the plain-torch reference (values and gradients), both back-ends
(C++ kernel and tiled torch), edge cases, error handling, memory."""

import math

import pytest
import torch

import hbt_fast
from hbt_fast import _C
from hbt_fast.bench.loss import peak_rss_increase
from hbt_fast.functional import MIN_TEMPERATURE, info_nce, info_nce_reference
from hbt_fast.losses._fused import kernel_settings

BACKENDS = ["cpp", "torch"]


def make_batch(num_queries, num_passages, dim, dtype=torch.float64, num_groups=None, seed=0,
               spread=1.0):
    generator = torch.Generator().manual_seed(seed)
    q = (torch.randn(num_queries, dim, generator=generator, dtype=dtype) * spread)
    p = (torch.randn(num_passages, dim, generator=generator, dtype=dtype) * spread)
    if num_groups is None:
        return q.requires_grad_(), p.requires_grad_(), None, None
    query_groups = torch.randint(0, num_groups, (num_queries,), generator=generator)
    passage_groups = torch.randint(0, num_groups, (num_passages,), generator=generator)
    return q.requires_grad_(), p.requires_grad_(), query_groups, passage_groups


def loss_and_grads(function, q, p, *groups, **kwargs):
    loss = function(q, p, *groups, **kwargs)
    return (loss.detach(), *torch.autograd.grad(loss, (q, p)))


def assert_parity(q, p, query_groups, passage_groups, backend, rtol, atol, **kwargs):
    with kernel_settings(backend):
        fused = loss_and_grads(info_nce, q, p, query_groups, passage_groups, **kwargs)
    expected = loss_and_grads(info_nce_reference, q, p, query_groups, passage_groups, **kwargs)
    for name, got, want in zip(("loss", "grad_q", "grad_p"), fused, expected):
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol, msg=name)


CASES = [  # (B, M, D, groups, symmetric, temperature, normalize)
    (1, 1, 8, None, False, 0.05, True),
    (1, 4, 8, 2, True, 1.0, True),
    (7, 7, 16, None, True, 0.05, True),
    (7, 12, 16, 3, False, 0.01, False),
    (97, 97, 32, 20, True, 0.1, True),
    (97, 160, 32, 30, False, 0.05, True),
    (97, 160, 32, 30, True, 0.5, False),
    (1025, 1025, 24, None, False, 0.05, True),
    (1025, 1300, 24, 600, True, 0.02, True),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_float64_parity(backend, case):
    num_queries, num_passages, dim, groups, symmetric, temperature, normalize = case
    q, p, qg, pg = make_batch(num_queries, num_passages, dim, num_groups=groups)
    assert_parity(q, p, qg, pg, backend, 1e-9, 1e-11, temperature=temperature,
                  symmetric=symmetric, normalize=normalize)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_float32_parity(backend, case):
    num_queries, num_passages, dim, groups, symmetric, temperature, normalize = case
    q, p, qg, pg = make_batch(num_queries, num_passages, dim, torch.float32, num_groups=groups)
    assert_parity(q, p, qg, pg, backend, 2e-4, 2e-6, temperature=temperature,
                  symmetric=symmetric, normalize=normalize)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("block_rows", [1, 5, 32])
def test_blocks_of_any_height(backend, block_rows):
    q, p, qg, pg = make_batch(45, 70, 16, num_groups=10)
    with kernel_settings(block_rows=block_rows):
        assert_parity(q, p, qg, pg, backend, 1e-9, 1e-11, symmetric=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_float64(backend):
    q, p, qg, pg = make_batch(4, 6, 5, num_groups=2)
    temperature = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    with kernel_settings(backend, block_rows=3):
        for symmetric in (False, True):
            assert torch.autograd.gradcheck(
                lambda q, p, t: info_nce(q, p, qg, pg, temperature=t, symmetric=symmetric),
                (q, p, temperature))


@pytest.mark.parametrize("backend", BACKENDS)
def test_learnable_temperature_gradient(backend):
    q, p, qg, pg = make_batch(20, 30, 8, num_groups=5)
    temperature = torch.nn.Parameter(torch.tensor(0.07, dtype=torch.float64))
    with kernel_settings(backend):
        (grad,) = torch.autograd.grad(info_nce(q, p, qg, pg, temperature=temperature, symmetric=True),
                                      temperature)
    (want,) = torch.autograd.grad(
        info_nce_reference(q, p, qg, pg, temperature=temperature, symmetric=True), temperature)
    torch.testing.assert_close(grad, want, rtol=1e-9, atol=1e-12)


def test_temperature_clamped_like_clip():
    q, p, _, _ = make_batch(10, 10, 8)
    too_small = torch.nn.Parameter(torch.tensor(1e-4, dtype=torch.float64))
    loss = info_nce(q, p, temperature=too_small)
    torch.testing.assert_close(loss, info_nce_reference(q, p, temperature=MIN_TEMPERATURE))
    loss.backward()
    assert too_small.grad == 0  # held at the clamp, still finite


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stable_for_large_logits(backend, dtype):
    # temperature 0.01 on unnormalised vectors: logits in the thousands
    q, p, qg, pg = make_batch(64, 96, 32, dtype, num_groups=16, spread=3.0)
    with kernel_settings(backend):
        loss, grad_q, grad_p = loss_and_grads(info_nce, q, p, qg, pg, temperature=0.01,
                                              normalize=False, symmetric=True)
    assert all(torch.isfinite(t).all() for t in (loss, grad_q, grad_p))
    q64, p64 = q.detach().double().requires_grad_(), p.detach().double().requires_grad_()
    expected = loss_and_grads(info_nce_reference, q64, p64, qg, pg, temperature=0.01,
                              normalize=False, symmetric=True)
    # float32 similarities carry ~1e-7 relative error, amplified 100x by the temperature (the
    # float32 reference is off by 3e-5 too): compare against each tensor's largest magnitude.
    tolerance = 1e-4 if dtype == torch.float32 else 1e-10
    for got, want in zip((loss, grad_q, grad_p), expected):
        assert (got.double() - want).abs().max() <= tolerance * want.abs().max()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("symmetric", [False, True])
def test_every_negative_masked(backend, symmetric):
    q, p, _, _ = make_batch(9, 9, 8)
    same = torch.zeros(9, dtype=torch.int64)
    with kernel_settings(backend):
        loss, grad_q, grad_p = loss_and_grads(info_nce, q, p, same, same, symmetric=symmetric)
    assert loss == 0  # only the positive is left in every softmax
    assert (grad_q == 0).all() and (grad_p == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad_value", [math.nan, math.inf])
def test_non_finite_inputs_propagate(backend, bad_value):
    q, p, qg, pg = make_batch(6, 8, 4, num_groups=3)
    with torch.no_grad():
        p[7, 2] = bad_value
    with kernel_settings(backend):
        loss, grad_q, grad_p = loss_and_grads(info_nce, q, p, qg, pg, normalize=False)
    assert loss.isnan() and grad_q.isnan().all() and grad_p.isnan().all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_grad_saves_nothing(backend):
    q, p, qg, pg = make_batch(30, 40, 8, num_groups=4)
    with kernel_settings(backend), torch.no_grad():
        loss = info_nce(q, p, qg, pg, symmetric=True)
    assert loss.grad_fn is None and not loss.requires_grad
    torch.testing.assert_close(loss, info_nce_reference(q, p, qg, pg, symmetric=True).detach())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_upcast(dtype):
    q, p, qg, pg = make_batch(16, 20, 32, dtype, num_groups=4)
    loss = info_nce(q, p, qg, pg)
    assert loss.dtype == torch.float32
    grad_q, grad_p = torch.autograd.grad(loss, (q, p))
    assert grad_q.dtype == dtype and grad_p.dtype == dtype
    q32, p32 = q.detach().float().requires_grad_(), p.detach().float().requires_grad_()
    expected = loss_and_grads(info_nce_reference, q32, p32, qg, pg)
    torch.testing.assert_close(loss.detach(), expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_q.float(), expected[1], rtol=2e-2, atol=1e-3)
    torch.testing.assert_close(grad_p.float(), expected[2], rtol=2e-2, atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend):
    q, p, qg, pg = make_batch(12, 18, 16, num_groups=4)
    wide_q = torch.randn(32, 12, dtype=torch.float64)[:16].T  # [12, 16], strided
    wide_p = torch.randn(18, 32, dtype=torch.float64)[:, ::2]  # [18, 16], strided
    assert not wide_q.is_contiguous() and not wide_p.is_contiguous()
    with kernel_settings(backend):
        got = info_nce(wide_q, wide_p, qg.repeat(2)[::2], pg)
    torch.testing.assert_close(got, info_nce_reference(wide_q.contiguous(), wide_p.contiguous(),
                                                       qg.repeat(2)[::2].contiguous(), pg))


def test_thread_count_does_not_change_result():
    q, p, qg, pg = make_batch(300, 400, 16, torch.float32, num_groups=50)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = loss_and_grads(info_nce, q, p, qg, pg, symmetric=True)
    finally:
        torch.set_num_threads(threads)
    many = loss_and_grads(info_nce, q, p, qg, pg, symmetric=True)
    for a, b in zip(one, many):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_module_and_lazy_export():
    temperature = torch.nn.Parameter(torch.tensor(0.05))
    loss_fn = hbt_fast.InfoNCELoss(temperature=temperature, symmetric=True)
    assert list(loss_fn.parameters()) == [temperature]
    assert "learnable" in repr(loss_fn)
    q, p, qg, pg = make_batch(5, 7, 4, torch.float32, num_groups=2)
    torch.testing.assert_close(loss_fn(q, p, qg, pg),
                               info_nce_reference(q, p, qg, pg, temperature=temperature,
                                                  symmetric=True))
    assert hbt_fast.functional.info_nce is info_nce
    assert "loss" in hbt_fast.info()


# ---------------------------------------------------------------- errors
def test_type_errors():
    q, p, qg, pg = make_batch(4, 6, 3, torch.float32, num_groups=2)
    with pytest.raises(TypeError, match="floating-point"):
        info_nce(q.detach().long(), p)
    with pytest.raises(TypeError, match="same dtype"):
        info_nce(q, p.double())
    with pytest.raises(TypeError, match="integer group ids"):
        info_nce(q, p, qg.float(), pg)
    with pytest.raises(TypeError, match="torch.Tensor"):
        info_nce(q.tolist(), p)
    with pytest.raises(TypeError, match="single floating-point"):
        info_nce(q, p, temperature=torch.tensor([0.1, 0.2]))


def test_value_errors():
    q, p, qg, pg = make_batch(4, 6, 3, torch.float32, num_groups=2)
    cases = [
        (lambda: info_nce(q[0], p), "2-D"),
        (lambda: info_nce(q, p[:, :2]), "same dimension"),
        (lambda: info_nce(q, p[:3]), "at least one passage per query"),
        (lambda: info_nce(q[:0], p), "at least one query"),
        (lambda: info_nce(q, p, qg, None), "given together"),
        (lambda: info_nce(q, p, qg[:3], pg), r"shape \(4,\)"),
        (lambda: info_nce(q, p, qg, pg[:5]), r"shape \(6,\)"),
        (lambda: info_nce(q, p, temperature=0.0), "temperature"),
        (lambda: info_nce(q, p, temperature=math.nan), "temperature"),
        (lambda: info_nce(q, torch.empty(6, 3, device="meta")), "same device"),
        (lambda: info_nce(q, p, qg.to("meta"), pg), "embeddings are on"),
        (lambda: hbt_fast.InfoNCELoss(temperature=-1.0), "temperature"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_core_rejects_bad_arguments():
    q = torch.randn(4, 3).numpy()
    p = torch.randn(6, 3).numpy()
    groups = torch.zeros(4, dtype=torch.int64).numpy()
    calls = [
        (lambda: _C.info_nce_float32(q, p[:, :2], None, None, 20.0, False, True, 1), "dimension"),
        (lambda: _C.info_nce_float32(q, p[:3], None, None, 20.0, False, True, 1), "as many"),
        (lambda: _C.info_nce_float32(q, p, groups, groups, 20.0, False, True, 1),
         "passage_groups"),
        (lambda: _C.info_nce_float32(q, p, groups, None, 20.0, False, True, 1), "together"),
        (lambda: _C.info_nce_float32(q, p, None, None, -1.0, False, True, 1), "scale"),
        (lambda: _C.info_nce_float32(q, p, None, None, 20.0, False, True, 0), "num_threads"),
        (lambda: _C.info_nce_float32(q[:0], p, None, None, 20.0, False, True, 1), "query"),
    ]
    for call, message in calls:
        with pytest.raises(ValueError, match=message):
            call()


# ---------------------------------------------------------------- memory
@pytest.mark.parametrize("backend, max_share", [("cpp", 0.125), ("torch", 0.4)])
def test_never_materialises_batch_by_batch(backend, max_share):
    # B x M float32 logits would take 1 GiB here; the fused loss keeps a few row blocks.
    num = 16384
    q, p, _, _ = make_batch(num, num, 16, torch.float32)
    with kernel_settings(backend):
        grown = peak_rss_increase(lambda: info_nce(q, p).backward())
    if grown is None:
        pytest.skip("peak-RSS accounting needs Linux /proc")
    assert grown < max_share * num * num * 4, f"peak grew by {grown / 2**20:.0f} MiB"
