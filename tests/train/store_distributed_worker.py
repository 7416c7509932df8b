"""Run by test_train_store_distributed.py under torchrun: both ranks memory-map the same token
store; rank 0 saves the first step's loss and gradients, then the weights after STEPS steps."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from train_helpers import first_batch_gradients, make_trainer, without_dropout  # noqa: E402

from hbt_fast.data.token_store import TokenStore  # noqa: E402
from hbt_fast.train import init_distributed, leave_distributed  # noqa: E402

STEPS = 3


def main(model_dir: str, store: str, output: str) -> None:
    init_distributed()
    rank = torch.distributed.get_rank()
    trainer = without_dropout(make_trainer(model_dir, Path(output) / "gradients" / str(rank),
                                           corpus=TokenStore(store)))
    assert trainer.world_size == 2 and trainer.ddp is not None
    loss, grads = first_batch_gradients(trainer)
    if rank == 0:
        torch.save({"loss": loss, "gradients": grads}, Path(output) / "gradients.pt")
    # One run folder for both ranks, as `torchrun ... hbt-fast train --output RUN` uses it.
    run = without_dropout(make_trainer(model_dir, Path(output) / "run", corpus=TokenStore(store),
                                       steps=STEPS))
    run.train()
    if rank == 0:
        torch.save({name: value.detach().clone() for name, value in run.encoder.state_dict().items()},
                   Path(output) / "weights.pt")
    del trainer, run  # their DDP wrappers hold the group (see leave_distributed)
    leave_distributed()  # together: a rank exiting early breaks the peer's socket


if __name__ == "__main__":
    main(*sys.argv[1:])
