"""Training losses, one per module.

``InfoNCELoss`` / ``info_nce``: the fused in-batch InfoNCE loss (torch only). The
sentence-transformers drop-ins ``MultipleNegativesRankingLoss`` and
``CachedMultipleNegativesRankingLoss`` live in :mod:`hbt_fast.integrations.sentence_transformers`
(they need sentence-transformers) and are served here on first use.
"""

from __future__ import annotations

import importlib

from hbt_fast.losses.info_nce_loss import InfoNCELoss, info_nce
from hbt_fast.ops.functional import MIN_TEMPERATURE

# Optional dependency (sentence-transformers): imported on first use only.
_SENTENCE_TRANSFORMERS = {
    "MultipleNegativesRankingLoss":
        "hbt_fast.integrations.sentence_transformers.multiple_negatives_ranking",
    "CachedMultipleNegativesRankingLoss":
        "hbt_fast.integrations.sentence_transformers.cached_multiple_negatives_ranking",
}

__all__ = ["CachedMultipleNegativesRankingLoss", "InfoNCELoss", "MIN_TEMPERATURE",
           "MultipleNegativesRankingLoss", "info_nce"]


def __getattr__(name):
    if name in _SENTENCE_TRANSFORMERS:
        value = getattr(importlib.import_module(_SENTENCE_TRANSFORMERS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hbt_fast.losses' has no attribute {name!r}")
