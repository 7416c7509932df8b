"""Drop-in replacement for sentence-transformers' ``CachedMultipleNegativesRankingLoss``: the
GradCache steps come from :mod:`hbt_fast.train.gradcache` (the implementation our trainer uses)
and the loss over the whole batch from hbt_fast's fused InfoNCE kernel.

    from hbt_fast.losses import CachedMultipleNegativesRankingLoss
    loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=32)  # instead of theirs

Same constructor, value and gradients as the original (it subclasses it, so trainers, model
cards, ``MatryoshkaLoss`` and configs treat it as that loss). A step embeds each input column
``mini_batch_size`` rows at a time without a graph, computes the loss of the whole batch on the
detached embeddings and its gradient with respect to them, and returns the loss; when the
trainer back-propagates it, a hook re-embeds every mini-batch with its recorded random state
and pushes that slice of the gradient into the model. Encoder activations are thus bounded by
one mini-batch, and the loss stage by the fused kernel's O(block * M) scores instead of B x M.
Configurations the kernel does not compute (hardness weighting, joint softmax over several
directions, other similarity functions) get sentence-transformers' own loss formula on the
cached embeddings, as :class:`hbt_fast.losses.MultipleNegativesRankingLoss` does.

Duplicates: ``mask_duplicates`` (default True) as in
:class:`hbt_fast.losses.MultipleNegativesRankingLoss`: a candidate with the same token ids as
another anchor's positive is left out of that anchor's softmax (sentence-transformers does not
mask; ``mask_duplicates=False`` gives its loss exactly).

Not supported (``ValueError`` at construction): ``mini_batch_num_tokens`` (token-budget mini
batches); pass ``mini_batch_size`` instead. ``show_progress_bar`` is accepted and ignored.

Importing this module needs sentence-transformers; without it, it raises ImportError.
"""

from __future__ import annotations

from functools import partial

try:
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss as _OriginalLoss,
    )
except ImportError as error:
    raise ImportError(
        "hbt_fast.losses.CachedMultipleNegativesRankingLoss needs sentence-transformers "
        "(pip install sentence-transformers); hbt_fast.InfoNCELoss works without it."
    ) from error

import contextlib

import torch
from torch.nn.parallel import DistributedDataParallel

from hbt_fast._checks import check_integer
from hbt_fast.integrations.sentence_transformers.multiple_negatives_ranking import MultipleNegativesRankingLoss
from hbt_fast.train.gradcache import embed_without_graph, replay_backward

__all__ = ["CachedMultipleNegativesRankingLoss"]


class CachedMultipleNegativesRankingLoss(_OriginalLoss):
    """sentence-transformers' CachedMultipleNegativesRankingLoss on hbt_fast's GradCache and
    fused kernel. Args are those of the original (``model``, ``scale=20.0``,
    ``similarity_fct=cos_sim``, ``mini_batch_size=32``, ...), plus ``mask_duplicates`` (bool,
    default True; see the module documentation)."""

    # Assigning one of these sets it on the wrapped loss, which computes with it.
    _delegated_to_wrapped_loss = (*_OriginalLoss._delegated_to_wrapped_loss, "mask_duplicates")

    def __init__(self, model, *args, mask_duplicates: bool = True, **kwargs) -> None:
        super().__init__(model, *args, **kwargs)
        if self.mini_batch_num_tokens is not None:
            raise ValueError(
                f"mini_batch_num_tokens={self.mini_batch_num_tokens} is not supported by "
                "hbt_fast.losses.CachedMultipleNegativesRankingLoss; set mini_batch_size instead"
            )
        check_integer(self.mini_batch_size, "mini_batch_size")  # else the first step fails
        # The wrapped loss holds (and validated) every hyperparameter; ours computes the same
        # loss on the fused kernel where it can.
        wrapped = self.loss
        self.loss = MultipleNegativesRankingLoss(model, mask_duplicates=mask_duplicates, **{
            name: getattr(wrapped, name) for name in _OriginalLoss._delegated_to_wrapped_loss})

    @property
    def mask_duplicates(self) -> bool:
        return self.loss.mask_duplicates

    def get_config_dict(self):
        return {**super().get_config_dict(), "mask_duplicates": self.mask_duplicates}

    def forward(self, sentence_features, labels=None) -> torch.Tensor:
        features = list(sentence_features)
        if len(features) < 2:
            raise ValueError(f"Expected at least 2 inputs, got {len(features)}")
        devices = sorted({value.device for feature in features for value in feature.values()
                          if isinstance(value, torch.Tensor)}, key=str)
        caches = [embed_without_graph(partial(self._embed, feature), _batch_size(feature),
                                      self.mini_batch_size, devices=devices)
                  for feature in features]
        if not torch.is_grad_enabled():
            with self.loss.batch_texts(features):
                return self.calculate_loss([[cache.embeddings] for cache in caches], labels)
        reps = [[cache.embeddings.requires_grad_()] for cache in caches]
        with self.loss.batch_texts(features):
            loss = self.calculate_loss(reps, labels, with_backward=True)
        gradients = [rep.grad for (rep,) in reps]
        unused = [str(index) for index, gradient in enumerate(gradients) if gradient is None]
        if unused:
            raise ValueError(
                f"The loss did not use input column(s) {', '.join(unused)}: their embeddings "
                "received no gradient; remove the unused column(s) from the dataset")
        loss = loss.detach().requires_grad_()
        loss.register_hook(partial(self._replay, features, caches, gradients))
        return loss

    def calculate_loss(self, reps, labels=None, *, with_backward: bool = False) -> torch.Tensor:
        """The loss of the whole batch from per-column lists of embedding chunks (the
        original's contract, which ``MatryoshkaLoss`` wraps)."""
        loss = self.loss.compute_loss_from_embeddings([torch.cat(column) for column in reps], labels)
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def _embed(self, feature: dict, rows: slice) -> torch.Tensor:
        return self.model(_rows_of(feature, rows))["sentence_embedding"]

    def _replay(self, features, caches, gradients, grad_output) -> None:
        """Backward hook: the cached gradients, scaled by what the outer backward hands in
        (gradient accumulation, loss scaling), re-enter the model mini-batch by mini-batch."""
        model = self.model
        last_column = len(caches) - 1
        with torch.enable_grad():
            for column, (feature, cache, gradient) in enumerate(zip(features, caches, gradients)):
                last_chunk = len(cache.chunks) - 1 if column == last_column else None
                replay_backward(partial(self._embed, feature), cache, gradient * grad_output,
                                chunk_context=partial(_sync_only_at, model, last_chunk))


def _sync_only_at(model, last_chunk, index: int):
    """DDP reduces gradients once, in the backward of the batch's very last mini-batch."""
    if isinstance(model, DistributedDataParallel) and index != last_chunk:
        return model.no_sync()
    return contextlib.nullcontext()


def _batch_size(feature: dict) -> int:
    for key in ("input_ids", "attention_mask"):
        if isinstance(feature.get(key), torch.Tensor):
            return feature[key].shape[0]
    return next(value.shape[0] for value in feature.values()
                if isinstance(value, torch.Tensor) and value.ndim > 0)


def _rows_of(feature: dict, rows: slice) -> dict:
    """The mini-batch ``rows`` of tokenised inputs, without the padding columns that all its
    rows share at the end (as sentence-transformers cuts them, so the embeddings match)."""
    count = _batch_size(feature)
    mask = feature.get("attention_mask")
    width = end = None
    if isinstance(mask, torch.Tensor) and mask.ndim == 2:
        width = mask.shape[1]
        active = mask[rows].bool().any(dim=0).nonzero()
        end = int(active.max()) + 1 if len(active) else width
    sliced = {}
    for key, value in feature.items():
        if not isinstance(value, torch.Tensor) or value.ndim == 0 or value.shape[0] != count:
            sliced[key] = value
        elif width is not None and value.ndim >= 2 and value.shape[1] == width:
            sliced[key] = value[rows, :end]
        else:
            sliced[key] = value[rows]
    return sliced
