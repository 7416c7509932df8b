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

Duplicates (``mask_duplicates=True``, the default; sentence-transformers itself does not mask):
a candidate (positive or hard negative) with the same token ids as another anchor's positive is
left out of that anchor's softmax, as ``hbt-fast train`` does, so a repeated passage is never
pushed away from the question it answers. Texts are compared by their ``input_ids`` under the
``attention_mask`` (prompts included, padding ignored); columns without ``input_ids`` are not
compared. A batch without duplicates gets exactly sentence-transformers' loss; pass
``mask_duplicates=False`` to get it always. The configurations that fall back to the original
formula cannot mask: they warn when a batch holds a duplicate they leave in.

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

import contextlib
import warnings
from typing import Optional

import torch
import torch.nn.functional as F

from hbt_fast._checks import check_flag
from hbt_fast.losses import info_nce

__all__ = ["EmbeddingCountError", "MultipleNegativesRankingLoss", "candidate_text_ids"]


class EmbeddingCountError(IndexError, ValueError):
    """Embedding columns of different lengths. sentence-transformers' class fails on them with
    an IndexError from deep inside; this says why, and is still an IndexError for code that
    catches that."""

_ONE_WAY = ("query_to_doc",)
_BOTH_WAYS = {"query_to_doc", "doc_to_query"}


class MultipleNegativesRankingLoss(_OriginalLoss):
    """sentence-transformers' MultipleNegativesRankingLoss, computed by the fused kernel.

    Args are those of the original (``model``, ``scale=20.0``, ``similarity_fct=cos_sim``, ...),
    plus ``mask_duplicates`` (bool, default True): leave a candidate with the same token ids as
    an anchor's positive out of that anchor's softmax (see the module documentation).
    """

    def __init__(self, model, *args, mask_duplicates: bool = True, **kwargs) -> None:
        super().__init__(model, *args, **kwargs)
        self.mask_duplicates = check_flag(mask_duplicates, "mask_duplicates")
        self._text_ids: Optional[torch.Tensor] = None

    def forward(self, sentence_features, labels):
        features = list(sentence_features)
        with self.batch_texts(features):
            if hasattr(_OriginalLoss, "compute_loss_from_embeddings"):
                return super().forward(features, labels)  # ends in the method below
            embeddings = [self.model(feature)["sentence_embedding"] for feature in features]
            return self.compute_loss_from_embeddings(embeddings, labels)

    @contextlib.contextmanager
    def batch_texts(self, sentence_features):
        """Within this block, :meth:`compute_loss_from_embeddings` masks the duplicates among
        the candidates of ``sentence_features`` (the batch whose embeddings it receives)."""
        self._text_ids = candidate_text_ids(list(sentence_features)) if self.mask_duplicates else None
        try:
            yield
        finally:
            self._text_ids = None

    def get_config_dict(self):
        return {**super().get_config_dict(), "mask_duplicates": self.mask_duplicates}

    def compute_loss_from_embeddings(self, embeddings, labels):
        symmetric = self._fused_direction()
        if symmetric is None:
            self._warn_unmasked(len(embeddings[0]))
            return super().compute_loss_from_embeddings(embeddings, labels)
        if len(embeddings) < 2:
            raise ValueError(f"Expected at least 2 embeddings, got {len(embeddings)}")
        queries, passages = embeddings[0], embeddings[1:]
        for column, passage in enumerate(passages, start=1):
            if passage.shape[0] != queries.shape[0]:
                raise EmbeddingCountError(
                    f"every embedding column must have one row per anchor: column 0 (anchors) "
                    f"has {queries.shape[0]} rows, column {column} has {passage.shape[0]}")
        passages = torch.cat(passages, dim=0)
        return info_nce(queries, passages, *self._duplicate_groups(len(queries), len(passages)),
                        temperature=1.0 / self.scale, symmetric=symmetric,
                        normalize=self.similarity_fct is _st_util.cos_sim)

    def _duplicate_groups(self, count: int, candidates: int) -> tuple:
        """(query groups, passage groups) that mask the batch's duplicates; () when it has none."""
        if self._text_ids is None:
            return ()
        if len(self._text_ids) != candidates:
            raise ValueError(f"the batch's token ids name {len(self._text_ids)} candidates, its "
                             f"embeddings {candidates}: the embeddings are not those of the batch")
        if _masked_pairs(self._text_ids, count) == 0:
            return ()
        return self._text_ids[:count], self._text_ids

    def _warn_unmasked(self, count: int) -> None:
        if self._text_ids is None or len(self._text_ids) < count:
            return
        masked = _masked_pairs(self._text_ids, count)
        if masked:
            warnings.warn(
                f"mask_duplicates: {masked} (anchor, candidate) pair(s) of this batch share the "
                "anchor's positive text but stay negatives: this configuration uses "
                "sentence-transformers' own formula, which cannot mask them (pass "
                "mask_duplicates=False to accept that)", UserWarning, stacklevel=3)

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



def candidate_text_ids(sentence_features: list) -> Optional[torch.Tensor]:
    """One id per candidate row (columns 1.. concatenated, as the loss orders them), equal for
    rows with equal token ids: ``input_ids`` where ``attention_mask`` is set, in order, so
    padding on either side and the column's width do not matter. None when a candidate column
    has no 2-d ``input_ids`` (nothing to compare)."""
    rows = []
    for feature in sentence_features[1:]:
        ids = feature.get("input_ids")
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2:
            return None
        mask = feature.get("attention_mask")
        kept = (mask.bool() if isinstance(mask, torch.Tensor) and mask.shape == ids.shape
                else torch.ones_like(ids, dtype=torch.bool))
        order = torch.argsort((~kept).to(torch.uint8), dim=1, stable=True)  # kept tokens first
        rows.append(ids.long().gather(1, order).masked_fill(~kept.gather(1, order), -1))
    if not rows:
        return None
    width = max(row.shape[1] for row in rows)
    padded = torch.cat([F.pad(row, (0, width - row.shape[1]), value=-1) for row in rows])
    return torch.unique(padded, dim=0, return_inverse=True)[1]


def _masked_pairs(text_ids: torch.Tensor, count: int) -> int:
    """How many (anchor i, candidate j != i) pairs share a text: candidate j's id equals the id
    of anchor i's positive (candidate i)."""
    positives = torch.bincount(text_ids[:count], minlength=int(text_ids.max()) + 1)
    return int(positives[text_ids].sum()) - count
