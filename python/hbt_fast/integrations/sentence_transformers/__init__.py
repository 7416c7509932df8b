"""sentence-transformers integration: hybrid batches in their trainer, LAReQA in their evaluators,
the fused drop-ins for their (Cached)MultipleNegativesRankingLoss.

Needs the ``sentence-transformers`` package; names are imported on first use so that this
package can be inspected without it.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "HybridTrainer": "hbt_fast.integrations.sentence_transformers.trainer",
    "LAReQAEvaluator": "hbt_fast.integrations.sentence_transformers.evaluator",
    "MultipleNegativesRankingLoss":
        "hbt_fast.integrations.sentence_transformers.multiple_negatives_ranking",
    "CachedMultipleNegativesRankingLoss":
        "hbt_fast.integrations.sentence_transformers.cached_multiple_negatives_ranking",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
