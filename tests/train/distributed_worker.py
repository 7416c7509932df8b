"""Run by test_trainer.py under torchrun: one gradient step on this rank's share of batch 8 for
each case, saved by rank 0 for comparison with a single process."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from train_helpers import first_batch_gradients, make_trainer, synthetic_corpus, without_dropout  # noqa: E402

from hbt_fast.data import PairCorpus  # noqa: E402
from hbt_fast.train import init_distributed, leave_distributed  # noqa: E402

CASES = {"one-pass": {}, "gradcache": {"chunk_size": 3}, "negatives": {"chunk_size": 3, "hard_negatives": 2},
         "accumulated": {"gradient_accumulation_steps": 3}}


def case_corpus(name):
    if name != "negatives":
        return synthetic_corpus()
    corpus = synthetic_corpus(negatives=2)
    lists = [corpus.negatives[start:start + i % 3]  # 0, 1 or 2 per pair
             for i, start in enumerate(corpus.negative_offsets[:-1])]
    return PairCorpus.with_negative_lists(corpus.queries, corpus.passages, corpus.languages, corpus.groups, lists)


def main(model_dir: str, output: str) -> None:
    init_distributed()
    for name, overrides in CASES.items():
        trainer = without_dropout(make_trainer(model_dir, Path(output) / name / str(torch.distributed.get_rank()),
                                               corpus=case_corpus(name), **overrides))
        assert trainer.world_size == 2 and trainer.ddp is not None
        loss, grads = first_batch_gradients(trainer)
        if trainer.rank == 0:
            torch.save({"loss": loss, "gradients": grads}, Path(output) / f"{name}.pt")
    del trainer  # its DDP wrapper holds the group (see leave_distributed)
    leave_distributed()  # together: a rank exiting early breaks the peer's socket


if __name__ == "__main__":
    main(*sys.argv[1:])
