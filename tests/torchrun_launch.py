"""Run a command under torchrun for the distributed tests, and never leave a rank behind.

torchrun starts each rank in a session of its own, so killing torchrun on a timeout (what
``subprocess.run(timeout=...)`` does) orphans the ranks: a hung rank then outlives the test
suite. Here a timeout aborts each rank instead (``SIGABRT``; the ranks run with
``PYTHONFAULTHANDLER``, so each prints every thread's stack first), torchrun reports the failure
and exits, and the test fails with those stacks in its message: where the ranks were, not just
"timeout".
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _children(pid: int) -> list:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def stderr_tail(stderr: str, keep: int = 20000) -> str:
    """stderr's end without faulthandler's "Extension modules: ..." lists (one per rank, each
    several thousand characters), which would push the stacks out of the message."""
    lines = [line for line in stderr.splitlines() if not line.lstrip().startswith("Extension modules:")]
    return "\n".join(lines)[-keep:]


def run_torchrun(arguments: list, *, timeout: float, env: dict | None = None,
                 attempts: int = 1) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --master_addr=127.0.0.1 --master_port=<free> *arguments``
    with the GPUs hidden (gloo ranks); fails the test, with each rank's stack, when it has not
    finished after ``timeout`` seconds. ``attempts`` > 1 starts it again after such a hang (only
    after a hang: a failure or a wrong result is never retried); a test that needs it says why."""
    # gloo ranks on the CPU everywhere: on a GPU machine NCCL would need one GPU per rank.
    env = {**(os.environ if env is None else env), "PYTHONFAULTHANDLER": "1", "CUDA_VISIBLE_DEVICES": ""}
    for attempt in range(1, attempts + 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--master_addr=127.0.0.1",
                   f"--master_port={free_port()}", *map(str, arguments)]
        process, stdout, stderr, hung = _launch(command, env, timeout)
        if not hung:
            return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
        print(f"torchrun attempt {attempt} of {attempts} hung; stacks:\n{stderr_tail(stderr)}", file=sys.stderr)
    pytest.fail(f"torchrun did not finish in {timeout} s ({attempts} attempt(s)); stderr: {stderr_tail(stderr)}")


def _launch(command: list, env: dict, timeout: float):
    """(process, stdout, stderr, hung): on a timeout every rank is aborted, printing its stacks."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        return process, stdout, stderr, False
    except subprocess.TimeoutExpired:
        for rank in _children(process.pid):
            os.kill(rank, signal.SIGABRT)
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            for pid in [process.pid, *_children(process.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        return process, stdout, stderr, True
