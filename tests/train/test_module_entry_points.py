"""``python -m hbt_fast``, ``python -m hbt_fast.cli`` and the README's torchrun line (2 gloo ranks)."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from torchrun_launch import run_torchrun, stderr_tail

import hbt_fast

README = Path(__file__).resolve().parents[2] / "README.md"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


@pytest.mark.parametrize("module", ["hbt_fast", "hbt_fast.cli"])
def test_python_dash_m_runs_the_command_line(module, tmp_path):
    done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, env=ENV)
    assert done.returncode == 0 and done.stdout.strip() == f"hbt_fast {hbt_fast.__version__}", done.stderr
    misuse = subprocess.run([sys.executable, "-m", module, "train", "--model", "m", "--train", "x", "--output",
                             str(tmp_path / "a-file"), "--steps", "0"], capture_output=True, text=True, env=ENV)
    assert misuse.returncode == 2 and misuse.stderr == "hbt-fast train: error: --steps must be >= 1, got 0\n"


def readme_torchrun_line() -> list:
    """The README's torchrun command, up to its "..." (where the train flags go)."""
    lines = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("torchrun ")]
    assert len(lines) == 1, lines
    words = shlex.split(lines[0].partition("#")[0])
    assert words[-1] == "...", words
    return words[:-1]


def test_the_readme_torchrun_line_trains_with_two_gloo_ranks(tiny_model_dir, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"group": g, "lang": lang, "query": f"{lang} question {g}",
                                         "passage": f"{lang} answer {g}"}) + "\n"
                             for g in range(16) for lang in ("en", "de")), encoding="utf-8")
    torchrun, *arguments = readme_torchrun_line()
    assert torchrun == "torchrun"  # the console script of torch.distributed.run
    output = tmp_path / "run"
    command = [*arguments, "--model", str(tiny_model_dir), "--train", str(pairs), "--output", str(output),
               "--steps", "2", "--batch-size", "8", "--no-progress"]
    done = run_torchrun(command, env=ENV, timeout=300)
    assert done.returncode == 0, stderr_tail(done.stderr, keep=6000)
    description = json.loads((output / "run_config.json").read_text())
    assert description["world_size"] == 2 and description["total_steps"] == 2
    assert (output / "model" / "model.safetensors").is_file()
    assert sorted(p.name for p in (output / "checkpoints" / "step-00000002").glob("random-rank*.pt")) == [
        "random-rank0.pt", "random-rank1.pt"]
