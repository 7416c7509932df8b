"""The trainer's LAReQA evaluation (``config.eval``), with the evaluator's one overall progress bar."""

from __future__ import annotations

from hbt_fast.train.config import parse_eval_spec

__all__ = ["evaluate_during_training"]


def evaluate_during_training(encoder, spec: str, *, progress: bool = False):
    """``evaluate_lareqa`` on ``spec`` ("xquad-r:DIR"); ``progress``: one bar over every text."""
    from hbt_fast.evaluate import evaluate_lareqa

    task, directory = parse_eval_spec(spec)
    return evaluate_lareqa(encoder, directory, task=task, progress=progress)
