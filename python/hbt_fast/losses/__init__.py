"""Training losses, one per module. ``MultipleNegativesRankingLoss`` (a drop-in for the
sentence-transformers loss of that name, needing sentence-transformers) loads on first use."""

from hbt_fast.losses.info_nce import InfoNCELoss

__all__ = ["InfoNCELoss", "MultipleNegativesRankingLoss"]


def __getattr__(name):
    if name == "MultipleNegativesRankingLoss":
        from hbt_fast.losses.sentence_transformers_compat import MultipleNegativesRankingLoss

        return MultipleNegativesRankingLoss
    if name == "CachedMultipleNegativesRankingLoss":
        from hbt_fast.losses.cached import CachedMultipleNegativesRankingLoss

        return CachedMultipleNegativesRankingLoss
    raise AttributeError(f"module 'hbt_fast.losses' has no attribute {name!r}")
