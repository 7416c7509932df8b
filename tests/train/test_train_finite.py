"""Non-finite weights: an update that leaves a NaN or infinite parameter stops the run before
anything is saved (one line, exit 1, naming the step and the parameter), and a checkpoint whose
saved weights are not finite is never "good": not named after a failure, not resumed from."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from train_helpers import make_trainer

from hbt_fast.cli import main
from hbt_fast.train import Callback, NonFiniteLossError
from hbt_fast.train.finite import first_non_finite, non_finite_weights


def write_pairs(path):
    path.write_text("".join(json.dumps({"group": g, "lang": lang, "query": f"q {g}", "passage": f"p {g}"}) + "\n"
                            for g in range(24) for lang in ("en", "de", "fr")), encoding="utf-8")
    return path


def every_weight_finite(folder):
    return all(non_finite_weights(path.parent) is None for path in folder.rglob("*.safetensors"))


def test_a_weight_decay_that_overflows_the_weights_stops_at_step_one(tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--model", str(tiny_model_dir), "--train", str(write_pairs(tmp_path / "pairs.jsonl")),
                 "--output", str(run), "--steps", "1", "--batch-size", "8", "--weight-decay", "1e300",
                 "--no-progress"])
    # Loading the model draws transformers' progress bars (carriage returns) before it.
    error = capsys.readouterr().err.splitlines()[-1]
    assert code == 1
    assert error.startswith("hbt-fast train: error: step 1: parameter ")
    assert "is not finite after the optimizer update (lr 3e-05, weight_decay 1e+300)" in error
    assert "no good checkpoint exists yet" in error
    assert not (run / "model").exists() and not list(run.glob("checkpoints/step-*"))


class DecayAfter(Callback):
    """From step ``step`` on (its checkpoint written), a weight decay that overflows the weights."""

    def __init__(self, step):
        self.step, self.optimizer = step, None  # the trainer's, given once it is built

    def on_step_end(self, state, record):
        if state.step == self.step:
            self.optimizer.param_groups[0]["weight_decay"] = 1e300


def test_the_error_names_the_newest_checkpoint_with_finite_weights(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, steps=4, save_every=1, keep_checkpoints=3,
                           callbacks=[decay := DecayAfter(2)])
    decay.optimizer = trainer.optimizer
    with pytest.raises(NonFiniteLossError, match=r"^step 3: parameter \S+ is not finite after the optimizer "
                                                 r"update .*; the last good checkpoint is step-00000002$"):
        trainer.train()
    assert [p.name for p in trainer.checkpoints.candidates()] == ["step-00000002", "step-00000001"]
    assert every_weight_finite(tmp_path / "checkpoints") and not (tmp_path / "model").exists()


def poison(checkpoint):
    """NaN in one saved weight, with a manifest that matches (as a run of an older version left it)."""
    from hbt_fast.train.checkpoint import MANIFEST, sha256_of

    weights = checkpoint / "model" / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name][0] = float("nan")
    save_file(tensors, weights, metadata={"format": "pt"})
    manifest = json.loads((checkpoint / MANIFEST).read_text())
    manifest["files"]["model/model.safetensors"] = {"sha256": sha256_of(weights), "bytes": weights.stat().st_size}
    (checkpoint / MANIFEST).write_text(json.dumps(manifest))
    return name


def test_a_checkpoint_with_non_finite_weights_is_not_good(tiny_model_dir, tmp_path):
    make_trainer(tiny_model_dir, tmp_path, steps=4, save_every=2).train()
    name = poison(tmp_path / "checkpoints" / "step-00000004")
    with pytest.warns(UserWarning, match=rf"resuming from step-00000002: skipped step-00000004 \(model/model"
                                         rf".safetensors:{name} holds non-finite weights\)"):
        resumed = make_trainer(tiny_model_dir, tmp_path, steps=6, resume=True, override=("steps",),
                               callbacks=[decay := DecayAfter(3)])
    decay.optimizer = resumed.optimizer
    assert resumed.step == 2
    # step-00000004 is still the newest folder, but not a good one.
    with pytest.raises(NonFiniteLossError, match="step 4: .*the last good checkpoint is step-00000002$"):
        resumed.train()


def test_first_non_finite_names_the_first_bad_tensor():
    tensors = [("a", torch.ones(3)), ("ids", torch.arange(3)), ("b", torch.tensor([1.0, float("-inf")])),
               ("c", torch.tensor([float("nan")])), ("big", torch.full((2,), 3e38))]
    assert first_non_finite(tensors) == "b"
    assert first_non_finite([tensors[0], tensors[1], tensors[4]]) is None
    assert first_non_finite([]) is None
