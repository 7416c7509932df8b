"""Helpers of the sentence-transformers integration tests: a tiny SentenceTransformer (tiny
XLM-R body with a tokenizer trained on the fly, mean pooling) and small parallel pair datasets."""

from __future__ import annotations

import random

LANGUAGES = ("de", "en", "es", "ru")


def tiny_sentence_transformer(model_dir, *, prompts=None):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    body = Transformer(str(model_dir), max_seq_length=32)
    pooling = Pooling(body.get_embedding_dimension(), "mean")
    return SentenceTransformer(modules=[body, pooling], device="cpu", prompts=prompts)


def pair_rows(num_groups: int, languages=LANGUAGES, *, seed: int = 0, negatives: int = 0) -> dict:
    """Columns of a parallel pair dataset: every group in a random subset (>= 2) of
    ``languages``; texts name their group and language so tests can read them back."""
    rng = random.Random(seed)
    columns = {"query": [], "passage": [], "language": [], "group": []}
    columns.update({f"negative_{k}": [] for k in range(1, negatives + 1)})
    for group in range(num_groups):
        for language in sorted(rng.sample(languages, rng.randint(2, len(languages)))):
            columns["query"].append(f"q {group} {language}")
            columns["passage"].append(f"p {group} {language}")
            columns["language"].append(language)
            columns["group"].append(f"g{group}")
            for k in range(1, negatives + 1):
                columns[f"negative_{k}"].append(f"n{k} {group} {language}")
    return columns
