"""CUDA fused InfoNCE: back-end choice, info(), the _C_cuda binding's argument checks (all
runnable without a GPU), and value/gradient parity, memory and speed on a GPU (skipped, with
the reason, where there is none or the kernel is not built)."""

import logging
import math
import time
import types

import pytest
import torch
import torch.nn.functional as F

import hbt_fast
from hbt_fast import _C, _cuda
from hbt_fast.functional import info_nce, info_nce_reference
from hbt_fast.losses import _fused
from hbt_fast.losses._fused import kernel_settings, select_backend

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
def test_info_reports_the_cuda_backend():
    report = hbt_fast.info()
    assert "loss_cuda_build" not in report
    status = report["loss_cuda"]
    build = _C.build_info()["loss_cuda_build"]
    assert status.startswith(build)
    assert build.startswith("built for sm_") or build.startswith("not built: ")
    if build.startswith("built"):
        module, _ = _cuda.load()
        assert (module is None) == ("not loadable" in status)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_tensors_use_the_kernel_when_present(fake_cuda_backend, caplog, dtype):
    with caplog.at_level(logging.DEBUG, logger="hbt_fast"):
        assert select_backend(CUDA, dtype) == "cuda"
    assert "cuda path (CUDA kernel)" in caplog.text


def test_cuda_float64_takes_the_tiled_path(fake_cuda_backend, caplog):
    with caplog.at_level(logging.DEBUG, logger="hbt_fast"):
        assert select_backend(CUDA, torch.float64) == "torch"
    assert "does not take torch.float64" in caplog.text


def test_without_the_kernel_cuda_tensors_take_the_tiled_path(no_cuda_backend, caplog):
    with caplog.at_level(logging.DEBUG, logger="hbt_fast"):
        assert select_backend(CUDA, torch.float32) == "torch"
    assert "torch path (CUDA kernel unavailable: not built: test says so)" in caplog.text


def test_other_devices_and_forced_backends(no_cuda_backend):
    assert select_backend(torch.device("cpu"), torch.float32) == "cpp"
    assert select_backend(torch.device("meta"), torch.float32) == "torch"
    with kernel_settings("torch"):
        assert select_backend(torch.device("cpu"), torch.float32) == "torch"
    with kernel_settings("cuda"), pytest.raises(ValueError, match="CUDA tensors only"):
        select_backend(torch.device("cpu"), torch.float32)
    with kernel_settings("cuda"), pytest.raises(ValueError, match="unavailable: not built"):
        select_backend(CUDA, torch.float32)
    with kernel_settings("cpp"), pytest.raises(ValueError, match="CPU tensors only"):
        select_backend(CUDA, torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_reach_the_cuda_kernel_unconverted(monkeypatch, dtype):
    # The functional glue on CPU tensors, with the CUDA runner replaced by the tiled path: the
    # kernel must get 16-bit q and p and a float32 scale, and give 16-bit gradients back.
    seen = {}

    def runner(q, p, scale, *rest):
        seen.update(q=q.dtype, p=p.dtype, scale=scale.dtype)
        loss, grad_scale, grad_q, grad_p = _fused.run_tiled_torch(q.float(), p.float(), scale,
                                                                   *rest)
        grads = None if grad_q is None else (grad_q.to(q.dtype), grad_p.to(p.dtype))
        return (loss, grad_scale, *(grads or (None, None)))

    monkeypatch.setattr(hbt_fast.functional, "select_backend", lambda device, dtype: "cuda")
    monkeypatch.setitem(_fused._RUNNERS, "cuda", runner)
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(9, 16, generator=generator).to(dtype).requires_grad_()
    p = torch.randn(13, 16, generator=generator).to(dtype).requires_grad_()
    temperature = torch.nn.Parameter(torch.tensor(0.07))
    loss = info_nce(q, p, temperature=temperature, symmetric=True)
    assert seen == {"q": dtype, "p": dtype, "scale": torch.float32}
    assert loss.dtype == torch.float32
    grad_q, grad_p, grad_t = torch.autograd.grad(loss, (q, p, temperature))
    assert grad_q.dtype == dtype and grad_p.dtype == dtype and grad_t.dtype == torch.float32


def test_cuda_binding_checks_arguments():
    module = cuda_module_or_skip()
    shape = dict(num_queries=4, num_passages=6, dim=3, dtype=0, symmetric=False,
                 compute_gradients=True)
    bad_shapes = [
        (dict(num_passages=3), "as many passages"),
        (dict(num_queries=0), "at least one query"),
        (dict(dim=0), "dimension"),
        (dict(dtype=3), "dtype code"),
        (dict(block_rows=-1), "block_rows"),
        (dict(num_passages=2**31), "32-bit"),
    ]
    for change, message in bad_shapes:
        with pytest.raises(ValueError, match=message):
            module.workspace_bytes(**{**shape, **change})
    needed = module.workspace_bytes(**shape)
    fake = 1 << 20  # never dereferenced: the checks come first
    buffers = dict(q=fake, p=fake, query_groups=0, passage_groups=0, scale=fake, result=fake,
                   grad_q=fake, grad_p=fake, workspace=fake, workspace_bytes=needed,
                   block_rows=0, allow_tf32=False, device=0, stream=0)
    bad_calls = [
        (dict(q=0), "null input"),
        (dict(result=0), "scale and result"),
        (dict(query_groups=fake), "together"),
        (dict(grad_p=0), "gradient buffers"),
        (dict(workspace_bytes=needed - 1), "workspace of"),
        (dict(workspace=fake + 8), "aligned"),
        (dict(device=-1), "device"),
    ]
    for change, message in bad_calls:
        with pytest.raises(ValueError, match=message):
            module.info_nce(**{**shape, **buffers, **change})
    # Valid-looking addresses that are not device memory never reach a kernel.
    problem = module.runtime_problem()
    expected = (RuntimeError, "info_nce_cuda") if problem else (ValueError, "not device memory")
    with pytest.raises(expected[0], match=expected[1]):
        module.info_nce(**shape, **buffers)


def test_cuda_workspace_is_never_batch_by_batch():
    module = cuda_module_or_skip()
    for dtype in (0, 2):
        num = 65536
        nbytes = module.workspace_bytes(num_queries=num, num_passages=num, dim=1024, dtype=dtype,
                                        symmetric=True, compute_gradients=True)
        assert nbytes < 0.1 * num * num * 4
    small = module.workspace_bytes(num_queries=1, num_passages=1, dim=1, dtype=0,
                                   symmetric=False, compute_gradients=False)
    assert small < 16 << 20


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
    with kernel_settings("cuda"):
        got = loss_and_grads(info_nce, q, p, qg, pg, **kwargs)
    # The oracle in float64 on the same (rounded) inputs.
    q64, p64 = q.detach().double().requires_grad_(), p.detach().double().requires_grad_()
    want = loss_and_grads(info_nce_reference, q64, p64, qg, pg, **kwargs)
    assert got[1].dtype == dtype and got[2].dtype == dtype
    for name, g, w in zip(("loss", "grad_q", "grad_p"), got, want):
        error = (g.double() - w).abs().max().item()
        assert error <= TOLERANCE[dtype] * max(w.abs().max().item(), 1e-12), (name, error)


@pytest.mark.parametrize("block_rows", [1, 5, 32])
def test_gpu_blocks_of_any_height(block_rows):
    gpu_or_skip()
    q, p, qg, pg = make_batch(45, 70, 16, torch.float32, num_groups=10)
    with kernel_settings("cuda", block_rows=block_rows):
        got = loss_and_grads(info_nce, q, p, qg, pg, symmetric=True)
    want = loss_and_grads(info_nce_reference, q, p, qg, pg, symmetric=True)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=2e-4, atol=2e-6)


def test_gpu_learnable_temperature_and_no_grad():
    gpu_or_skip()
    q, p, qg, pg = make_batch(50, 80, 16, torch.float32, num_groups=8)
    temperature = torch.nn.Parameter(torch.tensor(0.07, device=CUDA))
    with kernel_settings("cuda"):
        (grad,) = torch.autograd.grad(info_nce(q, p, qg, pg, temperature=temperature,
                                               symmetric=True), temperature)
        with torch.no_grad():
            value = info_nce(q, p, qg, pg, symmetric=True)
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
    with kernel_settings("cuda"):
        loss, grad_q, grad_p = loss_and_grads(info_nce, q, p, same, same, symmetric=symmetric)
        assert loss == 0 and (grad_q == 0).all() and (grad_p == 0).all()
        with torch.no_grad():
            p[3, 2] = math.nan
        loss, grad_q, grad_p = loss_and_grads(info_nce, q, p, symmetric=symmetric,
                                              normalize=False)
    assert loss.isnan() and grad_q.isnan().all() and grad_p.isnan().all()


def test_gpu_never_materialises_batch_by_batch():
    gpu_or_skip()
    num = 16384  # B x M float32 logits: 1 GiB
    q, p, _, _ = make_batch(num, num, 64, torch.float32)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with kernel_settings("cuda"):
        info_nce(q, p).backward()
    torch.cuda.synchronize()
    grown = torch.cuda.max_memory_allocated() - before
    assert grown < 0.25 * num * num * 4, f"peak grew by {grown / 2**20:.0f} MiB"


def test_gpu_speed_against_cross_entropy_is_reported():
    gpu_or_skip()
    q, p, _, _ = make_batch(8192, 8192, 768, torch.bfloat16)
    labels = torch.arange(8192, device=CUDA)

    def fused():
        with kernel_settings("cuda"):
            info_nce(q, p, temperature=0.05, normalize=False).backward()

    def reference():
        F.cross_entropy((q @ p.T) * 20.0, labels).backward()

    def best(step):
        times = []
        for _ in range(4):
            torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return min(times[1:])

    fused_s, reference_s = best(fused), best(reference)
    print(f"B=8192 D=768 bf16: fused {fused_s * 1e3:.2f} ms, cross_entropy "
          f"{reference_s * 1e3:.2f} ms, speed-up {reference_s / fused_s:.2f}x")


def test_environment_variable_disables_the_kernel(monkeypatch):
    module = cuda_module_or_skip()
    monkeypatch.setattr(_cuda, "_runtime_problem", "")
    monkeypatch.setenv(_cuda.DISABLE_VARIABLE, "1")
    assert _cuda.backend() == (None, f"{_cuda.load()[1]}, but disabled by HBT_DISABLE_CUDA_LOSS")
    assert select_backend(CUDA, torch.float32) == "torch"
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
