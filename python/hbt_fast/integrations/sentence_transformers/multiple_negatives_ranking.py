"""Drop-in replacement for sentence-transformers' ``MultipleNegativesRankingLoss`` that computes
the loss with hbt_fast's fused InfoNCE kernel (same inputs, same value, same gradients).

    from hbt_fast.losses import MultipleNegativesRankingLoss
    loss = MultipleNegativesRankingLoss(model, scale=20.0)   # instead of sentence_transformers'

It subclasses the sentence-transformers class, so trainers, model cards and configs treat it as
that loss. The fused kernel handles the configurations it computes exactly: cosine or dot-product
similarity, direction "query_to_doc" alone (InfoNCE with temperature 1 / scale, the columns after
the first B being hard negatives) or with "doc_to_query" and partition_mode="per_direction" (the
symmetric loss), no gathering across devices, no hardness weighting. Any other configuration
falls back to the original implementation.

Importing this module needs sentence-transformers; without it, it raises ImportError.
"""

from __future__ import annotations

try:
    from sentence_transformers import util as _st_util
    try:  # sentence-transformers >= 6 moved the losses; the old path warns there
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss as _OriginalLoss,
        )
    except ImportError:
        from sentence_transformers.losses import MultipleNegativesRankingLoss as _OriginalLoss
except ImportError as error:
    raise ImportError(
        "hbt_fast.losses.MultipleNegativesRankingLoss needs sentence-transformers "
        "(pip install sentence-transformers); hbt_fast.InfoNCELoss works without it."
    ) from error

import torch

from hbt_fast.losses import info_nce

__all__ = ["EmbeddingCountError", "MultipleNegativesRankingLoss"]


class EmbeddingCountError(IndexError, ValueError):
    """Embedding columns of different lengths. sentence-transformers' class fails on them with
    an IndexError from deep inside; this says why, and is still an IndexError for code that
    catches that."""

_ONE_WAY = ("query_to_doc",)
_BOTH_WAYS = {"query_to_doc", "doc_to_query"}


class MultipleNegativesRankingLoss(_OriginalLoss):
    """sentence-transformers' MultipleNegativesRankingLoss, computed by the fused kernel.

    Args are those of the original (``model``, ``scale=20.0``, ``similarity_fct=cos_sim``, ...).
    """

    def forward(self, sentence_features, labels):
        if hasattr(_OriginalLoss, "compute_loss_from_embeddings"):
            return super().forward(sentence_features, labels)  # ends in the method below
        embeddings = [self.model(features)["sentence_embedding"]
                      for features in sentence_features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings, labels):
        symmetric = self._fused_direction()
        if symmetric is None:
            return super().compute_loss_from_embeddings(embeddings, labels)
        if len(embeddings) < 2:
            raise ValueError(f"Expected at least 2 embeddings, got {len(embeddings)}")
        queries, passages = embeddings[0], embeddings[1:]
        for column, passage in enumerate(passages, start=1):
            if passage.shape[0] != queries.shape[0]:
                raise EmbeddingCountError(
                    f"every embedding column must have one row per anchor: column 0 (anchors) "
                    f"has {queries.shape[0]} rows, column {column} has {passage.shape[0]}")
        return info_nce(queries, torch.cat(passages, dim=0), temperature=1.0 / self.scale,
                        symmetric=symmetric, normalize=self.similarity_fct is _st_util.cos_sim)

    def _fused_direction(self):
        """False / True for the one-way / symmetric loss the kernel computes; None otherwise."""
        if self.similarity_fct not in (_st_util.cos_sim, _st_util.dot_score):
            return None
        if getattr(self, "gather_across_devices", False):
            return None
        if getattr(self, "hardness_mode", None) is not None and getattr(
                self, "hardness_strength", 0.0) > 0:
            return None
        directions = tuple(getattr(self, "directions", _ONE_WAY))
        if directions == _ONE_WAY:
            return False
        if set(directions) == _BOTH_WAYS and getattr(self, "partition_mode", "") == "per_direction":
            return True
        return None

