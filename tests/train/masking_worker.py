"""Run by test_duplicate_masking.py under torchrun: the first step's loss (and gradients) of
each case on this rank's half of the global batch, saved by rank 0."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from train_helpers import (duplicate_corpus, first_batch_gradients, make_trainer,  # noqa: E402
                           one_passage_corpus, without_dropout)

from hbt_fast.train import init_distributed, leave_distributed  # noqa: E402

ONE_PASSAGE = dict(batch_size=64, mode="xx")
CASES = {
    "one passage": (one_passage_corpus, ONE_PASSAGE),
    "one passage, gradcache": (one_passage_corpus, {**ONE_PASSAGE, "chunk_size": 8}),
    "one passage, unmasked": (one_passage_corpus, {**ONE_PASSAGE, "mask_duplicates": False}),
    "duplicates and negatives": (duplicate_corpus, {"chunk_size": 3}),
}


def main(model_dir: str, output: str) -> None:
    init_distributed()
    rank = torch.distributed.get_rank()
    for index, (name, (corpus, overrides)) in enumerate(CASES.items()):
        trainer = without_dropout(make_trainer(model_dir, Path(output) / str(index) / str(rank),
                                               corpus=corpus(), **overrides))
        assert trainer.world_size == 2
        loss, grads = first_batch_gradients(trainer)
        if rank == 0:
            torch.save({"loss": loss, "gradients": grads}, Path(output) / f"{index}.pt")
    del trainer  # its DDP wrapper holds the group (see leave_distributed)
    leave_distributed()  # together: a rank exiting early breaks the peer's socket


if __name__ == "__main__":
    main(*sys.argv[1:])
