"""The fused in-batch InfoNCE loss (see :mod:`hbt_fast.loss.functional` for the formula).

Layers, lowest first: the C++ kernels (``hbt_fast._C.info_nce``, ``hbt_fast._C_cuda``) ->
``backends`` (``cpu``, ``cuda``, ``tiled``: one ``run(...)`` each, block size an argument) ->
``autograd.InfoNCEFunction`` -> ``functional.info_nce`` (validates and picks the back-end once)
-> ``module.InfoNCELoss``. ``reference.info_nce_reference`` is the plain-torch oracle.
"""

from hbt_fast.loss.functional import MIN_TEMPERATURE, info_nce
from hbt_fast.loss.module import InfoNCELoss
from hbt_fast.loss.reference import info_nce_reference

__all__ = ["MIN_TEMPERATURE", "InfoNCELoss", "info_nce", "info_nce_reference"]
