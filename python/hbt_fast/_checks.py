"""The argument checks every layer needs: a real bool, an integer (never a bool) with a lower
bound, and a real number that is not a bool. One owner, so ``True`` is never taken for ``1``
(nor ``1`` for ``True``) in one module and refused in another, and the messages read the same
everywhere.

At the bottom of the import layers: it imports only the standard library and numpy (the
sampler, which must not need torch, uses it too).
"""

from __future__ import annotations

import numbers
from typing import Optional

import numpy as np

__all__ = ["check_flag", "check_integer", "is_integer", "is_real"]


def check_flag(value: object, name: str) -> bool:
    """``value`` as a bool when it is one (numpy's included); ``"no"``, ``1`` or ``None`` is a
    TypeError, not a truth value."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def is_integer(value: object) -> bool:
    """An int or a numpy integer, not a bool (``True == 1``, but a flag is not a count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value: object) -> bool:
    """A real number (int, float, numpy's), not a bool; NaN and infinities included: each
    caller states its own range."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_integer(value: object, name: str, *, minimum: Optional[int] = 1, optional: bool = False,
                  not_integer: type[Exception] = ValueError) -> Optional[int]:
    """``value`` as an int when it is an integer (not a bool) ``>= minimum`` (``None``: no bound),
    or ``None`` when ``optional`` and it is None.

    Below ``minimum`` is a ValueError; a non-integer raises ``not_integer``: ValueError by
    default (the evaluation, data and model helpers have always raised it), TypeError where
    the caller has always refused a wrong type so (the loss, the sampler, the statistics)."""
    if optional and value is None:
        return None
    requirement = "an integer" + ("" if minimum is None else f" >= {minimum}") + \
        (" or None" if optional else "")
    if not is_integer(value):
        raise not_integer(f"{name} must be {requirement}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {requirement}, got {value!r}")
    return int(value)
