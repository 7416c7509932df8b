"""Pinned alias (DESIGN.md): the functional loss and its oracle under one short name.

``info_nce`` is :func:`hbt_fast.losses.info_nce`; ``info_nce_reference`` is
:func:`hbt_fast.testing.info_nce_reference`.
"""

from hbt_fast.losses import MIN_TEMPERATURE, info_nce
from hbt_fast.testing.info_nce import info_nce_reference

__all__ = ["MIN_TEMPERATURE", "info_nce", "info_nce_reference"]
