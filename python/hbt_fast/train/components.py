"""What a run is built from, one function each: process group, device, output folder checks,
data checks, encoder, optimizer, schedule."""

from __future__ import annotations

import gc
import importlib.util
import math
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from hbt_fast.train.config import MAX_INT, TrainConfig, parse_eval_spec

__all__ = ["check_corpus_for_mode", "check_eval_setup", "check_output", "init_distributed",
           "check_reporting", "leave_distributed", "load_encoder", "make_gradient_scaler", "make_optimizer",
           "make_scheduler", "on_all_ranks", "pick_device", "total_steps"]


def init_distributed() -> bool:
    """Join the process group that ``torchrun`` describes (gloo on CPU, NCCL on GPU); True when
    this call joined it (the caller then leaves it: :func:`leave_distributed`)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(_local_gpu())
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return True
    return False


def leave_distributed() -> None:
    """Wait for every rank, then destroy the process group (nothing without one). A rank that
    exits with the group alive can abort at interpreter exit (gloo's threads outlive it:
    "terminate called without an active exception"), and one that leaves early breaks its
    peers' sockets mid-collective. Release what holds the group (a ``DistributedDataParallel``
    wrapper's reducer) before calling this: the collection that ends it frees such holders
    left in reference cycles now, while the interpreter is whole, not during its teardown."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        gc.collect()


def _local_gpu() -> int:
    """This process's GPU: LOCAL_RANK, which must name one of the GPUs this process sees."""
    local_rank, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local_rank >= count:
        raise ValueError(f"LOCAL_RANK={local_rank}, but this process sees {count} CUDA device(s): start at most "
                         f"{count} process(es) per node (torchrun --nproc-per-node {count}), or hide the GPUs "
                         "(CUDA_VISIBLE_DEVICES=) to train on CPUs over gloo")
    return local_rank


def _collective_device() -> torch.device:
    """Where a tensor for a collective must live: NCCL moves CUDA tensors only."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def on_all_ranks(work, world_size: int, failure: Exception) -> None:
    """Run ``work`` (None: nothing on this rank); every rank raises when one rank's work did:
    its own error there, ``failure`` on the others."""
    error = None
    if work is not None:
        try:
            work()
        except (ValueError, OSError) as caught:
            error = caught
    failed = torch.tensor([error is not None], dtype=torch.int32, device=_collective_device())
    if world_size > 1:
        dist.all_reduce(failed)
    if error is not None:
        raise error
    if failed.item():
        raise failure


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", _local_gpu())
    return torch.device("cpu")


def make_gradient_scaler(config: TrainConfig, device: torch.device):
    """fp16's gradient scaler (None without fp16). float16 autocast is offered on CUDA only: on
    CPUs it is slower than float32, and bf16 (which needs no scaler) is their half precision."""
    if not config.fp16:
        return None
    if device.type != "cuda":
        raise ValueError(f"fp16 needs a CUDA device, and this process runs on {device.type}; leave fp16 off "
                         "(bf16 works on CPUs that support it)")
    return torch.amp.GradScaler(device.type)


def check_output(output: Path) -> None:
    """The run folder must be a folder we can write to: fail before loading anything."""
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} is a file, not a folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as error:
        raise ValueError(f"output {output} is not writable ({error.strerror or error})") from None


def check_reporting(report_to: tuple) -> None:
    """Every destination's package is installed (its name is the package's), before anything loads."""
    for destination in report_to:
        if destination not in ("jsonl", "none") and importlib.util.find_spec(destination) is None:
            raise ValueError(f"report_to '{destination}' needs the {destination} package "
                             f"(pip install {destination})")


def check_eval_setup(spec: str) -> None:
    """Fail before training when the evaluation could not run at its end."""
    from hbt_fast.data import load_lareqa

    task, directory = parse_eval_spec(spec)
    load_lareqa(directory, task=task)  # missing files or fields raise here, naming them


def check_corpus_for_mode(corpus, mode: str, alpha: float, source: Optional[str] = None) -> None:
    """Stop before training when the mode needs X-Y batches a language cannot join; ``source``
    names the corpus when it is one source of several."""
    needs_cross = mode == "xy" or (mode == "hybrid" and alpha < 1)
    if not needs_cross:
        return
    lonely = sorted(set(corpus.language_names) - corpus.cross_lingual_languages())
    if lonely:
        where, remedy = (f"{source} serves X-Y batches", "give it kind 'xx'") if source else \
            (f"mode {mode!r} builds X-Y batches", "use mode 'xx'")
        raise ValueError(
            f"{where}, but language(s) {lonely} share no group with another language"
            f"{' in it' if source else ''}, so their pairs could never be used there; remove them or {remedy}"
        )


def load_encoder(config: TrainConfig, encoder, checkpoint: Optional[Path], device: torch.device):
    """The checkpoint's encoder on resume, else ``encoder`` or ``config.model``; in train mode."""
    from hbt_fast.models import STUDY_PREFIXES, TextEncoder

    prefixes = dict(STUDY_PREFIXES) if config.prefixes else {
        "query_prefix": config.query_prefix, "passage_prefix": config.passage_prefix}
    if checkpoint is not None:
        # The model's other settings are fixed on resume (TrainConfig refuses to override them).
        lengths = {name: getattr(config, name) for name in ("max_query_length", "max_passage_length")
                   if name in config.override}
        encoder = TextEncoder.from_pretrained(checkpoint / "model", show_progress=False,
                                              freeze_word_embeddings=config.freeze_word_embeddings, **lengths)
    elif encoder is None:
        encoder = TextEncoder.from_pretrained(
            config.model, preset=config.preset, show_progress=False,
            freeze_word_embeddings=config.freeze_word_embeddings,
            max_query_length=config.max_query_length, max_passage_length=config.max_passage_length,
            **prefixes)
    elif config.freeze_word_embeddings:
        encoder.model.get_input_embeddings().weight.requires_grad_(False)
    if not config.length_buckets:
        encoder.bucket_cost = None  # one batch padded to its longest row, as most trainers do
    if config.gradient_checkpointing:
        encoder.model.gradient_checkpointing_enable()
    encoder.to(device)
    encoder.train()
    return encoder


def total_steps(config: TrainConfig, batches_per_epoch: int) -> int:
    """``steps``, or the steps of ``epochs`` sampler epochs (each step takes
    ``gradient_accumulation_steps`` batches): a 64-bit count like ``steps``."""
    if config.steps is not None:
        return config.steps
    steps = math.ceil(config.epochs * batches_per_epoch / config.gradient_accumulation_steps)
    if steps > MAX_INT:
        raise ValueError(f"epochs {config.epochs} of {batches_per_epoch} batches are {steps} steps, more than "
                         f"{MAX_INT} (the step count is a 64-bit integer)")
    return steps


def make_optimizer(encoder, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for parameter in encoder.parameters():
        if parameter.requires_grad:
            # Biases and normalisation weights are not decayed (as in BERT and the study).
            (no_decay if parameter.ndim < 2 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)


def make_scheduler(optimizer, config: TrainConfig, total_steps: int):
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, int(config.warmup * total_steps), total_steps)
