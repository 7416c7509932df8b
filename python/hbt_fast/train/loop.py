"""The training loop: sampler -> step (gradients, optimiser) -> callbacks, until the last step."""

from __future__ import annotations

from typing import Optional

from hbt_fast.train.callbacks import timed
from hbt_fast.train.card import write_run_config
from hbt_fast.train.resume import RUN_CONFIG

__all__ = ["run"]


def run(trainer) -> Optional[dict]:
    """Train ``trainer`` to ``trainer.total_steps``; returns its last evaluation (or None).

    An exception (a non-finite loss, a failed checkpoint, a callback's) stops the run where it
    is: no final model is written, and the newest intact checkpoint is what ``resume`` finds."""
    trainer.output.mkdir(parents=True, exist_ok=True)
    if trainer.rank == 0:
        write_run_config(trainer, trainer.output / RUN_CONFIG)
    for callback in trainer.callbacks:
        callback.on_train_begin(trainer)
    while trainer.step < trainer.total_steps:
        for batch, sampler_seconds in timed(trainer.sampler):
            record = trainer.train_step(batch)
            record["sampler_s"] = sampler_seconds
            for callback in trainer.callbacks:
                callback.on_step_end(trainer, record)
            if trainer.step >= trainer.total_steps:
                break
        else:  # the epoch ran out before the last step
            trainer.sampler.set_epoch(trainer.sampler.epoch + 1)
    for callback in trainer.callbacks:
        callback.on_train_end(trainer)
    return trainer.last_evaluation
