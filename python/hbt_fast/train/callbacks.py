"""Callbacks: what is observed around the steps (timing, progress, logging).

A callback overrides any of ``on_train_begin(state)``, ``on_step_end(state, record)``,
``on_evaluate(state, result, score)`` and ``on_train_end(state)``; ``state`` is the run's
:class:`~hbt_fast.train.state.TrainerState` (settings, output folder, rank, step, epoch, best
score) and ``record`` the step's log line (``step``, ``epoch``, ``loss``, ``grad_norm``, ``lr``,
``batch``, ``seconds``, ``sampler_s``, ``loss_s``; with fp16 also ``loss_scale`` and
``skipped``). With gradient accumulation ``loss`` is the mean over the step's sampler batches
and ``batch`` their kinds, comma-separated. Checkpoints and evaluations are the trainer's own loop,
not callbacks. After a step the trainer's callbacks run first (timing, progress, logging), then
its scheduled checkpoint and evaluation, then the user's (``Trainer(config, callbacks=[...])``),
so a user callback sees the checkpoint of its step. A callback that must act on the model or
optimiser is given them when it is made (they are the trainer's attributes).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from pathlib import Path

__all__ = ["Callback", "LoggingCallback", "ProgressCallback", "TimingCallback", "default_callbacks", "timed"]

LOG_FILE = "train_log.jsonl"


class Callback:
    """Does nothing; subclasses override the moments they care about."""

    def on_train_begin(self, state) -> None:
        pass

    def on_step_end(self, state, record: dict) -> None:
        pass

    def on_evaluate(self, state, result, score: float) -> None:
        pass

    def on_train_end(self, state) -> None:
        pass


class TimingCallback(Callback):
    """Totals over the run: steps, pairs, seconds in steps, sampler and loss; ``pairs_per_second``."""

    def __init__(self):
        self.steps = self.pairs = 0
        self.seconds = self.sampler_s = self.loss_s = 0.0

    def on_step_end(self, state, record: dict) -> None:
        self.steps += 1
        self.pairs += state.config.batch_size * state.config.gradient_accumulation_steps
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
    """One bar over the steps, and one line per evaluation with its metrics (rank 0; the line
    is printed with or without the bar)."""

    def on_train_begin(self, state) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=state.total_steps, initial=state.step, desc="train", unit="step",
                        disable=not state.config.progress or state.rank != 0)

    def on_step_end(self, state, record: dict) -> None:
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", batch=record["batch"])
        self.bar.update()

    def on_evaluate(self, state, result, score: float) -> None:
        from tqdm.auto import tqdm

        if state.rank != 0:
            return
        best = " (best so far)" if result.is_better(state.config.eval_metric, state.best_score) else ""
        metrics = " ".join(f"{name}={value:.4f}" for name, value in result.metrics().items())
        # Printed above the bar, if there is one (evaluate() may also run outside train()).
        tqdm.write(f"step {state.step}/{state.total_steps} {result.task}: {metrics}; "
                   f"{state.config.eval_metric} {score:.4f}{best}")

    def on_train_end(self, state) -> None:
        self.bar.close()


class LoggingCallback(Callback):
    """``train_log.jsonl`` (``"jsonl"`` in ``report_to``) and TensorBoard scalars
    (``"tensorboard"``, in ``OUTPUT/tensorboard``): loss, gradient norm, learning rate, the share
    of each batch kind so far, and every evaluation metric; when the run ends TensorBoard also
    gets its settings as hyperparameters, shown with the final loss and evaluation metrics in
    its HParams tab. Rank 0 only."""

    def __init__(self, output: Path, report_to: tuple, log_every: int):
        self.log = Path(output) / LOG_FILE if "jsonl" in report_to else None
        self.tensorboard = Path(output) / "tensorboard" if "tensorboard" in report_to else None
        self.log_every = log_every
        self.kinds: Counter = Counter()
        self.final_metrics: dict = {}  # scalar tags the hyperparameters are shown with
        self.writer = None

    def on_train_begin(self, state) -> None:
        if self.tensorboard is not None and state.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.tensorboard), purge_step=state.step + 1)

    def _write(self, state, record: dict) -> None:
        if self.log is not None and state.rank == 0:
            with open(self.log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def on_step_end(self, state, record: dict) -> None:
        self.kinds.update(batch.partition(":")[0] for batch in record["batch"].split(","))
        self.final_metrics["train/loss"] = record["loss"]
        if record["step"] % self.log_every:
            return
        self._write(state, record)
        if self.writer is not None:
            total = sum(self.kinds.values())
            scalars = {"train/loss": record["loss"], "train/grad_norm": record["grad_norm"], "train/lr": record["lr"],
                       **{f"batches/{kind}_share": n / total for kind, n in self.kinds.items()}}
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, record["step"])

    def on_evaluate(self, state, result, score: float) -> None:
        summary = {section: {k: v for k, v in values.items() if isinstance(v, float)}
                   for section, values in result.headline.items()}
        self._write(state, {"step": state.step, "eval": summary, "score": score})
        self.final_metrics.update({f"eval/{name}": value for name, value in result.metrics().items()})
        if self.writer is not None:
            for name, value in result.metrics().items():
                self.writer.add_scalar(f"eval/{name}", value, state.step)
            self.writer.flush()

    def on_train_end(self, state) -> None:
        if self.writer is not None:
            self._write_hyperparameters(state.config)
            self.writer.close()

    def _write_hyperparameters(self, config) -> None:
        """The HParams summaries, in the run's own event file (``SummaryWriter.add_hparams``
        would start a second run in a subfolder): the metrics are named by their scalar tags,
        whose newest values TensorBoard shows beside the settings."""
        from torch.utils.tensorboard.summary import hparams

        settings = {name: ",".join(value) if isinstance(value, tuple) else value
                    for name, value in dataclasses.asdict(config).items()}
        for summary in hparams(settings, self.final_metrics):
            self.writer.file_writer.add_summary(summary)


def default_callbacks(config, output: Path) -> list:
    """The trainer's own: timing, the progress bar and the logs ``config`` asks for (wandb and
    mlflow: :func:`hbt_fast.train.reporting.integration_reporters`)."""
    return [TimingCallback(), ProgressCallback(), LoggingCallback(output, config.report_to, config.log_every)]


def timed(batches):
    """The sampler's batches with the seconds each took to produce."""
    iterator = iter(batches)
    while True:
        started = time.perf_counter()
        batch = next(iterator, None)
        if batch is None:
            return
        yield batch, time.perf_counter() - started
