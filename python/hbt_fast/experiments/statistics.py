"""Mean, spread and paired differences over training seeds.

Runs that share a seed share their sampling order's randomness and dropout draws' seed, and
start from the same pretrained encoder, so the natural comparison of two samplings is paired:
the difference ``a - b`` per seed, its mean and sample standard deviation, in how many seeds
``a`` was better, and an exact two-sided sign-flip (permutation) p-value of the mean difference.
With n seeds the smallest p-value a sign-flip test can give is ``2 / 2**n`` (0.25 for three):
a handful of seeds shows consistency, not significance.
"""

from __future__ import annotations

import itertools
import math
from typing import Dict, Sequence, Tuple

import numpy as np

__all__ = ["PairedDifference", "mean_std", "paired_difference", "sign_flip_p_value"]


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """(mean, sample standard deviation); the deviation is 0.0 for a single value."""
    values = np.asarray(values, dtype=np.float64)
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), spread


def sign_flip_p_value(differences: Sequence[float]) -> float:
    """Exact two-sided p-value of the mean of paired ``differences`` under the null that each
    difference is as likely negative as positive (all ``2**n`` sign assignments)."""
    d = np.asarray(differences, dtype=np.float64)
    if len(d) == 0:
        raise ValueError("sign_flip_p_value needs at least one difference")
    if len(d) > 20:
        raise ValueError(f"sign_flip_p_value enumerates 2**n sign patterns; n = {len(d)} is too many")
    observed = abs(d.mean())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    flipped = np.abs((signs * d).mean(axis=1))
    # a small relative tolerance: floating-point sums of the same magnitudes must count as ties
    return float(np.mean(flipped >= observed * (1 - 1e-12) - 1e-15))


class PairedDifference(dict):
    """``{"mean", "std", "wins", "seeds", "p", "lower_is_better"}`` of ``a - b`` over seeds;
    ``wins`` counts the seeds where ``a`` is better (larger, or smaller when ``lower_is_better``)."""

    @classmethod
    def of(cls, a: Sequence[float], b: Sequence[float], *, lower_is_better: bool = False
           ) -> "PairedDifference":
        if len(a) != len(b) or not len(a):
            raise ValueError(f"paired values need the same, non-zero number of seeds; got {len(a)} "
                             f"and {len(b)}")
        d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        mean, std = mean_std(d)
        better = d < 0 if lower_is_better else d > 0
        return cls(mean=mean, std=std, wins=int(better.sum()), seeds=len(d),
                   p=sign_flip_p_value(d), lower_is_better=lower_is_better)

    def text(self, digits: int = 3) -> str:
        spread = f" ± {self['std']:.{digits}f}" if self["seeds"] > 1 else ""
        return (f"{self['mean']:+.{digits}f}{spread} (better in {self['wins']}/{self['seeds']}, "
                f"p = {self['p']:.2f})")


def paired_difference(rows_a: Sequence[Dict[str, float]], rows_b: Sequence[Dict[str, float]],
                      metric: str, *, lower_is_better: bool = False) -> PairedDifference:
    """The paired difference of ``metric`` between two lists of per-seed rows (same seed order)."""
    values = [[row[metric] for row in rows] for rows in (rows_a, rows_b)]
    if any(math.isnan(v) for side in values for v in side):
        raise ValueError(f"metric {metric!r} is NaN in some run")
    return PairedDifference.of(*values, lower_is_better=lower_is_better)
