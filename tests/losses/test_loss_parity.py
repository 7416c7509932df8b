"""The fused loss equals the plain-torch reference, in value and gradients, on both CPU
back-ends (the C++ kernel and the tiled torch path): odd sizes 1, 7, 97, 1025, float32 and
float64, group masks, symmetric mode, extra negatives, every block height, edge values."""

import math
import os

import pytest
import torch
from loss_batches import assert_matches_reference, loss_and_grads, make_batch, run_python

from hbt_fast import _C
from hbt_fast.losses import MIN_TEMPERATURE, info_nce
from hbt_fast.testing import info_nce_reference
from hbt_fast.ops.backends import tiled

BACKENDS = ["cpu", "tiled"]

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
TOLERANCES = {torch.float64: (1e-9, 1e-11), torch.float32: (2e-4, 2e-6)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_reference(backend, case, dtype):
    num_queries, num_passages, dim, groups, symmetric, temperature, normalize = case
    q, p, qg, pg = make_batch(num_queries, num_passages, dim, dtype, num_groups=groups)
    got = loss_and_grads(info_nce, q, p, qg, pg, temperature=temperature, symmetric=symmetric,
                         normalize=normalize, backend=backend)
    want = loss_and_grads(info_nce_reference, q, p, qg, pg, temperature=temperature,
                          symmetric=symmetric, normalize=normalize)
    for got_value, want_value in zip(got, want, strict=True):
        torch.testing.assert_close(got_value, want_value, rtol=TOLERANCES[dtype][0],
                                   atol=TOLERANCES[dtype][1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("block_size", [1, 5, 32, 45, 1000])
def test_blocks_of_any_height(backend, block_size):
    q, p, qg, pg = make_batch(45, 70, 16, num_groups=10)
    got = loss_and_grads(info_nce, q, p, qg, pg, symmetric=True, backend=backend,
                         block_size=block_size)
    want = loss_and_grads(info_nce_reference, q, p, qg, pg, symmetric=True)
    for got_value, want_value in zip(got, want):
        torch.testing.assert_close(got_value, want_value, rtol=1e-9, atol=1e-11)


def test_cpu_kernel_plan_is_one_pass_when_it_fits():
    small = _C.InfoNceInputs(torch.zeros(100, 8).numpy(), torch.zeros(300, 8).numpy())
    options = _C.InfoNceOptions(num_threads=2)
    assert _C.info_nce_block_rows(small, options) == 100
    large = _C.InfoNceInputs(torch.zeros(8192, 1).numpy(), torch.zeros(65536, 1).numpy())
    rows = _C.info_nce_block_rows(large, options)
    assert 256 <= rows < 8192
    assert _C.info_nce_block_rows(small, _C.InfoNceOptions(block_rows=7)) == 7
    assert _C.info_nce_block_rows(small, _C.InfoNceOptions(block_rows=10**6)) == 100


@pytest.mark.parametrize("sizes, block_size, rows", [
    ((100, 100), None, 100),           # fits the scratch budget: one pass
    ((4096, 4096), None, 4096),
    ((8192, 65536), None, 256),        # blocks, never thinner than MIN_BLOCK_ROWS
    ((100000, 100000), None, 256),
    ((100, 100), 7, 7),
    ((100, 100), 10**6, 100),
])
def test_tiled_plan_follows_the_kernel_rule(sizes, block_size, rows):
    assert tiled.block_rows(*sizes, block_size) == rows


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("symmetric", [False, True])
def test_gradcheck_float64(backend, symmetric):
    q, p, qg, pg = make_batch(4, 6, 5, num_groups=2)
    temperature = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q, p, t: info_nce(q, p, qg, pg, temperature=t, symmetric=symmetric,
                                 backend=backend, block_size=3),
        (q, p, temperature))


@pytest.mark.parametrize("backend", BACKENDS)
def test_learnable_temperature_gradient(backend):
    q, p, qg, pg = make_batch(20, 30, 8, num_groups=5)
    temperature = torch.nn.Parameter(torch.tensor(0.07, dtype=torch.float64))
    (grad,) = torch.autograd.grad(
        info_nce(q, p, qg, pg, temperature=temperature, symmetric=True, backend=backend),
        temperature)
    (want,) = torch.autograd.grad(
        info_nce_reference(q, p, qg, pg, temperature=temperature, symmetric=True), temperature)
    torch.testing.assert_close(grad, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("num", [7, 64, 97])
def test_grad_temperature_of_a_peaked_softmax_in_float32(backend, symmetric, num):
    # s_ii = 1, s_ij = a: the positive holds all but ~1e-4 of each softmax, so d loss / d scale
    # = -(1 - a) (1 - P_ii) is a sum of terms ~1 that cancel to ~1e-4 unless each softmax's
    # terms are taken relative to its own top (the column softmax's too, when symmetric).
    a = 0.3125
    q = torch.eye(num, dtype=torch.float32).requires_grad_()
    # p_j = a * ones + (1 - a) * e_j, so q_i . p_j = a + (1 - a) [i == j], exact in float32.
    p = (a + (1 - a) * torch.eye(num, dtype=torch.float32)).requires_grad_()
    temperature = torch.nn.Parameter(torch.tensor(0.05, dtype=torch.float32))
    (got,) = torch.autograd.grad(info_nce(q, p, temperature=temperature, symmetric=symmetric,
                                          normalize=False, backend=backend), temperature)
    temperature64 = torch.nn.Parameter(torch.tensor(0.05, dtype=torch.float64))
    (want,) = torch.autograd.grad(info_nce_reference(q.double(), p.double(), temperature=temperature64,
                                                     symmetric=symmetric, normalize=False), temperature64)
    torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=0)


def test_temperature_clamped_like_clip():
    q, p, _, _ = make_batch(10, 10, 8)
    too_small = torch.nn.Parameter(torch.tensor(1e-4, dtype=torch.float64))
    loss = info_nce(q, p, temperature=too_small)
    torch.testing.assert_close(loss, info_nce_reference(q, p, temperature=MIN_TEMPERATURE))
    loss.backward()
    assert too_small.grad == 0  # held at the clamp, still finite


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("temperature", [1e-3, 0.01])
def test_stable_for_large_logits(backend, dtype, temperature):
    # small temperatures on unnormalised vectors: logits in the thousands (up to 1e5)
    q, p, qg, pg = make_batch(64, 96, 32, dtype, num_groups=16, spread=3.0)
    loss, grad_q, grad_p = loss_and_grads(info_nce, q, p, qg, pg, temperature=temperature,
                                          normalize=False, symmetric=True, backend=backend)
    assert all(torch.isfinite(t).all() for t in (loss, grad_q, grad_p))
    q64, p64 = q.detach().double().requires_grad_(), p.detach().double().requires_grad_()
    expected = loss_and_grads(info_nce_reference, q64, p64, qg, pg, temperature=temperature,
                              normalize=False, symmetric=True)
    # float32 similarities carry ~1e-7 relative error, amplified 1 / temperature times (the
    # float32 reference is off as much): compare against each tensor's largest magnitude.
    tolerance = (1e-6 / temperature) if dtype == torch.float32 else 1e-10
    for got, want in zip((loss, grad_q, grad_p), expected):
        assert (got.double() - want).abs().max() <= tolerance * want.abs().max()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [1e3, 1e30])
def test_huge_temperature_is_uniform_softmax(backend, temperature):
    q, p, _, _ = make_batch(7, 12, 4)
    loss = info_nce(q, p, temperature=temperature, backend=backend)
    torch.testing.assert_close(loss, torch.tensor(math.log(12), dtype=torch.float64),
                               rtol=1e-3, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_embeddings_normalised(backend):
    q, p, qg, pg = make_batch(7, 9, 4, spread=1e-150)
    assert_matches_reference(lambda *a, **k: info_nce(*a, backend=backend, **k), q, p, qg, pg,
                             1e-9, 1e-11)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("symmetric", [False, True])
def test_every_negative_masked(backend, symmetric):
    q, p, _, _ = make_batch(9, 9, 8)
    same = torch.zeros(9, dtype=torch.int64)
    loss, grad_q, grad_p = loss_and_grads(info_nce, q, p, same, same, symmetric=symmetric,
                                          backend=backend)
    assert loss == 0  # only the positive is left in every softmax
    assert (grad_q == 0).all() and (grad_p == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad_value", [math.nan, math.inf, -math.inf])
def test_non_finite_inputs_propagate(backend, bad_value):
    q, p, qg, pg = make_batch(6, 8, 4, num_groups=3)
    with torch.no_grad():
        p[7, 2] = bad_value
    loss, grad_q, grad_p = loss_and_grads(info_nce, q, p, qg, pg, normalize=False,
                                          backend=backend)
    assert loss.isnan() and grad_q.isnan().all() and grad_p.isnan().all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_grad_saves_nothing(backend):
    q, p, qg, pg = make_batch(30, 40, 8, num_groups=4)
    with torch.no_grad():
        loss = info_nce(q, p, qg, pg, symmetric=True, backend=backend)
    assert loss.grad_fn is None and not loss.requires_grad
    torch.testing.assert_close(loss, info_nce_reference(q, p, qg, pg, symmetric=True).detach())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
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
    _, _, qg, pg = make_batch(12, 18, 16, num_groups=4)
    wide_q = torch.randn(32, 12, dtype=torch.float64)[:16].T  # [12, 16], strided
    wide_p = torch.randn(18, 32, dtype=torch.float64)[:, ::2]  # [18, 16], strided
    assert not wide_q.is_contiguous() and not wide_p.is_contiguous()
    got = info_nce(wide_q, wide_p, qg.repeat(2)[::2], pg, backend=backend)
    torch.testing.assert_close(got, info_nce_reference(wide_q.contiguous(), wide_p.contiguous(),
                                                       qg.repeat(2)[::2].contiguous(), pg))


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("block_size", [None, 64])
def test_thread_count_does_not_change_result(block_size, symmetric):
    q, p, qg, pg = make_batch(300, 400, 64, torch.float32, num_groups=50)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = loss_and_grads(info_nce, q, p, qg, pg, symmetric=symmetric, block_size=block_size)
        torch.set_num_threads(2)
        two = loss_and_grads(info_nce, q, p, qg, pg, symmetric=symmetric, block_size=block_size)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("symmetric", [False, True])
def test_concurrent_calls_from_python_threads(symmetric):
    from concurrent.futures import ThreadPoolExecutor

    batches = [make_batch(200, 260, 32, num_groups=20, seed=seed) for seed in range(6)]
    expected = [loss_and_grads(info_nce_reference, *batch, symmetric=symmetric)
                for batch in batches]
    with ThreadPoolExecutor(3) as pool:  # each caller becomes the master of its own team
        results = list(pool.map(lambda b: loss_and_grads(info_nce, *b, symmetric=symmetric),
                                batches))
    for got, want in zip(results, expected):
        for got_value, want_value in zip(got, want):
            torch.testing.assert_close(got_value, want_value, rtol=1e-9, atol=1e-11)


FORKED_CHILD_SCRIPT = """
import os, sys
import numpy as np
from hbt_fast import _C

rng = np.random.default_rng(0)
q = rng.standard_normal((300, 256), dtype=np.float32)
p = rng.standard_normal((300, 256), dtype=np.float32)

def loss():
    options = _C.InfoNceOptions(scale=20.0, num_threads=2)
    return float(_C.info_nce(_C.InfoNceInputs(q, p, None, None), options).loss)

parent = loss()  # the parent's threads are started before the fork
pid = os.fork()
if pid == 0:
    os._exit(0 if loss() == parent else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_computes_the_same_loss():
    # libgomp's team does not survive fork(): a threaded call in the child would hang forever,
    # so the child runs the parts on its own thread (the subprocess bounds a regression).
    run_python(FORKED_CHILD_SCRIPT)


# ---------------------------------------------------------------- memory
PEAK_GROWTH_SCRIPT = """
import sys
import torch
from hbt_fast.bench.loss import peak_rss_increase
from hbt_fast.losses import info_nce

num, backend = int(sys.argv[1]), sys.argv[2]
generator = torch.Generator().manual_seed(0)
q = torch.randn(num, 16, generator=generator).requires_grad_()
p = torch.randn(num, 16, generator=generator).requires_grad_()
info_nce(q[:64], p[:64], backend=backend).backward()  # libraries loaded, threads started
print(peak_rss_increase(lambda: info_nce(q, p, backend=backend).backward()))
"""


@pytest.mark.parametrize("backend, max_share", [("cpu", 0.125), ("tiled", 0.4)])
def test_never_materialises_batch_by_batch(backend, max_share):
    # B x M float32 logits would take 1 GiB here; the fused loss keeps a few row blocks.
    # Measured in a fresh process: in one that has run other tests, memory other threads
    # take or give back meanwhile moves the peak by hundreds of MiB.
    num = 16384
    grown = run_python(PEAK_GROWTH_SCRIPT, str(num), backend, timeout=300).split()[-1]
    if grown == "None":
        pytest.skip("peak-RSS accounting needs Linux /proc")
    assert int(grown) < max_share * num * num * 4, f"peak grew by {int(grown) / 2**20:.0f} MiB"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("threads", [1, 2])  # the kernel on one thread / on a team of two
@pytest.mark.parametrize("block_size", [None, 40])
def test_every_cpu_plan_matches_reference(threads, block_size, dtype):
    q, p, qg, pg = make_batch(97, 130, 24, dtype, num_groups=25)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        got = loss_and_grads(info_nce, q, p, qg, pg, symmetric=True, backend="cpu",
                             block_size=block_size)
    finally:
        torch.set_num_threads(saved)
    want = loss_and_grads(info_nce_reference, q, p, qg, pg, symmetric=True)
    for got_value, want_value in zip(got, want, strict=True):
        torch.testing.assert_close(got_value, want_value, rtol=TOLERANCES[dtype][0],
                                   atol=TOLERANCES[dtype][1])
