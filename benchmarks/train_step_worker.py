"""Run under torchrun by bench_train_step.py: the 2-process step with DistributedDataParallel's
bucketed, overlapped reduction against one all_reduce per gradient tensor (what it replaced),
alternating on the same batches. Rank 0 writes the timings and the largest gradient difference."""

import contextlib
import json
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

from hbt_fast.data import read_pairs_jsonl
from hbt_fast.train import TrainConfig, Trainer, global_batch_gradients, init_distributed, leave_distributed


class PerTensorAllReduce:
    """The reference reduction: no DDP; after the backward, one all_reduce per parameter."""

    no_sync = staticmethod(contextlib.nullcontext)

    @staticmethod
    def reduce(parameters):
        for parameter in parameters:
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad)


def per_tensor_step(trainer, inputs):
    # the same loss as the trainer's step: its duplicate masking (the groups) included
    ids = {"query": inputs.query_ids, "passage": inputs.passage_ids}
    global_batch_gradients(lambda side, rows: trainer.sides(side, ids[side][rows]), len(inputs.query_ids),
                           len(inputs.passage_ids), trainer.loss_fn, query_groups=inputs.query_groups,
                           passage_groups=inputs.passage_groups, chunk_size=trainer.config.chunk_size,
                           ddp=PerTensorAllReduce)
    PerTensorAllReduce.reduce(trainer.encoder.parameters())


def timed(step):
    dist.barrier()
    started = time.perf_counter()
    step()
    dist.barrier()
    return time.perf_counter() - started


def main(model, pairs, output, result_file, batch_size, rounds, chunk_size):
    init_distributed()
    config = TrainConfig(model=model, train=pairs, output=f"{output}/rank{dist.get_rank()}", steps=100,
                         batch_size=int(batch_size), progress=False, max_query_length=64,
                         max_passage_length=128, chunk_size=int(chunk_size) or None)
    trainer = Trainer(config, corpus=read_pairs_jsonl(pairs))
    for module in trainer.encoder.modules():  # same numbers in both methods
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    batches = iter(trainer.sampler)
    times = {"ddp_bucketed": [], "per_tensor_all_reduce": []}
    largest_difference = 0.0
    for _ in range(int(rounds) + 1):  # the first round warms up
        inputs = trainer.tokens.step_inputs(*next(batches))
        trainer.optimizer.zero_grad(set_to_none=True)
        times["ddp_bucketed"].append(timed(lambda: trainer.compute_gradients(inputs)))
        reduced = [p.grad.clone() for p in trainer.encoder.parameters() if p.grad is not None]
        trainer.optimizer.zero_grad(set_to_none=True)
        times["per_tensor_all_reduce"].append(timed(lambda: per_tensor_step(trainer, inputs)))
        reference = [p.grad for p in trainer.encoder.parameters() if p.grad is not None]
        largest_difference = max(largest_difference, max(float((a - b).abs().max()) for a, b in zip(reduced, reference)))
    if dist.get_rank() == 0:
        median = {name: float(np.median(values[1:])) for name, values in times.items()}
        with open(result_file, "w", encoding="utf-8") as handle:
            json.dump({"median_s": median, "all_s": times, "largest_gradient_difference": largest_difference,
                       "tensors": len(reduced), "parameters": sum(p.numel() for p in trainer.encoder.parameters())},
                      handle, indent=1)
    trainer = None  # its DDP wrapper holds the group (see leave_distributed)
    leave_distributed()


if __name__ == "__main__":
    main(*sys.argv[1:])
