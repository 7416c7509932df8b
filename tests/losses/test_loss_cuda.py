"""CUDA fused InfoNCE: back-end choice, info(), the _C_cuda binding's argument checks (all
runnable without a GPU), and value/gradient parity and memory on a GPU (skipped, with the
reason, where there is none or the kernel is not built). Speed is measured in
benchmarks/bench_loss_cuda.py."""

import logging
import math
import types

import pytest
import torch

import hbt_fast
from hbt_fast import _cuda
from hbt_fast.losses import info_nce
from hbt_fast.ops import backends
from hbt_fast.testing import info_nce_reference
from hbt_fast.ops.backends import tiled


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
def gpu_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: the CUDA kernel is compiled but cannot run")
    module, status = _cuda.backend()
    if module is None:
        pytest.skip(f"the CUDA kernel cannot run: {status}")


def make_batch(num_queries, num_passages, dim, dtype, num_groups=None, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(num_queries, dim, generator=generator)
    p = torch.randn(num_passages, dim, generator=generator)
    groups = (None, None)
    if num_groups:
        groups = (torch.randint(0, num_groups, (num_queries,), generator=generator).to(CUDA),
                  torch.randint(0, num_groups, (num_passages,), generator=generator).to(CUDA))
    q = q.to(CUDA, dtype).requires_grad_()
    p = p.to(CUDA, dtype).requires_grad_()
    return q, p, *groups


def loss_and_grads(function, q, p, *groups, **kwargs):
    loss = function(q, p, *groups, **kwargs)
    return (loss.detach(), *torch.autograd.grad(loss, (q, p)))


# Largest error relative to the largest magnitude of each expected tensor.
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 5e-3}

CASES = [  # (B, M, D, groups, symmetric, temperature)
    (1, 1, 8, None, False, 0.05),
    (1, 4, 8, 2, True, 1.0),
    (7, 7, 16, None, True, 0.05),
    (7, 12, 16, 3, False, 0.01),
    (97, 97, 32, 20, True, 0.1),
    (97, 160, 32, 30, False, 0.05),
    (1025, 1025, 64, None, False, 0.05),
    (1025, 1300, 64, 600, True, 0.02),
]


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_gpu_parity_with_reference(case, dtype):
    gpu_or_skip()
    num_queries, num_passages, dim, groups, symmetric, temperature = case
    q, p, qg, pg = make_batch(num_queries, num_passages, dim, dtype, groups)
    kwargs = dict(temperature=temperature, symmetric=symmetric)
    got = loss_and_grads(info_nce, q, p, qg, pg, backend="cuda", **kwargs)
    # The oracle in float64 on the same (rounded) inputs.
    q64, p64 = q.detach().double().requires_grad_(), p.detach().double().requires_grad_()
    want = loss_and_grads(info_nce_reference, q64, p64, qg, pg, **kwargs)
    assert got[1].dtype == dtype and got[2].dtype == dtype
    for name, g, w in zip(("loss", "grad_q", "grad_p"), got, want):
        error = (g.double() - w).abs().max().item()
        assert error <= TOLERANCE[dtype] * max(w.abs().max().item(), 1e-12), (name, error)


@pytest.mark.parametrize("block_size", [1, 5, 32])
def test_gpu_blocks_of_any_height(block_size):
    gpu_or_skip()
    q, p, qg, pg = make_batch(45, 70, 16, torch.float32, num_groups=10)
    got = loss_and_grads(info_nce, q, p, qg, pg, symmetric=True, backend="cuda",
                         block_size=block_size)
    want = loss_and_grads(info_nce_reference, q, p, qg, pg, symmetric=True)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=2e-4, atol=2e-6)


def test_gpu_learnable_temperature_and_no_grad():
    gpu_or_skip()
    q, p, qg, pg = make_batch(50, 80, 16, torch.float32, num_groups=8)
    temperature = torch.nn.Parameter(torch.tensor(0.07, device=CUDA))
    (grad,) = torch.autograd.grad(info_nce(q, p, qg, pg, temperature=temperature,
                                           symmetric=True, backend="cuda"), temperature)
    with torch.no_grad():
        value = info_nce(q, p, qg, pg, symmetric=True, backend="cuda")
    (want,) = torch.autograd.grad(info_nce_reference(q, p, qg, pg, temperature=temperature,
                                                     symmetric=True), temperature)
    torch.testing.assert_close(grad, want, rtol=1e-4, atol=1e-6)
    assert value.grad_fn is None
    torch.testing.assert_close(value, info_nce_reference(q, p, qg, pg, symmetric=True).detach())


@pytest.mark.parametrize("symmetric", [False, True])
def test_gpu_masks_and_non_finite_inputs(symmetric):
    gpu_or_skip()
    q, p, _, _ = make_batch(9, 9, 8, torch.float32)
    same = torch.zeros(9, dtype=torch.int64, device=CUDA)
    loss, grad_q, grad_p = loss_and_grads(info_nce, q, p, same, same, symmetric=symmetric,
                                          backend="cuda")
    assert loss == 0 and (grad_q == 0).all() and (grad_p == 0).all()
    with torch.no_grad():
        p[3, 2] = math.nan
    loss, grad_q, grad_p = loss_and_grads(info_nce, q, p, symmetric=symmetric, normalize=False,
                                          backend="cuda")
    assert loss.isnan() and grad_q.isnan().all() and grad_p.isnan().all()


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
