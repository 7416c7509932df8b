"""``InfoNCELoss``, re-exported from :mod:`hbt_fast.loss` (formula and options documented in
:func:`hbt_fast.loss.info_nce`)."""

from hbt_fast.loss import InfoNCELoss

__all__ = ["InfoNCELoss"]
