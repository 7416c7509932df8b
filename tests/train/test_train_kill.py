"""Kill -9 at random moments, including during the first checkpoint: restarting (or resuming
when a complete checkpoint exists) always ends with the model of an uninterrupted run."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

STEPS = 5
CLI = "import sys; from hbt_fast.cli import main; sys.exit(main(sys.argv[1:]))"  # what hbt-fast runs


def pairs_file(folder: Path, groups: int = 16) -> Path:
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps({"group": g, "lang": lang, "query": f"{lang} question {g}",
                                        "passage": f"{lang} answer {g}"}) + "\n"
                            for g in range(groups) for lang in ("en", "de")), encoding="utf-8")
    return path


def command(model, pairs, output, resume):
    return [sys.executable, "-c", CLI, "train", "--model", str(model), "--train", str(pairs),
            "--output", str(output), "--steps", str(STEPS), "--batch-size", "4", "--save-every", "1",
            "--lr", "1e-3", "--warmup", "0", "--no-progress", *(["--resume"] if resume else [])]


def has_complete_checkpoint(output: Path) -> bool:
    return any((p / "manifest.json").exists() for p in (output / "checkpoints").glob("step-*"))


def start(model, pairs, output):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    with open(output.parent / f"{output.name}.stderr", "a", encoding="utf-8") as errors:
        return subprocess.Popen(command(model, pairs, output, has_complete_checkpoint(output)), env=env,
                                stdout=subprocess.DEVNULL, stderr=errors)


def kill_when(process, condition, timeout=120):
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if condition():
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    process.wait()


def finish(model, pairs, output):
    process = start(model, pairs, output)
    process.wait(timeout=300)
    errors = (output.parent / f"{output.name}.stderr").read_text(encoding="utf-8")
    assert process.returncode == 0, errors[-2000:]


def test_killed_runs_end_with_the_uninterrupted_model(tiny_model_dir, tmp_path):
    pairs = pairs_file(tmp_path)
    finish(tiny_model_dir, pairs, tmp_path / "straight")
    expected = load_file(tmp_path / "straight" / "model" / "model.safetensors")

    output = tmp_path / "killed"
    first_checkpoint = output / "checkpoints" / ".tmp-step-00000001"
    process = start(tiny_model_dir, pairs, output)
    kill_when(process, first_checkpoint.exists)  # during the first checkpoint
    assert process.returncode == -signal.SIGKILL
    moments = random.Random(int(time.time())).sample(range(STEPS * 2), 1)
    for moment in moments:  # a random number of checkpoint-file events into the run
        process = start(tiny_model_dir, pairs, output)
        seen = set()

        def enough_progress():
            seen.update(p.name for p in (output / "checkpoints").glob("*step-*"))
            return len(seen) > moment

        kill_when(process, enough_progress)
    finish(tiny_model_dir, pairs, output)

    got = load_file(output / "model" / "model.safetensors")
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-6, atol=1e-7, msg=lambda m: f"{name}: {m} "
                                   f"(kill moments {moments})")
    steps = [json.loads(line)["step"] for line in (output / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))


def test_a_run_killed_while_preparing_its_training_file_ends_with_the_uninterrupted_model(tiny_model_dir,
                                                                                         tmp_path):
    pairs = pairs_file(tmp_path, groups=5000)  # enough lines to be caught preparing them
    finish(tiny_model_dir, pairs, tmp_path / "straight")
    expected = load_file(tmp_path / "straight" / "model" / "model.safetensors")

    output = tmp_path / "killed"
    process = start(tiny_model_dir, pairs, output)
    kill_when(process, (output / ".token_store.preparing").exists)
    assert process.returncode == -signal.SIGKILL
    assert not (output / "token_store").exists()
    finish(tiny_model_dir, pairs, output)
    got = load_file(output / "model" / "model.safetensors")
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-6, atol=1e-7, msg=lambda m: f"{name}: {m}")


if sys.platform == "win32":  # pragma: no cover - SIGKILL is POSIX
    pytestmark = pytest.mark.skip(reason="needs SIGKILL")
