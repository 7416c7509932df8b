"""Failures while a run runs (a full disk under torch.save or safetensors, a folder turned
read-only, the --eval folder gone) end ``hbt-fast train`` with one line and exit 1, and leave
no temporary folder behind."""

import errno
import json
import os
import pathlib
import shutil

import pytest
import torch
from safetensors import SafetensorError

from hbt_fast.cli import main
from hbt_fast.models import TextEncoder
from hbt_fast.train import Trainer

TORCH_FULL = ("[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed writing file "
              "data/3: file write failed (No space left on device)")
SAFETENSORS_FULL = ('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                    '"No space left on device" })')


@pytest.fixture
def flags(tiny_model_dir, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"group": g, "lang": lang, "query": f"{lang} question {g}",
                                         "passage": f"{lang} answer {g}"}) + "\n"
                             for g in range(16) for lang in ("en", "de")), encoding="utf-8")
    return ["train", "--model", str(tiny_model_dir), "--train", str(pairs), "--output", str(tmp_path / "run"),
            "--steps", "2", "--batch-size", "4", "--no-progress"]


def fails_at_run_time(capsys, flags, *words):
    capsys.readouterr()
    assert main(flags) == 1
    error = capsys.readouterr().err.splitlines()[-1:]  # the progress of saving may precede it
    assert error and error[0].startswith("hbt-fast train: error: "), error
    assert all(word in error[0] for word in words), error
    output = pathlib.Path(flags[flags.index("--output") + 1])
    assert not [p for p in output.rglob("*") if ".tmp" in p.name], "a temporary folder was left"
    return error[0]


def after_step(monkeypatch, step, harm):
    """Run ``harm()`` once the trainer finished step ``step`` (its callbacks not yet run)."""
    original = Trainer.train_step

    def train_step(self, batch):
        record = original(self, batch)
        if self.step == step:
            harm(self)
        return record

    monkeypatch.setattr(Trainer, "train_step", train_step)


def test_a_full_disk_under_torch_save_in_the_first_checkpoint(flags, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise RuntimeError(TORCH_FULL)

    monkeypatch.setattr(torch, "save", full)
    message = fails_at_run_time(capsys, flags, "writing checkpoint step-00000002", "no space left on device")
    assert "enforce fail" not in message


def test_a_full_disk_under_safetensors_while_writing_the_model(flags, capsys, monkeypatch):
    original, calls = TextEncoder.save, []

    def save(self, directory):
        calls.append(directory)
        if pathlib.Path(directory).name != "model" or len(calls) > 1:  # the checkpoint passes, model/ not
            raise SafetensorError(SAFETENSORS_FULL)
        return original(self, directory)

    monkeypatch.setattr(TextEncoder, "save", save)
    fails_at_run_time(capsys, flags, "run/model failed: no space left on device")
    output = pathlib.Path(flags[flags.index("--output") + 1])
    assert not (output / "model").exists() and (output / "checkpoints" / "step-00000002").is_dir()


def test_a_folder_remounted_read_only_mid_run(flags, capsys, monkeypatch):
    """A remount makes every write fail with EROFS, files already open for appending included."""
    def remount(trainer):
        output = str(trainer.output)

        def refuse(path, *args, **kwargs):
            if str(path).startswith(output):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real_open(path, *args, **kwargs)

        def mkdir(self, *args, **kwargs):
            if str(self).startswith(output):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr("hbt_fast.train.callbacks.open", refuse, raising=False)
        monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)

    real_open, real_mkdir = open, pathlib.Path.mkdir
    after_step(monkeypatch, 1, remount)
    fails_at_run_time(capsys, flags, "train_log.jsonl", "Read-only file system")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_a_folder_made_read_only_mid_run(flags, capsys, monkeypatch):
    def lock_down(trainer):
        for path in (trainer.output / "train_log.jsonl", trainer.output):
            path.chmod(0o500)

    after_step(monkeypatch, 1, lock_down)
    try:
        fails_at_run_time(capsys, flags, "Permission denied")
    finally:
        output = pathlib.Path(flags[flags.index("--output") + 1])
        output.chmod(0o700)


def test_the_eval_folder_deleted_mid_run(flags, capsys, monkeypatch, tmp_path):
    from lareqa_files import paragraph, write_language

    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    write_language(evaluation, "en", paragraph(["One.", "Two."], [("q1", "one?", 0)]))
    after_step(monkeypatch, 1, lambda trainer: shutil.rmtree(evaluation))
    fails_at_run_time(capsys, [*flags, "--eval", f"xquad-r:{evaluation}", "--eval-every", "1"], str(evaluation))
