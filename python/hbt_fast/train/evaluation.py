"""The trainer's LAReQA evaluation, with one overall progress bar over every text it encodes."""

from __future__ import annotations

from hbt_fast.train.config import parse_eval_spec

__all__ = ["evaluate_during_training"]


class _CountingEncoder:
    """Forwards ``encode_queries`` / ``encode_passages`` and advances a bar by the texts encoded."""

    def __init__(self, encoder, bar):
        self.encoder, self.bar = encoder, bar

    def encode_queries(self, texts, *args, **kwargs):
        vectors = self.encoder.encode_queries(texts, *args, **kwargs)
        self.bar.update(len(texts))
        return vectors

    def encode_passages(self, texts, *args, **kwargs):
        vectors = self.encoder.encode_passages(texts, *args, **kwargs)
        self.bar.update(len(texts))
        return vectors


def evaluate_during_training(encoder, spec: str, *, progress: bool = False):
    """``evaluate_lareqa`` on ``spec`` ("xquad-r:DIR"); with ``progress`` one bar (texts, ETA)."""
    from tqdm.auto import tqdm

    from hbt_fast.evaluate import evaluate_lareqa, load_lareqa

    task, directory = parse_eval_spec(spec)
    total = None
    if progress:
        data = load_lareqa(directory, task=task)
        total = sum(len(entry.questions) + len(entry.candidate_texts("sentence"))
                    for entry in data.by_language.values())
    with tqdm(total=total, desc=f"evaluate {task}", unit="text", disable=not progress) as bar:
        return evaluate_lareqa(_CountingEncoder(encoder, bar), directory, task=task)
