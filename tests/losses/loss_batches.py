"""Batches, comparisons and a fresh-process runner shared by the loss tests."""

import os
import signal
import subprocess
import sys

import pytest
import torch

from hbt_fast.testing import info_nce_reference


def make_batch(num_queries, num_passages, dim, dtype=torch.float64, num_groups=None, seed=0,
               spread=1.0, device="cpu"):
    """q [B, D], p [M, D] requiring grad, and group ids [B] / [M] drawn from num_groups (or
    None, None)."""
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(num_queries, dim, generator=generator, dtype=dtype) * spread
    p = torch.randn(num_passages, dim, generator=generator, dtype=dtype) * spread
    q, p = q.to(device).requires_grad_(), p.to(device).requires_grad_()
    if num_groups is None:
        return q, p, None, None
    query_groups = torch.randint(0, num_groups, (num_queries,), generator=generator)
    passage_groups = torch.randint(0, num_groups, (num_passages,), generator=generator)
    return q, p, query_groups.to(device), passage_groups.to(device)


def loss_and_grads(function, q, p, *groups, **kwargs):
    loss = function(q, p, *groups, **kwargs)
    return (loss.detach(), *torch.autograd.grad(loss, (q, p)))


def assert_matches_reference(function, q, p, query_groups, passage_groups, rtol, atol,
                             **kwargs):
    """function's loss and gradients equal info_nce_reference's (kwargs go to both)."""
    got = loss_and_grads(function, q, p, query_groups, passage_groups, **kwargs)
    want = loss_and_grads(info_nce_reference, q, p, query_groups, passage_groups, **kwargs)
    for name, got_value, want_value in zip(("loss", "grad_q", "grad_p"), got, want):
        torch.testing.assert_close(got_value, want_value, rtol=rtol, atol=atol, msg=name)


def run_python(script: str, *args: str, timeout: float = 120, env=None) -> str:
    """stdout of ``python -c script args`` in a fresh process (its own session, so that a hang
    is killed with every process it forked); fails the test on a non-zero exit or a timeout."""
    process = subprocess.Popen([sys.executable, "-c", script, *args], text=True, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"the script did not finish in {timeout} s")
    assert process.returncode == 0, stderr
    return stdout
