"""Shared by the trainer tests and the torchrun worker: a synthetic corpus and a small trainer."""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torchrun_launch

from hbt_fast.data import PairCorpus
from hbt_fast.train import Callback, TrainConfig, Trainer


def synthetic_corpus(num_groups=24, languages=("en", "de", "fr"), negatives=0):
    rng = np.random.default_rng(0)
    words = ["river", "city", "year", "team", "music", "king", "school", "war", "science"]
    queries, passages, langs, groups, extra = [], [], [], [], []
    for g in range(num_groups):
        topic = " ".join(rng.choice(words, 3))
        for lang in languages:
            queries.append(f"{lang} question {g} {topic}")
            passages.append(f"{lang} answer {topic} number {g}")
            langs.append(lang)
            groups.append(g)
            extra.append([f"{lang} unrelated {topic} {g} {k}" for k in range(negatives)])
    return PairCorpus.with_negative_lists(queries, passages, langs, groups, extra)


def settings(tiny_model_dir, output, **overrides):
    values = dict(model=str(tiny_model_dir), train="unused", output=str(output), batch_size=8,
                  steps=6, lr=1e-3, warmup=0.0, progress=False, seed=3)
    values.update(overrides)
    return values


def make_trainer(tiny_model_dir, output, *, corpus=None, callbacks=(), **overrides):
    config = TrainConfig(**settings(tiny_model_dir, output, **overrides))
    return Trainer(config, corpus=corpus or synthetic_corpus(), callbacks=callbacks)


def without_dropout(trainer):
    """Ranks seed dropout differently; exact gradient comparisons switch it off."""
    for module in trainer.encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return trainer


def gradients(trainer):
    """Every parameter's gradient, by name (zeros where a parameter got none)."""
    return {name: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone()
            for name, p in trainer.encoder.named_parameters()}


def first_batch_gradients(trainer):
    """The loss and gradients of the first update: its ``gradient_accumulation_steps`` batches."""
    batches = list(itertools.islice(trainer.sampler, trainer.config.gradient_accumulation_steps))
    trainer.optimizer.zero_grad(set_to_none=True)
    result = trainer.accumulate_gradients(batches)
    return result.loss, gradients(trainer)


def log_records(output):
    return [json.loads(line) for line in (Path(output) / "train_log.jsonl").read_text().splitlines()]


def log_losses(output):
    by_step = {r["step"]: r["loss"] for r in log_records(output) if "loss" in r}
    return [by_step[s] for s in sorted(by_step)]


class Crash(RuntimeError):
    pass


class CrashAt(Callback):
    """Stops the run after ``step`` (the trainer's own callbacks, checkpoints included, ran)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, state, record):
        if state.step == self.step:
            raise Crash()


def run_torchrun(script, *args, timeout=300):
    """``script args`` under torchrun with 2 processes (gloo on CPU); fails the test on a non-zero exit."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = torchrun_launch.run_torchrun(["--nproc_per_node=2", script, *args], env=env, timeout=timeout)
    assert result.returncode == 0, torchrun_launch.stderr_tail(result.stderr, keep=6000)


def one_passage_corpus(count=64):
    """``count`` questions in one language, each its own group, all answered by one passage."""
    return PairCorpus.with_negative_lists([f"question number {i}" for i in range(count)],
                                          ["the one answer to every question"] * count, ["en"] * count,
                                          list(range(count)), [[] for _ in range(count)])


def duplicate_corpus(num_groups=24, languages=("en", "de", "fr")):
    """Groups 3k, 3k+1 and 3k+2 share their passage text in each language; each pair has two hard
    negatives: another group's passage (a duplicate of that pair's positive) and an unrelated text."""
    corpus = synthetic_corpus(num_groups, languages)
    original = {(g, lang): p for g, lang, p in zip(corpus.groups, corpus.languages, corpus.passages)}
    shared = {(g, lang): original[(g - g % 3, lang)] for g, lang in original}
    passages = [shared[(g, lang)] for g, lang in zip(corpus.groups, corpus.languages)]
    negatives = [[shared[((g + 5) % num_groups, lang)], f"{lang} unrelated {g}"]
                 for g, lang in zip(corpus.groups, corpus.languages)]
    return PairCorpus.with_negative_lists(corpus.queries, passages, corpus.languages, corpus.groups, negatives)
