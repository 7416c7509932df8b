"""The CPU loss's threads are OpenMP's: torch's own team, or a warning saying they are not."""

import logging
import os

import torch
from loss_batches import run_python

import hbt_fast
from hbt_fast import _openmp
from hbt_fast.losses import info_nce
from hbt_fast.ops.backends import cpu

MAPS = """\
7f0000000000-7f0000001000 r-xp 00000000 fe:00 1 /venv/torch/lib/libgomp.so.1
7f0000001000-7f0000002000 r--p 00010000 fe:00 1 /venv/torch/lib/libgomp.so.1
7f0000002000-7f0000003000 rw-p 00000000 00:00 0
7f0000003000-7f0000004000 r-xp 00000000 fe:00 3 /venv/hbt_fast/_C.cpython-311-x86_64-linux-gnu.so
"""


def test_the_runtime_is_named_from_the_mappings():
    assert _openmp.file_containing(0x7f0000000800, MAPS) == "/venv/torch/lib/libgomp.so.1"
    assert _openmp.file_containing(0x7f0000002800, MAPS) is None  # anonymous mapping
    assert _openmp.file_containing(0x7f0000004000, MAPS) is None  # past the last one
    assert "torch's own threads (libgomp.so.1)" in _openmp.describe("libgomp.so.1",
                                                                     "libgomp.so.1", True)
    apart = _openmp.describe("libomp.so", "libgomp-a34b3233.so.1", False)
    assert "libomp.so" in apart and "libgomp-a34b3233.so.1" in apart and "compete" in apart


def test_the_loss_runs_on_torchs_own_threads_here():
    # What the speed at small batches rests on: torch's OpenMP and the kernel's are one copy
    # (other packages' private libgomp copies, scikit-learn's say, do not matter).
    torch.ones(1)
    loss_runtime, torch_runtime, shared = _openmp.runtimes()
    assert shared and loss_runtime == torch_runtime, (loss_runtime, torch_runtime)
    assert hbt_fast.info()["loss_threads"].startswith("OpenMP, torch's own threads")


def test_competing_runtimes_are_reported_once(monkeypatch, caplog):
    monkeypatch.setattr(_openmp, "runtimes", lambda: ("libomp.so", "libgomp.so.1", False))
    cpu.warn_if_threads_compete.cache_clear()
    q, p = torch.randn(64, 96, requires_grad=True), torch.randn(64, 96)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with caplog.at_level(logging.WARNING, logger="hbt_fast"):
            info_nce(q, p).backward()
            info_nce(q, p).backward()
    finally:
        torch.set_num_threads(threads)
        cpu.warn_if_threads_compete.cache_clear()
    warnings = [r.getMessage() for r in caplog.records if "compete" in r.getMessage()]
    assert len(warnings) == 1 and "libomp.so" in warnings[0]


SMALL_TEAM_SCRIPT = """
import numpy as np
from hbt_fast import _C

rng = np.random.default_rng(1)
q = rng.standard_normal((200, 300))
p = rng.standard_normal((260, 300))
groups_q = np.arange(200) % 7
groups_p = np.arange(260) % 7

def run(threads, symmetric):
    options = _C.InfoNceOptions(scale=11.0, symmetric=symmetric, num_threads=threads,
                                block_rows=64)
    out = _C.info_nce(_C.InfoNceInputs(q, p, groups_q, groups_p), options)
    return float(out.loss), float(out.grad_scale), out.grad_q, out.grad_p

for symmetric in (False, True):
    one, three = run(1, symmetric), run(3, symmetric)
    # Other row splits round differently; a part left out would be off by far more.
    for a, b in zip(one, three):
        assert np.allclose(a, b, rtol=1e-10, atol=1e-12), (symmetric, np.max(np.abs(a - b)))
"""


def test_a_smaller_team_than_asked_gives_the_same_result():
    # OMP_THREAD_LIMIT=1: OpenMP grants one thread for three parts, which then runs all three.
    run_python(SMALL_TEAM_SCRIPT, env={**os.environ, "OMP_THREAD_LIMIT": "1"})
