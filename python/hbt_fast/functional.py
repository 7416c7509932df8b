"""Functional forms of hbt_fast's losses: re-exported from :mod:`hbt_fast.loss`, where the
fused InfoNCE loss lives (``info_nce``) with its plain-torch oracle (``info_nce_reference``)."""

from hbt_fast.loss import MIN_TEMPERATURE, info_nce, info_nce_reference

__all__ = ["MIN_TEMPERATURE", "info_nce", "info_nce_reference"]
