"""The run folder: only what hbt_fast wrote for this run may be cleared or replaced (a marker is
written first), the output lies outside everything the run reads, and one run at a time holds
the folder (a lock naming its pid)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from train_helpers import make_trainer

from hbt_fast.cli import main
from hbt_fast.train import Callback

CLI = "import sys; from hbt_fast.cli import main; sys.exit(main(sys.argv[1:]))"


class StopAt(Callback):
    """Raises after ``step``, as a crash would (before any checkpoint with save_every=0)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, state, record):
        if state.step == self.step:
            raise KeyboardInterrupt


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def pairs_file(folder):
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps({"group": g, "lang": lang, "query": f"{lang} question {g}",
                                        "passage": f"{lang} answer {g}"}) + "\n"
                            for g in range(16) for lang in ("en", "de")), encoding="utf-8")
    return path


def train_flags(model, pairs, output, *extra):
    return ["train", "--model", str(model), "--train", str(pairs), "--output", str(output), "--steps", "2",
            "--batch-size", "4", "--no-progress", *extra]


def stopped_run(tiny_model_dir, output, **overrides):
    """A run stopped after its first step: a log line, no checkpoint (a restart clears it)."""
    with pytest.raises(KeyboardInterrupt):
        make_trainer(tiny_model_dir, output, steps=4, callbacks=[StopAt(1)], **overrides).train()
    return output


# ---------------------------------------------------------------- item 1: nothing foreign is removed
@pytest.mark.parametrize("files", [
    {"checkpoints/epoch=3.ckpt": b"another tool's weights", "train_log.jsonl": b'{"loss": 1}\n'},
    {"train_log.jsonl": b'{"step": 1, "loss": 0.5}\n'},
    {"notes.txt": b"mine"},
])
def test_a_folder_hbt_fast_did_not_write_is_refused_and_left_alone(tiny_model_dir, tmp_path, capsys, files):
    output = tmp_path / "run"
    for name, data in files.items():
        (output / name).parent.mkdir(parents=True, exist_ok=True)
        (output / name).write_bytes(data)
    assert main(train_flags(tiny_model_dir, pairs_file(tmp_path), output)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"hbt-fast train: error: output {output} holds ")
    assert sorted(files)[0].split("/")[0] in error and "hbt_fast did not write" in error
    assert snapshot(output) == files  # not even a lock file was added


@pytest.mark.parametrize("foreign", ["notes.txt", "checkpoints/epoch=3.ckpt", "tensorboard/mine.csv",
                                     "checkpoints/.tmp-step-00000001x"])
def test_a_restart_refuses_a_run_folder_holding_a_foreign_file(tiny_model_dir, tmp_path, foreign):
    output = stopped_run(tiny_model_dir, tmp_path / "run")
    (output / foreign).parent.mkdir(parents=True, exist_ok=True)
    (output / foreign).write_text("not hbt_fast's")
    before = snapshot(output)
    with pytest.raises(ValueError, match=f"holds {foreign}, which hbt_fast did not write for this run"):
        make_trainer(tiny_model_dir, output, steps=4)
    assert snapshot(output) == before


@pytest.mark.parametrize("foreign", ["model/mine.bin", "model/1_Pooling/mine.json", "best",
                                     "checkpoints/step-00000002/notes.txt", "checkpoints/latest-of-mine"])
def test_resume_refuses_a_run_folder_holding_a_foreign_file(tiny_model_dir, tmp_path, foreign):
    output = tmp_path / "run"
    make_trainer(tiny_model_dir, output, steps=2, save_every=1).train()
    (output / foreign).parent.mkdir(parents=True, exist_ok=True)
    (output / foreign).write_text("not hbt_fast's")
    before = snapshot(output)
    with pytest.raises(ValueError, match=f"holds {foreign}, which hbt_fast did not write for this run"):
        make_trainer(tiny_model_dir, output, steps=4, resume=True, override=("steps",))
    assert snapshot(output) == before


def test_the_marker_comes_first_and_a_restart_needs_the_same_settings(tiny_model_dir, tmp_path):
    output = stopped_run(tiny_model_dir, tmp_path / "run")
    marker = json.loads((output / "hbt_fast_run.json").read_text())
    assert marker["written_by"] == "hbt_fast" and marker["config"]["steps"] == 4
    before = snapshot(output)
    with pytest.raises(ValueError, match=r"holds a stopped run with other settings: lr \(then 0.001, now 0.01\)"):
        make_trainer(tiny_model_dir, output, steps=4, lr=1e-2)
    assert snapshot(output) == before
    with pytest.warns(UserWarning, match="holds no complete checkpoint"):  # the same run: cleared, again
        make_trainer(tiny_model_dir, output, steps=4).train()
    assert (output / "model").is_dir()


def test_a_marker_not_written_by_hbt_fast_is_refused(tiny_model_dir, tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    (output / "hbt_fast_run.json").write_text("{}")
    (output / "train_log.jsonl").write_text("someone's\n")
    with pytest.raises(ValueError, match="is not a marker hbt_fast wrote"):
        make_trainer(tiny_model_dir, output, steps=4)
    assert (output / "train_log.jsonl").read_text() == "someone's\n"


def test_a_finished_folder_resumes_and_its_own_files_pass(tiny_model_dir, tmp_path):
    output = tmp_path / "run"
    make_trainer(tiny_model_dir, output, steps=2, save_every=1, report_to="tensorboard").train()
    assert json.loads((output / "model" / "manifest.json").read_text())["files"]
    make_trainer(tiny_model_dir, output, steps=3, resume=True, override=("steps",), report_to="tensorboard").train()


# ---------------------------------------------------------------- item 3: outside every input
@pytest.mark.parametrize("where, relation", [
    ("model", "is the model folder"), ("model/run", "lies inside the model folder"),
    (".", "contains the model folder"), ("data/pairs.jsonl", "is the training data"),
    ("data/pairs.jsonl/run", "lies inside the training data"), ("data", "contains the training data"),
    ("link/run", "lies inside the model folder"), ("eval/run", "lies inside the evaluation folder"),
])
def test_the_output_lies_outside_what_the_run_reads(tiny_model_dir, tmp_path, capsys, monkeypatch, where,
                                                    relation):
    from lareqa_files import paragraph, write_language

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    (tmp_path / "data").mkdir()
    pairs = pairs_file(tmp_path / "data")
    (tmp_path / "link").symlink_to(tmp_path / "model")
    (tmp_path / "eval").mkdir()
    write_language(tmp_path / "eval", "en", paragraph(["One."], [("q1", "one?", 0)]))
    before = snapshot(tmp_path)
    flags = train_flags("model", "data/pairs.jsonl", where, "--eval", "xquad-r:eval")
    assert main(flags) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"output {where}" in error and relation in error
    assert snapshot(tmp_path) == before and pairs.is_file()


# ---------------------------------------------------------------- item 4: one run per folder
def test_a_second_run_on_the_same_output_is_refused_naming_the_holder(tiny_model_dir, tmp_path):
    first = make_trainer(tiny_model_dir, tmp_path / "run", steps=2)
    with pytest.raises(ValueError, match=rf"output .*run is in use by another run \(pid {os.getpid()}\)"):
        make_trainer(tiny_model_dir, tmp_path / "run", steps=2)
    first.train()  # released when it ends
    again = make_trainer(tiny_model_dir, tmp_path / "run", steps=3, resume=True, override=("steps",))
    again.close()


def test_a_second_cli_run_is_refused_at_once_with_exit_2(tiny_model_dir, tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
            [sys.executable, "-c", "import sys, time; from hbt_fast._outputs import FolderLock; "
             "lock = FolderLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(120)",
             str(output)], stdout=subprocess.PIPE, text=True, env=env) as holder:
        try:
            assert holder.stdout.readline() == "locked\n"
            done = subprocess.run([sys.executable, "-c", CLI, *train_flags(tiny_model_dir, pairs_file(tmp_path),
                                                                             output)],
                                  capture_output=True, text=True, timeout=300, env=env)
        finally:
            holder.kill()
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert f"is in use by another run (pid {holder.pid})" in done.stderr
    assert sorted(p.name for p in output.iterdir()) == [".hbt_fast.lock"]
