"""Checkpoints: a manifest of checksums written last, verified on resume with a fall-back to the
newest intact checkpoint; damaged, forged or unwritable checkpoints give one clear error; resume
refuses changed settings unless they are named in ``override``."""

import errno
import json

import pytest
import torch
from train_helpers import log_records, make_trainer

from hbt_fast.cli import main
from hbt_fast.train import CheckpointDirectory, CheckpointError
from hbt_fast.train.checkpoint import MANIFEST, STATE_FILE


def write_files(contents):
    def fill(folder):
        for name, data in contents.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
    return fill


def test_manifest_lists_every_file_and_is_written_last(tmp_path):
    directory = CheckpointDirectory(tmp_path, keep=2)
    path = directory.write(3, write_files({"a.bin": b"abc", "model/w.bin": b"x" * 10}))
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["step"] == 3 and sorted(manifest["files"]) == ["a.bin", "model/w.bin"]
    assert directory.damage(path) is None and directory.newest_intact() == path
    assert (tmp_path / "latest").read_text().strip() == "step-00000003"


@pytest.mark.parametrize("harm, reason", [
    (lambda p: p.joinpath("a.bin").write_bytes(b"abd"), "a.bin does not match its checksum"),
    (lambda p: p.joinpath("a.bin").unlink(), "files differ from the manifest"),
    (lambda p: p.joinpath(MANIFEST).unlink(), "manifest.json is missing"),
    (lambda p: p.joinpath(MANIFEST).write_text("{"), "manifest.json is damaged"),
])
def test_a_damaged_checkpoint_is_skipped_for_the_older_intact_one(tmp_path, harm, reason):
    directory = CheckpointDirectory(tmp_path, keep=3)
    older = directory.write(1, write_files({"a.bin": b"one"}))
    newer = directory.write(2, write_files({"a.bin": b"abc"}))
    harm(newer)
    assert reason in directory.damage(newer)
    with pytest.warns(UserWarning, match=f"resuming from step-00000001: skipped step-00000002 .*{reason}"):
        assert directory.newest_intact() == older


def test_no_intact_checkpoint_is_one_error_naming_each(tmp_path):
    directory = CheckpointDirectory(tmp_path, keep=3)
    for step in (1, 2):
        directory.write(step, write_files({"a.bin": b"abc"})).joinpath("a.bin").write_bytes(b"zzz")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint in .*step-00000002 .*step-00000001"):
        directory.newest_intact()


def test_disk_full_while_writing_keeps_the_previous_checkpoint(tmp_path):
    directory = CheckpointDirectory(tmp_path, keep=2)
    directory.write(1, write_files({"a.bin": b"abc"}))

    def full(folder):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CheckpointError, match="writing checkpoint step-00000002 .* no space left on device; "
                                              "step-00000001 is kept"):
        directory.write(2, full)
    assert not list(tmp_path.glob(".tmp*")) and directory.newest_intact().name == "step-00000001"


def test_trainer_resumes_from_the_older_checkpoint_when_the_newest_is_damaged(tiny_model_dir, tmp_path):
    make_trainer(tiny_model_dir, tmp_path, steps=4, save_every=2).train()
    weights = tmp_path / "checkpoints" / "step-00000004" / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the tensors
    weights.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="model/model.safetensors does not match its checksum"):
        resumed = make_trainer(tiny_model_dir, tmp_path, steps=4, resume=True)
    assert resumed.step == 2
    resumed.train()
    assert [r["step"] for r in log_records(tmp_path)] == [1, 2, 3, 4]


def rewrite_state(checkpoint, **changes):
    """A forged state file with a manifest that matches it (as a careful forger would write)."""
    state = torch.load(checkpoint / STATE_FILE, weights_only=True)
    state.update(changes)
    torch.save(state, checkpoint / STATE_FILE)
    rehash(checkpoint)


def rehash(checkpoint):
    from hbt_fast.train.checkpoint import sha256_of

    manifest = json.loads((checkpoint / MANIFEST).read_text())
    for name in manifest["files"]:
        manifest["files"][name] = {"sha256": sha256_of(checkpoint / name), "bytes": (checkpoint / name).stat().st_size}
    (checkpoint / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("step", [-5, 10**6, 3, "2"])
def test_a_forged_step_is_rejected(tiny_model_dir, tmp_path, step):
    make_trainer(tiny_model_dir, tmp_path, steps=4, save_every=2, keep_checkpoints=1).train()
    rewrite_state(tmp_path / "checkpoints" / "step-00000004", step=step)
    with pytest.raises(CheckpointError, match=f"step {step!r} is not a step of this run"):
        make_trainer(tiny_model_dir, tmp_path, steps=4, resume=True)


def test_an_unreadable_state_file_is_one_line_from_the_cli(tiny_model_dir, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"group": g, "lang": lang, "query": f"q {g}", "passage": f"p {g}"}) + "\n"
                             for g in range(24) for lang in ("en", "de", "fr")), encoding="utf-8")
    flags = ["train", "--model", str(tiny_model_dir), "--train", str(pairs), "--output", str(tmp_path / "run"),
             "--steps", "2", "--batch-size", "8", "--keep-checkpoints", "1", "--no-progress"]
    assert main(flags) == 0
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000002"
    (checkpoint / STATE_FILE).write_bytes(b"not a torch file")
    rehash(checkpoint)
    capsys.readouterr()
    assert main([*flags, "--resume"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert f"{checkpoint}: cannot read {STATE_FILE}" in error


def test_disk_full_during_a_training_checkpoint_is_a_clear_error(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, steps=4, save_every=2)
    original = trainer.encoder.save
    calls = []

    def save_until_full(folder):
        calls.append(folder)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(folder)

    trainer.encoder.save = save_until_full
    with pytest.raises(CheckpointError, match="step-00000004 .* no space left on device; step-00000002 is kept"):
        trainer.train()
    assert trainer.checkpoints.newest_intact().name == "step-00000002"


def test_resume_refuses_changed_settings_naming_each(tiny_model_dir, tmp_path):
    make_trainer(tiny_model_dir, tmp_path, steps=4, save_every=2).train()
    with pytest.raises(ValueError, match=r"lr \(saved 0.001, now 0.01\), temperature \(saved 0.05, now 0.1\).*"
                                         r"--override lr,temperature"):
        make_trainer(tiny_model_dir, tmp_path, steps=4, resume=True, lr=1e-2, temperature=0.1)
    resumed = make_trainer(tiny_model_dir, tmp_path, steps=6, resume=True, lr=1e-2, weight_decay=0.5,
                           override=("lr", "steps", "weight_decay"), log_every=2)  # free: no override needed
    assert resumed.step == 4
    # Linear decay to 0 at step 6 (warm-up 0): at step 4 the new lr's third.
    assert [g["lr"] for g in resumed.optimizer.param_groups] == pytest.approx([1e-2 / 3] * 2)
    assert resumed.optimizer.param_groups[0]["weight_decay"] == 0.5
    resumed.train()
    assert [r["step"] for r in log_records(tmp_path)] == [1, 2, 3, 4, 6]


def test_kill_during_the_write_leaves_only_a_temporary_folder(tmp_path):
    directory = CheckpointDirectory(tmp_path, keep=2)

    def killed(folder):
        (folder / "a.bin").write_bytes(b"half")
        raise KeyboardInterrupt  # not an OSError: nothing is cleaned, as after a kill

    with pytest.raises(KeyboardInterrupt):
        directory.write(1, killed)
    assert directory.candidates() == [] and not directory.has_intact()
