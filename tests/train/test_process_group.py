"""Who leaves torchrun's process group: the Trainer leaves one it joined itself, when the run ends
normally (a rank exiting with gloo's group alive can abort at interpreter exit), and leaves alone
one its caller joined or a run that failed."""

import pytest
import torch
import torch.distributed as dist
from train_helpers import make_trainer

from hbt_fast.train import Callback, NonFiniteLossError, components, leave_distributed


@pytest.fixture
def one_rank_group(tmp_path):
    """A function that joins a 1-rank gloo group; the group is gone after the test either way."""
    def join() -> bool:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
        return True
    yield join
    if dist.is_initialized():
        dist.destroy_process_group()


def test_train_leaves_the_group_it_joined(tiny_model_dir, tmp_path, one_rank_group, monkeypatch):
    monkeypatch.setattr(components, "init_distributed", one_rank_group)
    trainer = make_trainer(tiny_model_dir, tmp_path / "run", steps=1)
    assert dist.is_initialized()
    trainer.train()
    assert not dist.is_initialized()


def test_train_keeps_a_group_its_caller_joined(tiny_model_dir, tmp_path, one_rank_group):
    one_rank_group()
    make_trainer(tiny_model_dir, tmp_path / "run", steps=1).train()
    assert dist.is_initialized()


def test_a_failed_run_keeps_the_group_it_joined(tiny_model_dir, tmp_path, one_rank_group, monkeypatch):
    # after a failure a peer may be mid-collective: a barrier there would hang
    class PoisonWeights(Callback):
        def on_step_end(self, state, record):  # reads the trainer made below
            with torch.no_grad():
                next(trainer.encoder.parameters()).fill_(float("nan"))

    monkeypatch.setattr(components, "init_distributed", one_rank_group)
    trainer = make_trainer(tiny_model_dir, tmp_path / "run", steps=2, callbacks=[PoisonWeights()])
    with pytest.raises(NonFiniteLossError):
        trainer.train()
    assert dist.is_initialized()


def test_leave_distributed_without_a_group_does_nothing():
    assert not dist.is_initialized()
    leave_distributed()
    assert not dist.is_initialized()
