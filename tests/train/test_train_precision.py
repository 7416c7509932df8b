"""Gradient accumulation and fp16 (issue 24, item 3), as transformers users expect them.

Accumulation: an update over N sampler batches uses the mean of the N batches' gradients, each
batch its own contrastive problem (its in-batch negatives, its X-X or X-Y kind) — the gradient
of the N losses averaged, which is what ``gradient_accumulation_steps`` does with a
sentence-transformers loss. A global batch split into chunks with one loss over all of it is
GradCache (``chunk_size``), tested elsewhere. fp16: float16 autocast with a gradient scaler on
CUDA; the scaler's part (loss scaling, unscaling, skipped updates) runs here on CPU autocast."""

import itertools
import math

import pytest
import torch
from train_helpers import first_batch_gradients, gradients, log_records, make_trainer, without_dropout

from hbt_fast.train import components
from hbt_fast.train.masking import joint_groups


def test_an_accumulated_update_is_the_gradient_of_the_batches_mean_loss(tiny_model_dir, tmp_path):
    trainer = without_dropout(make_trainer(tiny_model_dir, tmp_path / "run", gradient_accumulation_steps=3,
                                           hard_negatives=0))
    batches = list(itertools.islice(trainer.sampler, 3))
    assert len({batch.kind for batch in batches}) == 2  # X-X and X-Y batches in one update
    # The reference: plain autograd on each batch's own loss, divided by the batch count.
    trainer.optimizer.zero_grad(set_to_none=True)
    losses = []
    for batch in batches:
        inputs = trainer.tokens.step_inputs(*batch)
        queries, passages = trainer.sides("query", inputs.query_ids), trainer.sides("passage", inputs.passage_ids)
        groups = joint_groups(inputs.query_groups, inputs.passage_groups)  # (group, text) keys -> ids
        loss = trainer.loss_fn(queries, passages, *groups)
        (loss / len(batches)).backward()
        losses.append(float(loss.detach()))
    expected = gradients(trainer)
    loss, accumulated = first_batch_gradients(trainer)
    # On a GPU cuBLAS picks its kernel by shape, so the two paths sum in another order.
    on_gpu = trainer.device.type == "cuda"
    assert loss == pytest.approx(sum(losses) / 3, rel=1e-5 if on_gpu else 1e-6)
    scale = max(float(value.abs().max()) for value in expected.values())
    for name, value in expected.items():
        torch.testing.assert_close(accumulated[name], value, rtol=1e-5, atol=(1e-5 if on_gpu else 1e-6) * scale)


def test_accumulation_uses_the_batches_of_as_many_single_steps_and_one_schedule_step_each(tiny_model_dir,
                                                                                           tmp_path):
    make_trainer(tiny_model_dir, tmp_path / "single", steps=6).train()
    accumulated = make_trainer(tiny_model_dir, tmp_path / "accumulated", steps=3, gradient_accumulation_steps=2)
    per_epoch = len(accumulated.sampler)
    accumulated.train()
    single = [r["batch"] for r in log_records(tmp_path / "single")]
    records = log_records(tmp_path / "accumulated")
    assert [r["batch"] for r in records] == [",".join(single[i:i + 2]) for i in range(0, 6, 2)]
    assert [r["lr"] for r in records] == pytest.approx([1e-3 * (1 - k / 3) for k in (1, 2, 3)])
    assert accumulated.own_callbacks[0].pairs == 6 * 8
    by_epochs = make_trainer(tiny_model_dir, tmp_path / "epochs", steps=None, epochs=1.0, gradient_accumulation_steps=2)
    assert by_epochs.total_steps == math.ceil(per_epoch / 2)


def test_fp16_needs_a_cuda_device_and_excludes_bf16(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="fp16 and bf16 exclude each other"):
        make_trainer(tiny_model_dir, tmp_path / "both", fp16=True, bf16=True)
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: fp16 is allowed")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device, and this process runs on cpu"):
        make_trainer(tiny_model_dir, tmp_path / "cpu", fp16=True)


@pytest.fixture
def cpu_fp16(monkeypatch):
    """fp16 on CPU autocast, with a scaler of the given initial scale: the trainer's scaler
    logic, which on a GPU runs the same way."""
    def use(initial_scale):
        monkeypatch.setattr(components, "make_gradient_scaler",
                            lambda config, device: torch.amp.GradScaler("cpu", init_scale=initial_scale)
                            if config.fp16 else None)
    return use


def test_fp16_gradients_are_unscaled_before_clipping_and_the_update(tiny_model_dir, tmp_path, cpu_fp16):
    cpu_fp16(2.0 ** 12)
    reference_loss, reference = first_batch_gradients(without_dropout(make_trainer(tiny_model_dir, tmp_path / "a")))
    trainer = without_dropout(make_trainer(tiny_model_dir, tmp_path / "b", fp16=True, steps=2))
    assert trainer.autocast_dtype == torch.float16 and not trainer.use_bf16
    loss, scaled = first_batch_gradients(trainer)
    assert loss == pytest.approx(reference_loss, rel=1e-2)  # float16 embeddings, the loss itself unscaled
    scale = max(float(value.abs().max()) for value in reference.values())
    for name, value in reference.items():  # the backward pass ran on the scaled loss
        torch.testing.assert_close(scaled[name] / 2.0 ** 12, value, rtol=0.05, atol=0.02 * scale)
    before = {name: p.detach().clone() for name, p in trainer.encoder.named_parameters()}
    trainer.train()
    records = log_records(tmp_path / "b")
    assert [(r["loss_scale"], r["skipped"]) for r in records] == [(2.0 ** 12, False)] * 2
    # The first step's batch is the one above: its norm is taken after unscaling, as clipping needs.
    norm = math.sqrt(sum(float(value.double().square().sum()) for value in reference.values()))
    assert records[0]["grad_norm"] == pytest.approx(norm, rel=0.02)
    assert records[0]["loss"] == pytest.approx(loss, rel=1e-6)
    assert any(not torch.equal(before[name], p) for name, p in trainer.encoder.named_parameters())


def test_fp16_skips_an_update_whose_gradient_overflowed_and_lowers_the_scale(tiny_model_dir, tmp_path, cpu_fp16):
    cpu_fp16(2.0 ** 100)  # every float16 gradient overflows
    trainer = make_trainer(tiny_model_dir, tmp_path / "run", fp16=True, steps=2)
    before = {name: p.detach().clone() for name, p in trainer.encoder.named_parameters()}
    trainer.train()  # no NonFiniteLossError: the scaler owns gradient overflow
    records = log_records(tmp_path / "run")
    assert [(r["loss_scale"], r["skipped"]) for r in records] == [(2.0 ** 100, True), (2.0 ** 99, True)]
    assert all(math.isfinite(r["loss"]) and not math.isfinite(r["grad_norm"]) for r in records)
    assert [r["lr"] for r in records] == [1e-3, 1e-3]  # the schedule waits for an update
    assert all(torch.equal(before[name], p) for name, p in trainer.encoder.named_parameters())
    assert trainer.scaler.get_scale() == 2.0 ** 98


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast is offered on CUDA devices only")
def test_fp16_trains_on_a_cuda_device_and_resumes_with_its_scale(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path / "run", fp16=True, steps=3)
    assert trainer.scaler is not None and trainer.autocast_dtype == torch.float16
    trainer.train()
    records = log_records(tmp_path / "run")
    assert all(math.isfinite(r["loss"]) and "loss_scale" in r for r in records)
    resumed = make_trainer(tiny_model_dir, tmp_path / "run", fp16=True, steps=4, resume=True, override=("steps",))
    assert resumed.scaler.get_scale() == trainer.scaler.get_scale()
    resumed.train()
