"""Encoder settings (everything besides the weights that decides an embedding) and presets."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EncoderSettings", "POOLINGS", "PRESETS", "SIDES", "STUDY_PREFIXES", "E5_PREFIXES"]

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
    """Everything besides the weights that decides an embedding."""

    pooling: str = "mean"
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""
    max_query_length: int = 64
    max_passage_length: int = 256

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not isinstance(self.normalize, bool):
            raise TypeError(f"normalize must be a bool, got {self.normalize!r}")
        for name in ("max_query_length", "max_passage_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
        for name in ("query_prefix", "passage_prefix"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string, got {getattr(self, name)!r}")

    def prefix(self, side: str) -> str:
        return self.query_prefix if side == "query" else self.passage_prefix

    def max_length(self, side: str) -> int:
        return self.max_query_length if side == "query" else self.max_passage_length


PRESETS = {
    "xlmr": {"pooling": "mean", "normalize": True},
    "labse": {"pooling": "pooler", "normalize": True},
    "e5": {"pooling": "mean", "normalize": True, **E5_PREFIXES},
}
