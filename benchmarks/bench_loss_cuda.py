"""CUDA fused InfoNCE forward + backward vs ``F.cross_entropy((q @ p.T) / tau, arange(B))`` on
the materialised logits on one GPU: B = 32768, D = 1024, bfloat16 (speed and memory), and
B = 8192, D = 768, bfloat16 (speed; moved here from the tests, where it only printed).

Run: ``python -m pytest benchmarks/bench_loss_cuda.py -s``. Skipped where no GPU or no CUDA
kernel (hbt_fast.info()["loss_cuda"] says why). Before timing B = 8192 it checks the loss, both
gradients and d loss / d temperature against a float64 reference on the same inputs (a fast
wrong kernel is not a result). Stores both times, the speed-up and both peak memory growths
(torch.cuda.max_memory_allocated above the inputs) in ``extra_info``.
Target on an H100/H200: speed-up >= 1.3, fused extra memory <= 5% of the reference's.
benchmarks/gpu_first_run.sh runs this after the GPU tests.
"""

import pytest
import torch
import torch.nn.functional as F

from hbt_fast import _cuda
from hbt_fast.losses import info_nce
from hbt_fast.testing import info_nce_reference

BATCH_SIZE = 32768
DIM = 1024
TEMPERATURE = 0.05


@pytest.fixture(scope="module")
def inputs():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    module, status = _cuda.backend()
    if module is None:
        pytest.skip(f"no CUDA kernel: {status}")
    generator = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(BATCH_SIZE, DIM, device="cuda", generator=generator)
    p = torch.randn(BATCH_SIZE, DIM, device="cuda", generator=generator)
    q = F.normalize(q, dim=-1).bfloat16().requires_grad_()
    p = F.normalize(p, dim=-1).bfloat16().requires_grad_()
    return q, p


def fused_step(q, p):
    info_nce(q, p, temperature=TEMPERATURE, normalize=False, backend="cuda").backward()
    q.grad = p.grad = None


def reference_step(q, p):
    labels = torch.arange(q.shape[0], device=q.device)
    F.cross_entropy((q @ p.T) * (1 / TEMPERATURE), labels).backward()
    q.grad = p.grad = None


def seconds(step, q, p, repeat=5):
    """Best of `repeat` timed runs after one warm-up, with CUDA events."""
    step(q, p)
    best = float("inf")
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step(q, p)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return best


def peak_growth(step, q, p):
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step(q, p)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def test_cuda_speed_and_memory(benchmark, inputs):
    q, p = inputs
    fused_bytes = peak_growth(fused_step, q, p)
    reference_bytes = peak_growth(reference_step, q, p)
    benchmark.pedantic(fused_step, args=(q, p), rounds=3, iterations=1, warmup_rounds=1)
    fused_s, reference_s = seconds(fused_step, q, p), seconds(reference_step, q, p)
    info = dict(device=torch.cuda.get_device_name(), batch_size=BATCH_SIZE, dim=DIM,
                fused_s=fused_s, reference_s=reference_s, speedup=reference_s / fused_s,
                fused_peak_mib=fused_bytes / 2**20, reference_peak_mib=reference_bytes / 2**20,
                fused_share=fused_bytes / reference_bytes)
    benchmark.extra_info.update(info)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in info.items()))


def loss_and_grads(function, q, p):
    temperature = torch.tensor(TEMPERATURE, dtype=torch.float64 if q.dtype == torch.float64
                               else torch.float32, device=q.device, requires_grad=True)
    loss = function(q, p, temperature=temperature, normalize=False)
    return (loss.detach(), *torch.autograd.grad(loss, (q, p, temperature)))


def assert_correct(q, p, row_tolerance=2e-2, scalar_tolerance=1e-4):
    """The fused loss, gradients and d loss / d temperature against info_nce_reference in
    float64 on the same bfloat16 inputs: scalars relative, gradients row by row (each element
    within row_tolerance of its value plus its row's largest magnitude)."""
    got = loss_and_grads(lambda *a, **k: info_nce(*a, backend="cuda", **k), q, p)
    q64, p64 = (t.detach().double().requires_grad_() for t in (q, p))
    want = loss_and_grads(info_nce_reference, q64, p64)
    for name, g, w in zip(("loss", "grad_q", "grad_p", "grad_temperature"), got, want):
        g, w = g.double(), w.double()
        if g.dim() == 0:
            assert abs(g - w) <= scalar_tolerance * abs(w), (name, g.item(), w.item())
            continue
        bound = row_tolerance * (w.abs() + w.abs().amax(dim=1, keepdim=True))
        bad = ((g - w).abs() > bound) | ~torch.isfinite(g)
        assert not bad.any(), (name, int(bad.sum()), "elements in rows",
                               bad.any(dim=1).nonzero().flatten()[:10].tolist())
    print(f"B={q.shape[0]} D={q.shape[1]} {q.dtype}: loss {got[0].item():.6f} (reference "
          f"{want[0].item():.6f}), gradients within row tolerance {row_tolerance}")


def test_cuda_speed_8192(benchmark, inputs):
    q, p = (t.detach()[:8192, :768].contiguous().requires_grad_() for t in inputs)
    assert_correct(q, p)
    benchmark.pedantic(fused_step, args=(q, p), rounds=3, iterations=1, warmup_rounds=1)
    fused_s, reference_s = seconds(fused_step, q, p), seconds(reference_step, q, p)
    benchmark.extra_info.update(device=torch.cuda.get_device_name(), batch_size=8192, dim=768,
                                fused_s=fused_s, reference_s=reference_s,
                                speedup=reference_s / fused_s)
    print(benchmark.extra_info)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("batch_size", [64, 256, 1024, 4096])
def test_cuda_speed_at_training_batch_sizes(batch_size, dtype, inputs):
    """The batch sizes one GPU trains with (D = 768): the fused path must win here too, not
    only at B = 8192 and beyond. Checked against the float64 reference first."""
    q, p = (t.detach()[:batch_size, :768].to(dtype).contiguous().requires_grad_() for t in inputs)
    assert_correct(q, p)
    fused_s, reference_s = seconds(fused_step, q, p, repeat=20), seconds(reference_step, q, p, repeat=20)
    print(f"B={batch_size} D=768 {dtype}: fused {fused_s * 1e3:.3f} ms, reference "
          f"{reference_s * 1e3:.3f} ms, speedup={reference_s / fused_s:.3f}")
