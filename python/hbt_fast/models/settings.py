"""Encoder settings (everything besides the weights that decides an embedding) and presets."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Optional

from hbt_fast._checks import check_flag, check_integer

__all__ = ["EncoderSettings", "POOLINGS", "PRESETS", "SIDES", "STUDY_PREFIXES", "E5_PREFIXES",
           "preset_for_name"]

#: ``pooler`` is the model's own pooler layer (LaBSE's dense + tanh over [CLS]); the others are
#: sentence-transformers' ``Pooling`` modes of the same names.
POOLINGS = ("mean", "cls", "max", "lasttoken", "mean_sqrt_len_tokens", "weightedmean", "pooler")
SIDES = ("query", "passage")
#: the prefixes used in the reference study
STUDY_PREFIXES = {"query_prefix": "Query: ", "passage_prefix": "Passage: "}
#: the prefixes multilingual-e5 was trained with
E5_PREFIXES = {"query_prefix": "query: ", "passage_prefix": "passage: "}


@dataclass
class EncoderSettings:
    """Everything besides the weights that decides an embedding.

    A maximum length of None is the model's own, decided as sentence-transformers decides its
    ``max_seq_length`` (:func:`hbt_fast.models.loading.model_max_length`); ``TextEncoder``
    replaces it by that number."""

    pooling: str = "mean"
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""
    max_query_length: Optional[int] = None
    max_passage_length: Optional[int] = None

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        self.normalize = check_flag(self.normalize, "normalize")
        for name in ("max_query_length", "max_passage_length"):  # None: the model's own
            setattr(self, name, check_integer(getattr(self, name), name, minimum=2, optional=True))
        for name in ("query_prefix", "passage_prefix"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string, got {getattr(self, name)!r}")

    def prefix(self, side: str) -> str:
        return self.query_prefix if side == "query" else self.passage_prefix

    def max_length(self, side: str) -> Optional[int]:
        return self.max_query_length if side == "query" else self.max_passage_length

    def with_model_length(self, length: int) -> "EncoderSettings":
        """These settings with each unset maximum length set to ``length`` (the model's own)."""
        return dataclasses.replace(
            self, max_query_length=self.max_query_length or length,
            max_passage_length=self.max_passage_length or length)


#: Settings per preset: what a model family's sentence-transformers release ships (pooling,
#: normalisation, prompts). A model folder's own files (modules.json, prompts) override a preset
#: guessed from the name; an explicit preset overrides them.
PRESETS = {
    "xlmr": {"pooling": "mean", "normalize": True},
    "labse": {"pooling": "pooler", "normalize": True},
    "e5": {"pooling": "mean", "normalize": True, **E5_PREFIXES},
    "bge-m3": {"pooling": "cls", "normalize": True},
    "paraphrase-multilingual": {"pooling": "mean", "normalize": True},
}

# Which preset a model name stands for, most specific first; the default is xlmr.
_NAME_PRESETS = (
    ("labse", re.compile(r"labse")),
    ("bge-m3", re.compile(r"bge-m3")),
    ("paraphrase-multilingual", re.compile(r"paraphrase-multilingual")),
    ("e5", re.compile(r"(^|[^a-z0-9])e5([^a-z0-9]|$)")),
)


def preset_for_name(name_or_path: str) -> str:
    """The preset a hub name or folder name stands for ("intfloat/multilingual-e5-base" ->
    "e5", "BAAI/bge-m3" -> "bge-m3", "sentence-transformers/LaBSE" -> "labse",
    "paraphrase-multilingual-mpnet-base-v2" -> "paraphrase-multilingual"), else "xlmr"."""
    name = str(name_or_path).lower()
    return next((preset for preset, pattern in _NAME_PRESETS if pattern.search(name)), "xlmr")
