"""Callbacks: what happens around the steps (timing, progress, logging, checkpoints, evaluation).

A callback overrides any of ``on_train_begin(trainer)``, ``on_step_end(trainer, record)``,
``on_evaluate(trainer, result, score)`` and ``on_train_end(trainer)``. ``record`` is the step's
log line (``step``, ``epoch``, ``loss``, ``lr``, ``batch``, ``seconds``, ``sampler_s``,
``loss_s``). The trainer runs its own callbacks first (in the order below), then the user's
(``Trainer(config, callbacks=[...])``), so a user callback sees the checkpoint of its step.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

__all__ = ["Callback", "CheckpointCallback", "EvaluationCallback", "LoggingCallback",
           "ProgressCallback", "TimingCallback", "default_callbacks"]

LOG_FILE = "train_log.jsonl"


class Callback:
    """Does nothing; subclasses override the moments they care about."""

    def on_train_begin(self, trainer) -> None:
        pass

    def on_step_end(self, trainer, record: dict) -> None:
        pass

    def on_evaluate(self, trainer, result, score: float) -> None:
        pass

    def on_train_end(self, trainer) -> None:
        pass


class TimingCallback(Callback):
    """Totals over the run: steps, pairs, seconds in steps, sampler and loss; ``pairs_per_second``."""

    def __init__(self):
        self.steps = self.pairs = 0
        self.seconds = self.sampler_s = self.loss_s = 0.0

    def on_step_end(self, trainer, record: dict) -> None:
        self.steps += 1
        self.pairs += trainer.config.batch_size
        self.seconds += record["seconds"]
        self.sampler_s += record["sampler_s"]
        self.loss_s += record["loss_s"]

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> dict:
        return {"steps": self.steps, "pairs": self.pairs, "seconds": self.seconds,
                "sampler_s": self.sampler_s, "loss_s": self.loss_s,
                "pairs_per_second": self.pairs_per_second}


class ProgressCallback(Callback):
    """One bar over the steps (rank 0)."""

    def on_train_begin(self, trainer) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=trainer.total_steps, initial=trainer.step, desc="train", unit="step",
                        disable=not trainer.config.progress or trainer.rank != 0)

    def on_step_end(self, trainer, record: dict) -> None:
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", batch=record["batch"])
        self.bar.update()

    def on_train_end(self, trainer) -> None:
        self.bar.close()


class LoggingCallback(Callback):
    """``train_log.jsonl`` (``report_to`` jsonl or tensorboard) and TensorBoard scalars
    (``report_to="tensorboard"``, in ``OUTPUT/tensorboard``): loss, learning rate, the share of
    each batch kind so far, and every evaluation metric. Rank 0 only."""

    def __init__(self, output: Path, report_to: str, log_every: int):
        self.log = Path(output) / LOG_FILE if report_to != "none" else None
        self.tensorboard = Path(output) / "tensorboard" if report_to == "tensorboard" else None
        self.log_every = log_every
        self.kinds: Counter = Counter()
        self.writer = None

    def on_train_begin(self, trainer) -> None:
        if self.tensorboard is not None and trainer.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.tensorboard), purge_step=trainer.step + 1)

    def _write(self, trainer, record: dict) -> None:
        if self.log is not None and trainer.rank == 0:
            with open(self.log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def on_step_end(self, trainer, record: dict) -> None:
        self.kinds[record["batch"].partition(":")[0]] += 1
        if record["step"] % self.log_every:
            return
        self._write(trainer, record)
        if self.writer is not None:
            total = sum(self.kinds.values())
            scalars = {"train/loss": record["loss"], "train/lr": record["lr"],
                       **{f"batches/{kind}_share": n / total for kind, n in self.kinds.items()}}
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, record["step"])

    def on_evaluate(self, trainer, result, score: float) -> None:
        summary = {section: {k: v for k, v in values.items() if isinstance(v, float)}
                   for section, values in result.headline.items()}
        self._write(trainer, {"step": trainer.step, "eval": summary, "score": score})
        if self.writer is not None:
            for name, value in result.metrics().items():
                self.writer.add_scalar(f"eval/{name}", value, trainer.step)
            self.writer.flush()

    def on_train_end(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()


class CheckpointCallback(Callback):
    """A checkpoint every ``save_every`` steps; at the end a checkpoint and ``model/``."""

    def __init__(self, save_every: int):
        self.save_every = save_every

    def on_step_end(self, trainer, record: dict) -> None:
        if self.save_every and trainer.step % self.save_every == 0 and trainer.step < trainer.total_steps:
            trainer.save_checkpoint()

    def on_train_end(self, trainer) -> None:
        # Saved before the final evaluation: an evaluation that fails must not cost the model.
        trainer.save_checkpoint()
        trainer.save_model(trainer.output / "model")


class EvaluationCallback(Callback):
    """Evaluation every ``eval_every`` steps and at the end (``best/`` follows the metric)."""

    def __init__(self, eval_every: int):
        self.eval_every = eval_every

    def on_step_end(self, trainer, record: dict) -> None:
        if self.eval_every and trainer.step % self.eval_every == 0 and trainer.step < trainer.total_steps:
            trainer.evaluate()

    def on_train_end(self, trainer) -> None:
        trainer.evaluate(progress=trainer.config.progress)
        trainer.save_model_card(trainer.output / "model")  # now with the final results


def default_callbacks(config, output: Path) -> list:
    callbacks = [TimingCallback(), ProgressCallback(),
                 LoggingCallback(output, config.report_to, config.log_every),
                 CheckpointCallback(config.save_every)]
    if config.eval:
        callbacks.append(EvaluationCallback(config.eval_every))
    return callbacks


def timed(batches):
    """The sampler's batches with the seconds each took to produce."""
    iterator = iter(batches)
    while True:
        started = time.perf_counter()
        batch = next(iterator, None)
        if batch is None:
            return
        yield batch, time.perf_counter() - started
