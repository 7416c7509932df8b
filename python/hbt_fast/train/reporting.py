"""``report_to`` wandb / mlflow: transformers' own integration callbacks, fed by the trainer.

:class:`TransformersReporter` holds one ``transformers.integrations`` callback (``WandbCallback``,
``MLflowCallback``) and calls it as ``transformers.Trainer`` would: ``on_train_begin`` with a
``TrainingArguments`` describing the run, ``on_log`` with the step's scalars and each
evaluation's metrics, ``on_train_end``. So the environment variables, run names and dashboards
those integrations document (``WANDB_PROJECT``, ``MLFLOW_TRACKING_URI``, ...) apply unchanged.
Scalar names follow transformers: ``train/loss``, ``train/grad_norm``, ``train/learning_rate``,
``eval/multi/map@20``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hbt_fast.train.callbacks import Callback

__all__ = ["TransformersReporter", "integration_reporters"]


def _run_arguments(config, total_steps: int):
    """A ``TrainingArguments`` with the run's settings under transformers' names; its
    ``to_dict()`` adds every hbt_fast setting, which is what the integrations record."""
    from transformers import TrainingArguments

    class RunArguments(TrainingArguments):
        def to_dict(self):
            return {**super().to_dict(), **settings}

    settings = dataclasses.asdict(config)
    # Only arguments every supported transformers version accepts and none that checks the
    # device (fp16 / bf16 are in ``settings``).
    return RunArguments(
        output_dir=config.output, run_name=Path(config.output).name, learning_rate=config.lr,
        weight_decay=config.weight_decay, max_steps=total_steps, warmup_steps=int(config.warmup * total_steps),
        max_grad_norm=config.max_grad_norm, gradient_accumulation_steps=config.gradient_accumulation_steps,
        seed=config.seed, logging_steps=config.log_every, report_to="none")


class TransformersReporter(Callback):
    """Sends the run's scalars to ``name`` (``"wandb"`` or ``"mlflow"``) through transformers'
    callback for it; ``model`` (optional) is the Hugging Face model whose configuration the
    integration records. Rank 0 reports; the other ranks do nothing."""

    INTEGRATIONS = ("wandb", "mlflow")

    def __init__(self, name: str, model=None):
        from transformers.integrations import get_reporting_integration_callbacks

        if name not in self.INTEGRATIONS:
            raise ValueError(f"report_to {name!r} is not one of {list(self.INTEGRATIONS)}")
        self.name, self.model = name, model
        self.integration_class = get_reporting_integration_callbacks([name])[0]
        self.integration = None

    def on_train_begin(self, state) -> None:
        if state.rank != 0:
            return
        from transformers import TrainerControl
        from transformers import TrainerState as HuggingFaceState

        try:
            self.integration = self.integration_class()
        except (RuntimeError, ImportError) as error:  # the package is missing or broken
            raise ValueError(f"report_to {self.name!r}: {error}") from None
        self.args = _run_arguments(state.config, state.total_steps)
        self.hf_state = HuggingFaceState(max_steps=state.total_steps, logging_steps=state.config.log_every,
                                         global_step=state.step, epoch=state.epoch,
                                         is_world_process_zero=True, is_local_process_zero=True)
        self.control = TrainerControl()
        self.integration.on_train_begin(self.args, self.hf_state, self.control, model=self.model)

    def _log(self, state, logs: dict) -> None:
        self.hf_state.global_step, self.hf_state.epoch = state.step, state.epoch
        self.integration.on_log(self.args, self.hf_state, self.control, model=self.model, logs=logs)

    def on_step_end(self, state, record: dict) -> None:
        if self.integration is None or record["step"] % state.config.log_every:
            return
        self._log(state, {"loss": record["loss"], "grad_norm": record["grad_norm"],
                          "learning_rate": record["lr"], "epoch": record["epoch"]})

    def on_evaluate(self, state, result, score: float) -> None:
        if self.integration is not None:
            self._log(state, {f"eval_{name}": value for name, value in result.metrics().items()})

    def on_train_end(self, state) -> None:
        if self.integration is not None:
            self.integration.on_train_end(self.args, self.hf_state, self.control, model=self.model)


def integration_reporters(report_to: tuple, model=None) -> list:
    """A :class:`TransformersReporter` for each of ``report_to`` that transformers integrates."""
    return [TransformersReporter(name, model) for name in report_to if name in TransformersReporter.INTEGRATIONS]
