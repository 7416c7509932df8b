"""The Trainer: builds a run from a TrainConfig, owns its state (model, optimiser, sampler,
:class:`~hbt_fast.train.state.TrainerState`) and its loop; callbacks observe the steps."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.distributed as dist

from hbt_fast.train import components as parts
from hbt_fast.train.callbacks import LOG_FILE, Callback, default_callbacks, timed
from hbt_fast.train.card import run_description, write_model_card, write_run_config
from hbt_fast.train.checkpoint import (STATE_FILE, CheckpointDirectory, CheckpointError, write_folder,
                                       write_manifest)
from hbt_fast.train.config import TrainConfig
from hbt_fast.train.evaluation import evaluate_during_training
from hbt_fast.train.finite import NonFiniteLossError, check_loss, check_parameters
from hbt_fast.train.hub import check_hub_access, push_model
from hbt_fast.train.inputs import StepInputs
from hbt_fast.train.reporting import integration_reporters
from hbt_fast.train.resume import (RUN_CONFIG, Start, drop_log_after, random_state_file, random_states,
                                   starting_point)
from hbt_fast.train.run_folder import check_inputs, claim
from hbt_fast.train.sources import (check_training_data, describe_sources, make_sampler, read_training_data,
                                    step_inputs_for)
from hbt_fast.train.state import TrainerState
from hbt_fast.train.store_inputs import wait_verified
from hbt_fast.train.step import StepResult, data_parallel, global_batch_gradients, world

__all__ = ["NonFiniteLossError", "Trainer"]


def _checkpoint_on_all_ranks(work, checkpoints: CheckpointDirectory, step: int, world_size: int) -> None:
    """``work`` writes this rank's part of checkpoint ``step`` (None: nothing)."""
    def guarded():
        with checkpoints.disk_errors(step):
            work()

    failure = CheckpointError(f"writing checkpoint {checkpoints.name(step)} failed on another rank")
    parts.on_all_ranks(guarded if work is not None else None, world_size, failure)


def _apply_overrides(config: TrainConfig, optimizer, scheduler) -> None:
    """The optimiser state carries the saved lr and weight decay: overridden ones replace them."""
    groups = optimizer.param_groups
    if "lr" in config.override:
        scheduler.base_lrs = [config.lr] * len(groups)
        for group, factor in zip(groups, scheduler.lr_lambdas):
            group["initial_lr"], group["lr"] = config.lr, config.lr * factor(scheduler.last_epoch)
    if "weight_decay" in config.override:
        groups[0]["weight_decay"] = config.weight_decay


class _Sides(torch.nn.Module):
    """One module whose forward embeds either side, so DistributedDataParallel can wrap it."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, side: str, ids: list) -> torch.Tensor:
        return self.encoder.embed_ids(ids, side)


class Trainer:
    """Fine-tunes ``config.model`` on ``config.train`` with hybrid batches and the fused loss.

    ``encoder`` and ``corpus`` may be given directly (scripts, tests): ``corpus`` a
    :class:`~hbt_fast.data.PairCorpus` or a token store, or a list with one per source of
    ``config.train``; without it, files in ``config.train`` are prepared into a token store in
    the run folder (:mod:`hbt_fast.train.sources`). ``callbacks`` run after the trainer's own
    (see :mod:`hbt_fast.train.callbacks`). Everything that can be checked is checked here,
    before the first step.
    """

    def __init__(self, config: TrainConfig, *, encoder=None, corpus=None, callbacks: Sequence[Callback] = ()):
        config.validate()
        self.config, self.output = config, Path(config.output)
        self._lock = None
        check_inputs(config, reads_train=corpus is None)
        parts.check_output(self.output)
        parts.check_reporting(config.report_to)
        if config.hub_model_id is not None:
            check_hub_access(config.hub_model_id)
        if config.eval:
            parts.check_eval_setup(config.eval)
        self._joined_process_group = parts.init_distributed()
        self.rank, self.world_size = world()
        if config.batch_size % self.world_size:
            raise ValueError(f"batch_size={config.batch_size} must be divisible by the world size {self.world_size}")
        locks = []  # rank 0's: the folder is checked and locked there, every rank learns the verdict
        parts.on_all_ranks((lambda: locks.append(claim(config, self.output))) if self.rank == 0 else None,
                           self.world_size, ValueError(f"output {self.output} was refused on rank 0"))
        self._lock = locks[0] if locks else None
        try:
            self._build(encoder, corpus, callbacks)
        except BaseException:
            self.close()
            raise

    def _build(self, encoder, corpus, callbacks) -> None:
        config = self.config
        self.corpus = read_training_data(config, self.output, corpus=corpus, encoder=encoder, rank=self.rank,
                                         world_size=self.world_size)
        check_training_data(self.corpus, config)
        self.sampler = make_sampler(self.corpus, config, self.rank, self.world_size)
        self.state = TrainerState(config, self.output, parts.total_steps(config, len(self.sampler)),
                                  rank=self.rank, world_size=self.world_size)
        self.device = parts.pick_device()
        self.scaler = parts.make_gradient_scaler(config, self.device)
        self.checkpoints = CheckpointDirectory(self.output / "checkpoints", config.keep_checkpoints)
        start = starting_point(config, self.checkpoints, self.output, self.total_steps, self.rank,
                               data_digest=self.corpus.digest)
        torch.manual_seed(config.seed + self.rank)  # before loading: seeds any fresh weights
        self.encoder = parts.load_encoder(config, encoder, start and start.path, self.device)
        self.tokens = step_inputs_for(self.corpus, self.encoder, config.hard_negatives, config.mask_duplicates)
        from hbt_fast.losses import InfoNCELoss

        self.loss_fn = InfoNCELoss(temperature=config.temperature, symmetric=config.symmetric)
        self.sides = _Sides(self.encoder)
        self.ddp = data_parallel(self.sides, self.device) if self.world_size > 1 else None
        self.optimizer = parts.make_optimizer(self.encoder, config)
        self.scheduler = parts.make_scheduler(self.optimizer, config, self.total_steps)
        self.last_evaluation = None
        # Training draws (dropout) start from the seed whatever loading consumed; a resume
        # replaces this state with the checkpoint's.
        torch.manual_seed(config.seed + self.rank)
        self.own_callbacks = (default_callbacks(config, self.output)
                              + integration_reporters(config.report_to, model=self.encoder.model))
        self.callbacks = list(callbacks)
        wait_verified(self.corpus)  # a store's check ran while the sampler and model were built
        if start is not None:
            self._restore(start)

    def close(self) -> None:
        """Release the output folder (:meth:`train` does when it ends); a later Trainer may use it."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def total_steps(self) -> int:
        return self.state.total_steps

    @property
    def best_score(self) -> Optional[float]:
        return self.state.best_score

    @property
    def use_bf16(self) -> bool:
        if self.config.bf16 is not None:
            return self.config.bf16
        return not self.config.fp16 and self.device.type == "cuda" and torch.cuda.is_bf16_supported()

    @property
    def autocast_dtype(self) -> Optional[torch.dtype]:
        """float16 (``fp16``), bfloat16 (:attr:`use_bf16`) or None (float32)."""
        return torch.float16 if self.config.fp16 else torch.bfloat16 if self.use_bf16 else None

    # ------------------------------------------------------------------ one step
    def compute_gradients(self, inputs: StepInputs, weight: float = 1.0):
        """The global batch's gradient, times ``weight`` and the fp16 loss scale, added to
        ``.grad`` (see :mod:`hbt_fast.train.step`); the result's loss is scaled alike."""
        module = self.ddp if self.ddp is not None else self.sides
        ids = {"query": inputs.query_ids, "passage": inputs.passage_ids}
        dtype = self.autocast_dtype

        def embed(side: str, rows: slice) -> torch.Tensor:
            with torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                return module(side, ids[side][rows]).float()

        def weighted_loss(*arguments):
            loss = self.loss_fn(*arguments) * weight
            return self.scaler.scale(loss) if self.scaler is not None else loss

        groups = [g.to(self.device) if g is not None else None
                  for g in (inputs.query_groups, inputs.passage_groups)]
        return global_batch_gradients(
            embed, len(inputs.query_ids), len(inputs.passage_ids),
            self.loss_fn if weight == 1 and self.scaler is None else weighted_loss,
            query_groups=groups[0], passage_groups=groups[1], chunk_size=self.config.chunk_size,
            ddp=self.ddp, devices=[self.device] if self.device.type == "cuda" else [])

    def accumulate_gradients(self, batches: Sequence) -> StepResult:
        """One update's gradient into ``.grad``: the mean over ``batches`` (sampler batches) of
        each batch's global-batch gradient, times the fp16 loss scale. Each batch is its own
        contrastive problem (its in-batch negatives, its kind), as in ``transformers``' gradient
        accumulation: the same gradient as the batches' losses averaged. Under
        DistributedDataParallel the gradients are reduced once, with the last batch."""
        scale = self.scaler.get_scale() if self.scaler is not None else 1.0
        loss = seconds = 0.0
        for index, batch in enumerate(batches):
            last = index == len(batches) - 1
            with self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext():
                result = self.compute_gradients(self.tokens.step_inputs(*batch), 1 / len(batches))
            loss += result.loss / scale
            seconds += result.loss_seconds
        return StepResult(loss, seconds)

    def train_step(self, batches: Sequence) -> dict:
        """One optimisation step on the sampler batches of one update
        (``gradient_accumulation_steps`` of them); returns its log record."""
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        result = self.accumulate_gradients(batches)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = float(self._clip_gradients())
        # Under fp16 a gradient that overflowed is the scaler's to handle (it skips the update
        # and lowers its scale); a non-finite loss stops the run in every precision.
        check_loss(self.step + 1, result.loss, norm if self.scaler is None else None, self.checkpoints)
        record = self._update()
        self.state.step += 1
        return {"step": self.step, "epoch": self.sampler.epoch, "loss": result.loss, "grad_norm": norm,
                "lr": self.scheduler.get_last_lr()[0], "batch": ",".join(map(self._kind, batches)),
                "seconds": time.perf_counter() - started, "loss_s": result.loss_seconds, **record}

    def _clip_gradients(self) -> torch.Tensor:
        """The gradient norm before clipping (as transformers logs it)."""
        trained = [p for p in self.encoder.parameters() if p.grad is not None]
        clip = self.config.max_grad_norm
        return (torch.nn.utils.clip_grad_norm_(trained, clip) if clip > 0
                else torch.nn.utils.get_total_norm([p.grad for p in trained]))

    def _update(self) -> dict:
        """Optimiser and schedule; under fp16 through the scaler, which skips an update whose
        gradient overflowed (the schedule then waits too, as with accelerate). Returns what
        the log adds for fp16."""
        if self.scaler is None:
            self.optimizer.step()
            updated, extra = True, {}
        else:
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            updated = self.scaler.get_scale() >= scale  # a skipped update lowers the scale
            extra = {"loss_scale": scale, "skipped": not updated}
        if updated:
            check_parameters(self.step + 1, self.encoder.named_parameters(), self.checkpoints,
                             f"after the optimizer update (lr {self.config.lr}, "
                             f"weight_decay {self.config.weight_decay})")
            self.scheduler.step()
        return extra

    def _kind(self, batch) -> str:
        return f"xx:{self.corpus.language_names[batch.language]}" if batch.kind == "xx" else batch.kind

    def _batches(self):
        """Sampler batches with the seconds each took, across epochs without end (the next
        epoch starts when a batch is asked for past the end of one)."""
        while True:
            yield from timed(self.sampler)
            self.sampler.set_epoch(self.sampler.epoch + 1)
            self.state.epoch = self.sampler.epoch

    def train(self) -> Optional[dict]:
        """Run until ``total_steps``; returns the last evaluation (a TaskResult) or None. The
        output folder is released at the end, however the run ends; a process group this Trainer
        joined (under torchrun) is left when the run ends normally.

        An exception (a non-finite loss, a failed checkpoint, a callback's) stops the run where
        it is: no final model is written, and the newest intact checkpoint is what a resume finds."""
        try:
            result = self._run()
        finally:
            self.close()
        if self._joined_process_group:  # not after a failure: a peer may be gone or mid-collective
            self.ddp = None  # its reducer holds the group; the model itself is self.sides
            parts.leave_distributed()
            self._joined_process_group = False
        return result

    def _run(self):
        self.output.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            write_run_config(self.describe(), self.output / RUN_CONFIG)
        self._notify("on_train_begin")
        batches = self._batches()
        while self.step < self.total_steps:
            drawn = list(itertools.islice(batches, self.config.gradient_accumulation_steps))
            record = self.train_step([batch for batch, _ in drawn])
            record["sampler_s"] = sum(seconds for _, seconds in drawn)
            self._notify("on_step_end", record, own=True, user=False)
            self._checkpoint_and_evaluate_on_schedule()
            self._notify("on_step_end", record, own=False, user=True)
        # Saved before the final evaluation: an evaluation that fails must not cost the model.
        self.save_checkpoint()
        self.save_model(self.output / "model")
        if self.config.eval:
            self.evaluate(progress=self.config.progress)
            self.save_model_card(self.output / "model")  # now with the final results
        self._notify("on_train_end")
        if self.config.hub_model_id is not None and self.rank == 0:  # after the last collective
            url = push_model(self.output / "model", self.config.hub_model_id, private=self.config.hub_private_repo,
                             commit_message=f"hbt-fast train: {self.step} steps")
            print(f"pushed {self.output / 'model'} to {url}")
        return self.last_evaluation

    def _checkpoint_and_evaluate_on_schedule(self) -> None:
        step, config = self.step, self.config
        if step >= self.total_steps:
            return  # the end of the run saves and evaluates anyway
        if config.save_every and step % config.save_every == 0:
            self.save_checkpoint()
        if config.eval and config.eval_every and step % config.eval_every == 0:
            self.evaluate(progress=config.progress)

    def _notify(self, event: str, *arguments, own: bool = True, user: bool = True) -> None:
        callbacks = (self.own_callbacks if own else []) + (self.callbacks if user else [])
        for callback in callbacks:
            getattr(callback, event)(self.state, *arguments)

    def describe(self) -> dict:
        """The run's ``run_config.json`` (:func:`hbt_fast.train.card.run_description`)."""
        return run_description(self.config, world_size=self.world_size, total_steps=self.total_steps,
                               corpus=self.corpus, hard_negatives=len(self.tokens.negative_ids),
                               sources=describe_sources(self.corpus, self.sampler))

    def _write_card(self, directory: Path, evaluation) -> None:
        settings = self.encoder.settings
        write_model_card(directory, self.describe(), steps_done=self.step,
                         prompts=(settings.query_prefix, settings.passage_prefix), evaluation=evaluation)

    # ------------------------------------------------------------------ evaluation, saving
    def evaluate(self, progress: bool = False):
        """Evaluate on ``config.eval`` (rank 0), tell the callbacks, keep the best model in ``best/``."""
        if not self.config.eval:
            raise ValueError("evaluate() needs config.eval ('xquad-r:DIR' or 'mlqa-r:DIR')")
        result = None
        if self.rank == 0:
            self.encoder.eval()
            result = evaluate_during_training(self.encoder, self.config.eval, progress=progress)
            self.encoder.train()
            score = result.metric(self.config.eval_metric)
            self._notify("on_evaluate", result, score)
            if result.is_better(self.config.eval_metric, self.best_score):
                self.state.best_score = score
                self.save_model(self.output / "best", evaluation=result)
            self.last_evaluation = result
        self._barrier()
        return result

    def save_model(self, target: Path, evaluation=None) -> None:
        """The encoder and its model card, written beside ``target`` and renamed, with a manifest
        of its files (rank 0)."""
        if self.rank != 0:
            return

        def fill(folder: Path) -> None:
            self.encoder.save(folder)
            self._write_card(folder, evaluation or self.last_evaluation)

        write_folder(target, fill)

    def save_model_card(self, directory: Path) -> None:
        if self.rank == 0:
            self._write_card(directory, self.last_evaluation)
            write_manifest(directory)  # the card changed

    def save_checkpoint(self) -> Path:
        """``checkpoints/step-N``: model, optimiser, schedule, sampler, random states, settings."""
        step, folder = self.step, self.checkpoints.temporary(self.step)
        check_parameters(step, self.encoder.named_parameters(), self.checkpoints, "when writing a checkpoint")

        def shared_files():
            self.checkpoints.begin(step)
            self.encoder.save(folder / "model")
            torch.save({"step": step, "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(), "sampler": self.sampler.state_dict(),
                        "best_score": self.best_score, "config": dataclasses.asdict(self.config),
                        **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {})},
                       folder / STATE_FILE)
            write_run_config(self.describe(), folder / RUN_CONFIG)

        def on_all_ranks(work) -> None:
            _checkpoint_on_all_ranks(work, self.checkpoints, step, self.world_size)

        on_all_ranks(shared_files if self.rank == 0 else None)
        on_all_ranks(lambda: torch.save(random_states(self.device), folder / random_state_file(self.rank)))
        on_all_ranks((lambda: self.checkpoints.commit(step)) if self.rank == 0 else None)
        return self.checkpoints.root / self.checkpoints.name(step)

    def _restore(self, start: Start) -> None:
        state = start.state
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        if self.scaler is not None and "scaler" in state:  # a run resumed with fp16 newly on starts a scaler
            self.scaler.load_state_dict(state["scaler"])
        self.state.step, self.state.best_score = state["step"], state["best_score"]
        self.state.epoch = self.sampler.epoch
        _apply_overrides(self.config, self.optimizer, self.scheduler)
        torch.set_rng_state(start.random["torch"])
        if "cuda" in start.random and self.device.type == "cuda":
            torch.cuda.set_rng_state(start.random["cuda"], self.device)
        if self.rank == 0:
            drop_log_after(self.output / LOG_FILE, self.step)

    def _barrier(self) -> None:
        if self.world_size > 1 and dist.is_initialized():  # evaluate() after train() left the group
            dist.barrier()
