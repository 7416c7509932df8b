"""CUDA fused InfoNCE forward + backward vs ``F.cross_entropy((q @ p.T) / tau, arange(B))`` on
the materialised logits on one GPU: B = 32768, D = 1024, bfloat16 (speed and memory), and
B = 8192, D = 768, bfloat16 (speed; moved here from the tests, where it only printed).

Run: ``python -m pytest benchmarks/bench_loss_cuda.py -s``. Skipped where no GPU or no CUDA
kernel (hbt_fast.info()["loss_cuda"] says why). Stores both times, the speed-up and both peak
memory growths (torch.cuda.max_memory_allocated above the inputs) in ``extra_info``.
Target on an H100/H200: speed-up >= 1.3, fused extra memory <= 5% of the reference's. Not yet
measured: no GPU was available where this was written.
"""

import pytest
import torch
import torch.nn.functional as F

from hbt_fast import _cuda
from hbt_fast.losses import info_nce

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


def test_cuda_speed_8192(benchmark, inputs):
    q, p = (t.detach()[:8192, :768].contiguous().requires_grad_() for t in inputs)
    benchmark.pedantic(fused_step, args=(q, p), rounds=3, iterations=1, warmup_rounds=1)
    fused_s, reference_s = seconds(fused_step, q, p), seconds(reference_step, q, p)
    benchmark.extra_info.update(device=torch.cuda.get_device_name(), batch_size=8192, dim=768,
                                fused_s=fused_s, reference_s=reference_s,
                                speedup=reference_s / fused_s)
    print(benchmark.extra_info)
