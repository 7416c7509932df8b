"""CUDA fused InfoNCE: back-end choice, info(), the _C_cuda binding's argument checks (all
runnable without a GPU), and value/gradient parity and memory on a GPU (skipped, with the
reason, where there is none or the kernel is not built). Speed is measured in
benchmarks/bench_loss_cuda.py."""

import logging
import math
import types

import pytest
import torch
import torch.nn.functional as F

import hbt_fast
from hbt_fast import _cuda
from hbt_fast.losses import info_nce
from hbt_fast.ops import backends
from hbt_fast.ops.backends import cuda as cuda_backend
from hbt_fast.ops.backends import tiled
from hbt_fast.testing import info_nce_reference


def select_backend(device, dtype, requested=None):
    return backends.select(device, dtype, requested)[0]

CUDA = torch.device("cuda", 0)


def cuda_module_or_skip():
    module, status = _cuda.load()
    if module is None:
        pytest.skip(f"hbt_fast._C_cuda unavailable: {status}")
    return module


@pytest.fixture
def fake_cuda_backend(monkeypatch):
    """A stand-in for a loaded, usable _C_cuda (no GPU needed for the dispatch logic)."""
    fake = types.SimpleNamespace(name="fake _C_cuda")
    monkeypatch.setattr(_cuda, "backend", lambda: (fake, "built for sm_90 (fake)"))
    return fake


@pytest.fixture
def no_cuda_backend(monkeypatch):
    monkeypatch.setattr(_cuda, "backend", lambda: (None, "not built: test says so"))


# ---------------------------------------------------------------- without a GPU
def test_info_reports_the_loss_backends():
    report = hbt_fast.info()
    assert set(report) == {"version", "sampler", "loss", "loss_cuda", "loss_threads"}
    assert report["loss"] == "OpenBLAS (scipy-openblas32), single-threaded inside OpenMP threads"
    assert report["loss_cuda"] == _cuda.status()


def test_status_without_a_build_is_the_build_status(monkeypatch):
    monkeypatch.setattr(_cuda, "build_status", lambda: "not built: no CUDA compiler found")
    monkeypatch.setattr(_cuda, "_loaded", None)
    assert _cuda.status() == "not built: no CUDA compiler found"
    assert _cuda.backend() == (None, "not built: no CUDA compiler found")


def test_status_of_a_loadable_build(monkeypatch):
    fake = types.SimpleNamespace(build_description=lambda: "CUDA runtime 13.0, cuBLAS 13.0")
    monkeypatch.setattr(_cuda, "build_status", lambda: "built for sm_90 with cuBLAS from X")
    monkeypatch.setattr(_cuda.importlib, "import_module", lambda name: fake)
    monkeypatch.setattr(_cuda, "_loaded", None)
    monkeypatch.setattr(_cuda, "_runtime_problem", "no CUDA-capable device is detected")
    assert _cuda.status() == ("built for sm_90 with cuBLAS from X; CUDA runtime 13.0, cuBLAS "
                              "13.0, but cannot run here: no CUDA-capable device is detected")
    assert _cuda.backend()[0] is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_tensors_use_the_kernel_when_present(fake_cuda_backend, caplog, dtype):
    with caplog.at_level(logging.DEBUG, logger="hbt_fast"):
        assert select_backend(CUDA, dtype) == "cuda"
    assert "cuda path (CUDA kernel)" in caplog.text


def test_cuda_float64_takes_the_tiled_path(fake_cuda_backend, caplog):
    with caplog.at_level(logging.DEBUG, logger="hbt_fast"):
        assert select_backend(CUDA, torch.float64) == "tiled"
    assert "does not take torch.float64" in caplog.text


def test_without_the_kernel_cuda_tensors_take_the_tiled_path(no_cuda_backend, caplog):
    with caplog.at_level(logging.DEBUG, logger="hbt_fast"):
        assert select_backend(CUDA, torch.float32) == "tiled"
    assert "tiled path (CUDA kernel unavailable: not built: test says so)" in caplog.text


def test_other_devices_take_their_paths(no_cuda_backend):
    assert select_backend(torch.device("cpu"), torch.float32) == "cpu"
    assert select_backend(torch.device("meta"), torch.float32) == "tiled"
    assert select_backend(torch.device("cpu"), torch.float32, "tiled") == "tiled"


@pytest.mark.parametrize("device, requested, message", [
    ("cpu", "cuda", "CUDA tensors only"),
    ("cuda", "cuda", "unavailable: not built: test says so"),
    ("cuda", "cpu", "CPU tensors only"),
])
def test_forced_backend_that_cannot_run(no_cuda_backend, device, requested, message):
    with pytest.raises(ValueError, match=message):
        select_backend(torch.device(device), torch.float32, requested)


def test_forced_cuda_backend_refuses_float64(fake_cuda_backend):
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        select_backend(CUDA, torch.float64, "cuda")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_reach_the_cuda_kernel_unconverted(monkeypatch, dtype):
    # The functional glue on CPU tensors, with the CUDA runner replaced by the tiled path: the
    # kernel must get 16-bit q and p and a float32 scale, and give 16-bit gradients back.
    seen = {}

    def runner(q, p, scale, *groups, **options):
        seen.update(q=q.dtype, p=p.dtype, scale=scale.dtype)
        loss, grad_scale, grad_q, grad_p = tiled.run(q.float(), p.float(), scale, *groups,
                                                     **options)
        grads = None if grad_q is None else (grad_q.to(q.dtype), grad_p.to(p.dtype))
        return (loss, grad_scale, *(grads or (None, None)))

    monkeypatch.setattr(backends, "select", lambda device, dtype, requested: ("cuda", runner))
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(9, 16, generator=generator).to(dtype).requires_grad_()
    p = torch.randn(13, 16, generator=generator).to(dtype).requires_grad_()
    temperature = torch.nn.Parameter(torch.tensor(0.07))
    loss = info_nce(q, p, temperature=temperature, symmetric=True)
    assert seen == {"q": dtype, "p": dtype, "scale": torch.float32}
    assert loss.dtype == torch.float32
    grad_q, grad_p, grad_t = torch.autograd.grad(loss, (q, p, temperature))
    assert grad_q.dtype == dtype and grad_p.dtype == dtype and grad_t.dtype == torch.float32


@pytest.mark.parametrize("change, message", [
    (dict(num_passages=3), "as many passages"),
    (dict(num_queries=0), "at least one query"),
    (dict(dim=0), "dimension"),
    (dict(block_rows=-1), "block_rows"),
    (dict(num_passages=2**31), "32-bit"),
])
def test_cuda_binding_checks_the_shape(change, message):
    module = cuda_module_or_skip()
    shape = module.InfoNceCudaShape(**{**dict(num_queries=4, num_passages=6, dim=3), **change})
    with pytest.raises(ValueError, match=message):
        module.workspace_bytes(shape)


def fake_buffers(module, shape, **change):
    fake = 1 << 20  # never dereferenced: the checks come first
    buffers = module.InfoNceCudaBuffers()
    for name in ("queries", "passages", "scale", "result", "grad_queries", "grad_passages",
                 "workspace"):
        setattr(buffers, name, fake)
    buffers.workspace_bytes = module.workspace_bytes(shape)
    for name, value in change.items():
        setattr(buffers, name, value(buffers) if callable(value) else value)
    return buffers


@pytest.mark.parametrize("change, message", [
    (dict(queries=0), "null input"),
    (dict(result=0), "scale and result"),
    (dict(query_groups=1 << 20), "together"),
    (dict(grad_passages=0), "gradient buffers"),
    (dict(workspace_bytes=lambda b: b.workspace_bytes - 1), "workspace of"),
    (dict(workspace=(1 << 20) + 8), "aligned"),
    (dict(device=-1), "device"),
])
def test_cuda_binding_checks_the_buffers(change, message):
    module = cuda_module_or_skip()
    shape = module.InfoNceCudaShape(num_queries=4, num_passages=6, dim=3)
    with pytest.raises(ValueError, match=message):
        module.info_nce(shape, fake_buffers(module, shape, **change))


def test_cuda_binding_never_reaches_a_kernel_with_host_addresses():
    module = cuda_module_or_skip()
    shape = module.InfoNceCudaShape(num_queries=4, num_passages=6, dim=3)
    problem = module.runtime_problem()
    expected = (RuntimeError, "info_nce_cuda") if problem else (ValueError, "not device memory")
    with pytest.raises(expected[0], match=expected[1]):
        module.info_nce(shape, fake_buffers(module, shape))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_workspace_is_never_batch_by_batch(dtype):
    module = cuda_module_or_skip()
    num = 65536
    shape = module.InfoNceCudaShape(num_queries=num, num_passages=num, dim=1024,
                                    dtype=getattr(module.CudaDtype, dtype), symmetric=True)
    assert module.workspace_bytes(shape) < 0.1 * num * num * 4
    small = module.InfoNceCudaShape(num_queries=1, num_passages=1, dim=1,
                                    compute_gradients=False)
    assert module.workspace_bytes(small) < 16 << 20


# ---------------------------------------------------------------- on a GPU
# benchmarks/gpu_first_run.sh runs these (and compute-sanitizer, and the benchmark) on a GPU.
def gpu_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: the CUDA kernel is compiled but cannot run")
    module, status = _cuda.backend()
    if module is None:
        pytest.skip(f"the CUDA kernel cannot run: {status}")


def make_batch(num_queries, num_passages, dim, dtype, num_groups=None, seed=0):
    """Unit-norm rows rounded to dtype (the kernel's own arithmetic is then the only source of
    error against a float64 oracle on the same rounded values, with normalize=False)."""
    generator = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(num_queries, dim, generator=generator), dim=-1)
    p = F.normalize(torch.randn(num_passages, dim, generator=generator), dim=-1)
    groups = (None, None)
    if num_groups:
        groups = (torch.randint(0, num_groups, (num_queries,), generator=generator).to(CUDA),
                  torch.randint(0, num_groups, (num_passages,), generator=generator).to(CUDA))
    q = q.to(CUDA, dtype).requires_grad_()
    p = p.to(CUDA, dtype).requires_grad_()
    return q, p, *groups


def loss_and_grads(function, q, p, *groups, temperature=0.05, **kwargs):
    """(loss, grad_q, grad_p, grad_temperature) with a learnable temperature tensor."""
    temperature = torch.tensor(temperature, dtype=torch.float64 if q.dtype == torch.float64
                               else torch.float32, device=q.device, requires_grad=True)
    loss = function(q, p, *groups, temperature=temperature, **kwargs)
    return (loss.detach(), *torch.autograd.grad(loss, (q, p, temperature)))


def oracle(q, p, *groups, **kwargs):
    """info_nce_reference in float64 on the same (rounded) inputs."""
    q64, p64 = (t.detach().double().requires_grad_() for t in (q, p))
    return loss_and_grads(info_nce_reference, q64, p64, *groups, **kwargs)


# Per-dtype relative tolerance of a gradient row: the 16-bit gradient of the logits (and the
# output) are rounded to 2^-8 (bfloat16) or 2^-11 (float16) relative to the row's size.
ROW_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 4e-3}
# The loss and d loss / d temperature are float32 sums in every dtype.
SCALAR_TOLERANCE = 1e-4


def assert_rows_close(name, got, want, rtol):
    """Every element within rtol of its own value plus its row's largest magnitude: a wrong
    row or a wrong block of rows fails even when other rows are much larger (a tolerance
    relative to the whole tensor's largest value would hide it)."""
    got, want = got.double(), want.double()
    row_scale = want.abs().amax(dim=1, keepdim=True)
    floor = 1e-3 * rtol * want.abs().max().item()  # rows whose gradient is exactly 0
    bound = rtol * (want.abs() + row_scale) + floor
    excess = (got - want).abs() - bound
    bad = (excess > 0) | ~torch.isfinite(got)
    if bad.any():
        rows = bad.any(dim=1).nonzero().flatten().tolist()
        worst = excess.flatten().argmax().item()
        raise AssertionError(
            f"{name}: {bad.sum().item()} elements in {len(rows)} rows (first {rows[:10]}) "
            f"outside rtol={rtol}; worst at {divmod(worst, got.shape[1])}: got "
            f"{got.flatten()[worst].item():.6g}, want {want.flatten()[worst].item():.6g}")


def assert_scalar_close(name, got, want, rtol=SCALAR_TOLERANCE):
    got, want = got.double().item(), want.double().item()
    assert abs(got - want) <= rtol * abs(want) + 1e-7, (name, got, want)


def assert_matches_oracle(got, want, dtype):
    loss, grad_q, grad_p, grad_temperature = got
    assert grad_q.dtype == dtype and grad_p.dtype == dtype
    assert_scalar_close("loss", loss, want[0])
    assert_rows_close("grad_q", grad_q, want[1], ROW_TOLERANCE[dtype])
    assert_rows_close("grad_p", grad_p, want[2], ROW_TOLERANCE[dtype])
    assert_scalar_close("grad_temperature", grad_temperature, want[3])


DTYPES = [torch.float32, torch.bfloat16, torch.float16]

CASES = [  # (B, M, D, groups, symmetric, temperature, block_size)
    (1, 1, 8, None, False, 0.05, None),
    (1, 4, 8, 2, True, 1.0, None),
    (7, 7, 16, None, True, 0.05, None),
    (7, 12, 16, 3, False, 0.0125, None),
    (97, 97, 32, 20, True, 0.1, None),
    (97, 160, 32, 30, False, 0.05, 32),  # 4 row blocks, the last of 1 row
    (300, 300, 64, None, True, 0.05, 128),  # symmetric over 3 row blocks
    (1025, 1025, 64, None, False, 0.05, None),
    (1025, 1300, 64, 600, True, 0.02, 256),  # rows of 2 gradient chunks, 5 row blocks
    (600, 2600, 48, 50, True, 0.03, 64),  # 16-bit rows over 3 chunks, 10 row blocks
]


def case_id(case):
    num_queries, num_passages, dim, groups, symmetric, temperature, block_size = case
    return (f"B{num_queries}-M{num_passages}-D{dim}-groups{groups}-"
            f"{'symmetric' if symmetric else 'one_way'}-t{temperature}-block{block_size}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_gpu_parity_with_reference(case, dtype):
    gpu_or_skip()
    num_queries, num_passages, dim, groups, symmetric, temperature, block_size = case
    q, p, qg, pg = make_batch(num_queries, num_passages, dim, dtype, groups)
    kwargs = dict(temperature=temperature, symmetric=symmetric, normalize=False)
    got = loss_and_grads(info_nce, q, p, qg, pg, backend="cuda", block_size=block_size,
                         **kwargs)
    assert_matches_oracle(got, oracle(q, p, qg, pg, **kwargs), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("block_size", [1, 5, 32])
def test_gpu_blocks_of_any_height(block_size, dtype):
    gpu_or_skip()
    q, p, qg, pg = make_batch(45, 70, 16, dtype, num_groups=10)
    kwargs = dict(symmetric=True, normalize=False)
    got = loss_and_grads(info_nce, q, p, qg, pg, backend="cuda", block_size=block_size,
                         **kwargs)
    assert_matches_oracle(got, oracle(q, p, qg, pg, **kwargs), dtype)


def test_gpu_normalised_inputs_and_no_grad():
    gpu_or_skip()
    q, p, qg, pg = make_batch(50, 80, 16, torch.float32, num_groups=8)
    with torch.no_grad():
        q.mul_(3.0)  # normalize=True has something to do
    got = loss_and_grads(info_nce, q, p, qg, pg, temperature=0.07, symmetric=True,
                         backend="cuda")
    assert_matches_oracle(got, oracle(q, p, qg, pg, temperature=0.07, symmetric=True),
                          torch.float32)
    with torch.no_grad():
        value = info_nce(q, p, qg, pg, symmetric=True, backend="cuda")
    assert value.grad_fn is None
    assert_scalar_close("no_grad loss", value, oracle(q, p, qg, pg, symmetric=True)[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("symmetric", [False, True])
def test_gpu_grad_temperature_of_a_peaked_softmax(dtype, symmetric):
    # s_ii = 1, s_ij = a: the positive holds all but ~1e-4 of each softmax. d loss / d scale
    # = -(1 - a) (1 - P_ii) then comes out of (P_ii - 1) * s_ii + sum_j P_ij * s_ij, a
    # cancellation that loses ~3 digits in float32 unless summed relative to the row's top.
    gpu_or_skip()
    num, a = 64, 0.3125
    q = torch.eye(num).to(CUDA, dtype).requires_grad_()
    # p_j = a * ones + (1 - a) * e_j, so q_i . p_j = a + (1 - a) [i == j], exact in every dtype.
    p = (a + (1 - a) * torch.eye(num)).to(CUDA, dtype).requires_grad_()
    kwargs = dict(temperature=0.05, symmetric=symmetric, normalize=False)
    got = loss_and_grads(info_nce, q, p, backend="cuda", **kwargs)
    want = oracle(q, p, **kwargs)
    assert_scalar_close("grad_temperature", got[3], want[3], rtol=2e-5)


NON_FINITE = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("where", ["q", "p"])
@pytest.mark.parametrize("bad_value", NON_FINITE)
def test_gpu_non_finite_inputs_make_everything_nan(dtype, where, bad_value):
    gpu_or_skip()
    q, p, qg, pg = make_batch(9, 13, 8, dtype, num_groups=3)
    with torch.no_grad():
        (q if where == "q" else p)[4 if where == "q" else 11, 2] = bad_value
    loss, grad_q, grad_p, grad_t = loss_and_grads(info_nce, q, p, qg, pg, symmetric=True,
                                                  normalize=False, backend="cuda")
    assert loss.isnan() and grad_t.isnan()
    assert grad_q.isnan().all() and grad_p.isnan().all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bad_value", NON_FINITE)
def test_gpu_non_finite_scale_makes_everything_nan(dtype, bad_value):
    # The public API clamps a learnable temperature; the kernel's own contract covers any
    # scale, so the back-end's runner is called directly.
    gpu_or_skip()
    q, p, qg, pg = make_batch(9, 13, 8, dtype, num_groups=3)
    scale = torch.tensor(bad_value, device=CUDA)
    loss, grad_scale, grad_q, grad_p = cuda_backend.run(
        q.detach(), p.detach(), scale, qg, pg, symmetric=True, compute_gradients=True,
        block_size=4)
    assert loss.isnan() and grad_scale.isnan()
    assert grad_q.isnan().all() and grad_p.isnan().all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("symmetric", [False, True])
def test_gpu_finite_inputs_whose_similarities_overflow_give_nan(dtype, symmetric):
    # One similarity, q[2] . p[5] ~ 6e38, overflows float32 (float16 inputs cannot): the row's
    # top becomes +inf and its loss term +inf, which must not come out as an inf loss.
    gpu_or_skip()
    q, p, _, _ = make_batch(6, 8, 8, dtype)
    with torch.no_grad():
        p[:, 0] = 0
        q[2, 0], p[5, 0] = 3e38, 2.0
    assert torch.isfinite(q).all() and torch.isfinite(p).all()
    loss, grad_q, grad_p, grad_t = loss_and_grads(info_nce, q, p, symmetric=symmetric,
                                                  normalize=False, backend="cuda")
    assert loss.isnan() and grad_t.isnan()
    assert grad_q.isnan().all() and grad_p.isnan().all()


@pytest.mark.parametrize("symmetric", [False, True])
def test_gpu_every_negative_masked(symmetric):
    gpu_or_skip()
    q, p, _, _ = make_batch(9, 9, 8, torch.float32)
    same = torch.zeros(9, dtype=torch.int64, device=CUDA)
    loss, grad_q, grad_p, _ = loss_and_grads(info_nce, q, p, same, same, symmetric=symmetric,
                                             backend="cuda")
    assert loss == 0 and (grad_q == 0).all() and (grad_p == 0).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gpu_runs_on_the_current_stream(dtype):
    # The inputs are written on a side stream after a ~10 ms sleep there: a kernel queued on
    # any other stream would read them before they exist (zeros), and its outputs would not
    # be ordered before the side stream's later work.
    gpu_or_skip()
    q, p, qg, pg = make_batch(300, 400, 32, dtype, num_groups=40)
    kwargs = dict(symmetric=True, normalize=False)
    want = oracle(q, p, qg, pg, **kwargs)
    side = torch.cuda.Stream()
    q_side, p_side = torch.zeros_like(q), torch.zeros_like(p)
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(20_000_000)
        q_side.copy_(q.detach())
        p_side.copy_(p.detach())
        q_side.requires_grad_()
        p_side.requires_grad_()
        got = loss_and_grads(info_nce, q_side, p_side, qg, pg, backend="cuda", block_size=64,
                             **kwargs)
        got = [t.clone() for t in got]  # still on the side stream
    torch.cuda.current_stream().wait_stream(side)
    assert_matches_oracle(got, want, dtype)


def test_gpu_column_pass_beyond_a_million_queries():
    # More query columns than column_log_kernel's capped grid has threads (4096 x 256): equal
    # similarities make every row and column term log(B), known without a reference.
    gpu_or_skip()
    num = 4096 * 256 + 1000
    q = torch.full((num, 4), 0.5, device=CUDA)  # every similarity exactly 1
    with torch.no_grad():
        loss = info_nce(q, q, symmetric=True, normalize=False, backend="cuda")
    torch.testing.assert_close(loss.double().cpu(), torch.tensor(math.log(num),
                               dtype=torch.float64), rtol=1e-6, atol=0)


def test_gpu_never_materialises_batch_by_batch():
    gpu_or_skip()
    num = 16384  # B x M float32 logits: 1 GiB
    q, p, _, _ = make_batch(num, num, 64, torch.float32)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    info_nce(q, p, backend="cuda").backward()
    torch.cuda.synchronize()
    grown = torch.cuda.max_memory_allocated() - before
    assert grown < 0.25 * num * num * 4, f"peak grew by {grown / 2**20:.0f} MiB"


def test_environment_variable_disables_the_kernel(monkeypatch):
    module = cuda_module_or_skip()
    monkeypatch.setattr(_cuda, "_runtime_problem", "")
    monkeypatch.setenv(_cuda.DISABLE_VARIABLE, "1")
    assert _cuda.backend() == (None, f"{_cuda.load()[1]}, but disabled by HBT_DISABLE_CUDA_LOSS")
    assert select_backend(CUDA, torch.float32) == "tiled"
    monkeypatch.setenv(_cuda.DISABLE_VARIABLE, "0")
    assert _cuda.backend()[0] is module


def test_unloadable_module_is_reported(monkeypatch):
    def fail(name):
        raise ImportError("libcublas.so.13: cannot open shared object file")

    monkeypatch.setattr(_cuda, "build_status", lambda: "built for sm_90 with cuBLAS from X")
    monkeypatch.setattr(_cuda.importlib, "import_module", fail)
    monkeypatch.setattr(_cuda, "_loaded", None)
    assert _cuda.status() == ("built for sm_90 with cuBLAS from X, but not loadable: "
                              "libcublas.so.13: cannot open shared object file")
    assert _cuda.backend()[0] is None
    monkeypatch.setattr(_cuda, "build_status", lambda: "not built: no CUDA compiler found")
    monkeypatch.setattr(_cuda, "_loaded", None)
    assert _cuda.status() == "not built: no CUDA compiler found"
