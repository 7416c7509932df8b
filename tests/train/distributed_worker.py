"""Run by test_train.py under torchrun: one gradient step on this rank's slice of batch 8."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_train import gradients, make_trainer, without_dropout  # noqa: E402

from hbt_fast.train import init_distributed  # noqa: E402


def main(model_dir: str, output: str) -> None:
    init_distributed()
    trainer = without_dropout(make_trainer(model_dir, Path(output)))
    assert trainer.world_size == 2
    query_rows, passage_rows = next(iter(trainer.sampler))
    loss = trainer.compute_gradients(*trainer.corpus.texts(query_rows, passage_rows))
    if trainer.rank == 0:
        Path(output).mkdir(parents=True, exist_ok=True)
        torch.save({"loss": loss, "gradients": gradients(trainer)}, Path(output) / "rank0.pt")
    torch.distributed.barrier()  # leave together: a rank exiting early breaks the peer's socket
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
