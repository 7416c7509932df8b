"""Refuse the calling convention of sentence-transformers' stock trainer.

``SentenceTransformerTrainingArguments(batch_sampler=X)`` accepts a class or any callable and
calls ``X(dataset, batch_size=..., drop_last=..., valid_label_columns=..., generator=..., seed=...)``;
anything else that is not one of its enum values makes the stock trainer fall back to batches of
size 1 without a word. Our samplers take pair ids, not a dataset, and their batches pair rows
across languages, which the stock data loader cannot express; so both ways end here, in one
error that names the class that does the job. It imports nothing, so the sampler classes
inherit it without depending on sentence-transformers.
"""

from __future__ import annotations

# Keyword arguments only the stock trainer's get_batch_sampler passes.
_STOCK_TRAINER_KWARGS = frozenset({"valid_label_columns", "generator"})


def _message(name: str) -> str:
    return (
        f"{name} cannot be used as sentence-transformers' batch_sampler: the stock "
        "SentenceTransformerTrainer would train on other batches than it draws (size 1, or no "
        "cross-lingual pairs). Use hbt_fast.integrations.sentence_transformers.HybridTrainer("
        "model=..., args=..., train_dataset=..., loss=..., mode='hybrid', alpha=0.5) instead of "
        "SentenceTransformerTrainer, and leave args.batch_sampler at its default."
    )


class RefusesStockTrainer:
    """Mixin: constructing with the stock trainer's arguments, or calling an instance, raises
    ``TypeError`` pointing to ``HybridTrainer``."""

    def __new__(cls, *args, **kwargs):
        if _STOCK_TRAINER_KWARGS & kwargs.keys():
            raise TypeError(_message(cls.__name__))
        return super().__new__(cls)

    def __call__(self, *args, **kwargs):
        raise TypeError(_message(f"A {type(self).__name__} instance"))
