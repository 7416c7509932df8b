"""Paired comparisons of two trainings: over seeds, and over seeds x question groups.

Runs that share a seed share their sampling order's randomness and dropout draws' seed, and
start from the same pretrained encoder, so the natural comparison of two samplings is paired.

Per-seed summaries (:class:`PairedDifference`): the difference ``a - b`` per seed, its mean and
sample standard deviation, in how many seeds ``a`` was better, and an exact two-sided sign-flip
(permutation) p-value of the mean difference. With n seeds the smallest p-value a sign-flip
test can give is ``2 / 2**n`` (0.25 for three): a handful of seeds shows consistency, not
significance.

Verdicts (:func:`verdict`), the rule fixed before any result is seen:

- the *difference* is treatment - baseline of the metric's mean over queries, sign-adjusted so
  that higher is better (baseline - treatment for rank distance), and for a *relative* margin
  divided by the baseline's mean;
- its interval is a two-sided ``confidence`` (default 90%) percentile interval from a paired
  hierarchical bootstrap: each resample draws the seeds with replacement and the question
  groups with replacement, and applies the same draws to both arms;
- **reproduced** when the interval's lower bound is above ``-margin``, **refuted** when its
  upper bound is below ``-margin``, else **inconclusive**; with fewer than ``min_seeds`` seeds
  (default 3) the verdict is "inconclusive (n too small)" whatever the interval.

The margins (:data:`MARGINS`): 0.005 absolute for mAP and the other higher-is-better scores, 5%
of the baseline for rank distance (lower is better). :data:`DEFAULT_SEEDS` (5) is the number of
training seeds a comparison judged by a verdict is meant to run.

Seeds and question groups are crossed, not nested: every seed's model answers the same test
questions, so a question group's difficulty is shared by all seeds. A resample therefore draws
one set of question groups and uses it for every drawn seed; drawing groups anew within each
seed would treat each seed's test set as a fresh sample and shrink the test-set part of the
variance by the number of seeds. (The crossed bootstrap counts the seed x question interaction
twice, so it errs on the wide side; with few seeds it also under-states the seed part by a
factor (n - 1) / n, the reason for ``min_seeds``.) A question group is the set of parallel
queries (one question in every language: LAReQA's shared ``id``), whose scores move together.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from hbt_fast._checks import check_flag, check_integer, is_real

__all__ = ["DEFAULT_SEEDS", "MARGINS", "PairedDifference", "Verdict", "margin_for", "mean_std",
           "paired_difference", "sign_flip_p_value", "verdict"]

DEFAULT_SEEDS = 5
# Pre-registered margins: keyword arguments of verdict() per kind of metric.
MARGINS = {
    "score": {"margin": 0.005, "relative": False, "lower_is_better": False},  # mAP, recall, accuracy
    "rank_distance": {"margin": 0.05, "relative": True, "lower_is_better": True},
}
_SCORE_PREFIXES = ("map@", "recall@", "ndcg@", "accuracy")
REPRODUCED, REFUTED, INCONCLUSIVE = "reproduced", "refuted", "inconclusive"
TOO_FEW_SEEDS = "inconclusive (n too small)"
# Bootstrap work is done in chunks of resamples x question groups of about this many cells,
# so memory stays bounded however many groups a test set has.
_CHUNK_CELLS = 1 << 22


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


def margin_for(metric: str) -> dict:
    """The pre-registered ``margin``, ``relative`` and ``lower_is_better`` of ``metric``
    (e.g. "multi/map@20", "xquad-r/multi/rank_distance"), as keyword arguments of :func:`verdict`."""
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a str, got {type(metric).__name__}")
    name = metric.rsplit("/", 1)[-1]
    if name == "rank_distance":
        return dict(MARGINS["rank_distance"])
    if name.startswith(_SCORE_PREFIXES):
        return dict(MARGINS["score"])
    raise ValueError(f"metric {metric!r} has no pre-registered margin; known: rank_distance and "
                     f"names starting with {', '.join(_SCORE_PREFIXES)}")


@dataclass(frozen=True)
class Verdict:
    """Outcome of :func:`verdict`. ``estimate``, ``lower`` and ``upper`` are the sign-adjusted
    difference (higher is better; a fraction of the baseline when ``relative``) and its interval."""

    verdict: str
    estimate: float
    lower: float
    upper: float
    margin: float
    relative: bool
    lower_is_better: bool
    confidence: float
    seeds: int
    groups: int
    resamples: int

    def text(self, digits: int = 3) -> str:
        unit = "%" if self.relative else ""
        scale = 100.0 if self.relative else 1.0
        digits = 1 if self.relative else digits

        def number(value: float) -> str:
            return f"{scale * value:+.{digits}f}{unit}"

        margin = number(-self.margin) if self.margin else "0"
        return (f"{self.verdict}: {number(self.estimate)} [{number(self.lower)}, {number(self.upper)}] "
                f"({self.confidence:.0%} interval; margin {margin}; "
                f"{self.seeds} seeds x {self.groups} question groups)")


def _real_in(value, name: str, low: float, high: float, *, closed_low: bool) -> float:
    if not is_real(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    inside = (value >= low if closed_low else value > low) and value < high
    if not inside:
        bracket = "[" if closed_low else "("
        raise ValueError(f"{name} must be in {bracket}{low:g}, {high:g}), got {value}")
    return value


def _rule(lower: float, upper: float, margin: float) -> str:
    """The pre-registered rule on the interval [lower, upper] of the sign-adjusted difference."""
    if lower > -margin:
        return REPRODUCED
    if upper < -margin:
        return REFUTED
    return INCONCLUSIVE


def _scores(values, name: str) -> np.ndarray:
    """A finite float64 array [seeds, queries], or one error naming the argument and the cell."""
    array = np.asarray(values)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [seeds, queries], got shape {array.shape}")
    if array.shape[0] < 2:
        raise ValueError(f"{name} has {array.shape[0]} seed(s) (rows); the bootstrap over seeds "
                         "needs at least 2")
    if array.shape[1] < 1:
        raise ValueError(f"{name} has no queries (columns)")
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        seed, query = bad[0]
        raise ValueError(f"{name} must be finite, got {array[seed, query]} at seed {seed}, query {query}")
    return array


def _group_index(groups, num_queries: int) -> Tuple[np.ndarray, int]:
    if groups is None:
        return np.arange(num_queries), num_queries
    labels = np.asarray(groups)
    if labels.shape != (num_queries,):
        raise ValueError(f"groups must be a 1-D array with one label per query ({num_queries}), "
                         f"got shape {labels.shape}")
    _, index = np.unique(labels, return_inverse=True)
    return index.reshape(-1), int(index.max()) + 1


def _weights(weights, num_queries: int) -> np.ndarray:
    if weights is None:
        return np.ones(num_queries)
    array = np.asarray(weights, dtype=np.float64)
    if array.shape != (num_queries,):
        raise ValueError(f"weights must be a 1-D array with one weight per query ({num_queries}), "
                         f"got shape {array.shape}")
    bad = np.flatnonzero(~(np.isfinite(array) & (array > 0)))
    if len(bad):
        raise ValueError(f"weights must be finite and > 0, got {array[bad[0]]} at query {bad[0]}")
    return array


def _sums_by_group(values: np.ndarray, group_index: np.ndarray) -> np.ndarray:
    """[..., queries] -> [..., groups]: sums over the queries of each group (groups 0..G-1)."""
    order = np.argsort(group_index, kind="stable")
    sorted_groups = group_index[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    return np.add.reduceat(values[..., order], starts, axis=-1)


def _bootstrap_means(sums: np.ndarray, group_weights: np.ndarray, resamples: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Resampled weighted means [arms, resamples] from per-group sums [arms, seeds, groups]: per
    resample, seeds drawn with replacement, and one draw of groups (as counts) for all of them;
    every arm sees the same draws."""
    num_arms, num_seeds, num_groups = sums.shape
    seed_draws = rng.integers(0, num_seeds, size=(resamples, num_seeds))
    flat_sums = sums.reshape(num_arms * num_seeds, num_groups)
    means = np.empty((num_arms, resamples))
    chunk = max(1, _CHUNK_CELLS // num_groups)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        # How often each group is drawn in each resample (a multinomial count, via one bincount).
        draws = rng.integers(0, num_groups, size=(size, num_groups))
        draws += np.arange(size)[:, None] * num_groups
        counts = np.bincount(draws.ravel(), minlength=size * num_groups)
        counts = counts.reshape(size, num_groups).astype(np.float64)
        totals = counts @ group_weights  # [size]: weight of the drawn queries (> 0)
        # einsum's own loop: these products are small, and BLAS threads only add start-up and
        # contention to them
        per_seed = np.einsum("rg,kg->rk", counts, flat_sums).reshape(size, num_arms, num_seeds)
        picks = np.broadcast_to(seed_draws[start:start + size, None, :], per_seed.shape)
        drawn = np.take_along_axis(per_seed, picks, axis=2)
        means[:, start:start + size] = (drawn.mean(axis=2) / totals[:, None]).T
    return means


def verdict(treatment, baseline, groups=None, *, margin: float = MARGINS["score"]["margin"],
            relative: bool = False, lower_is_better: bool = False, confidence: float = 0.90,
            resamples: int = 2000, seed: int = 0, min_seeds: int = 3,
            weights: Optional[Sequence[float]] = None) -> Verdict:
    """Reproduced / refuted / inconclusive for "treatment matches or beats baseline".

    Args:
        treatment, baseline: per-query scores [seeds, queries] (e.g. each query's AP@20, or its
            rank distance), row s of both from seed s, column q of both from query q.
        groups: question-group label per query (parallel queries share one); None: each query
            is its own group.
        margin: the pre-registered margin (>= 0), in the metric's units, or a fraction of the
            baseline's mean when ``relative``. :func:`margin_for` gives the study's.
        lower_is_better: the metric improves downwards (rank distance).
        confidence: coverage of the two-sided interval, in (0, 1); its lower bound alone is a
            one-sided bound at ``(1 + confidence) / 2``.
        resamples: bootstrap resamples (>= 100); seed: of the resampling generator.
        min_seeds: fewer seeds give "inconclusive (n too small)" (the interval is still given).
        weights: per-query weight of the mean (> 0), e.g. 1 / queries of the query's language to
            macro-average languages of unequal size; None: the plain mean.

    See the module docstring for the rule and the bootstrap. Raises TypeError / ValueError
    naming the argument."""
    treatment = _scores(treatment, "treatment")
    baseline = _scores(baseline, "baseline")
    if treatment.shape != baseline.shape:
        raise ValueError(f"treatment and baseline must have the same shape [seeds, queries] (paired "
                         f"by seed and query), got {treatment.shape} and {baseline.shape}")
    margin = _real_in(margin, "margin", 0.0, math.inf, closed_low=True)
    confidence = _real_in(confidence, "confidence", 0.0, 1.0, closed_low=False)
    relative = check_flag(relative, "relative")
    lower_is_better = check_flag(lower_is_better, "lower_is_better")
    resamples = check_integer(resamples, "resamples", minimum=100, not_integer=TypeError)
    seed = check_integer(seed, "seed", minimum=0, not_integer=TypeError)
    min_seeds = check_integer(min_seeds, "min_seeds", minimum=2, not_integer=TypeError)
    num_seeds, num_queries = treatment.shape
    group_index, num_groups = _group_index(groups, num_queries)
    query_weights = _weights(weights, num_queries)

    arms = np.stack([treatment, baseline]) * query_weights  # [2, seeds, queries]
    sums = _sums_by_group(arms, group_index)
    group_weights = _sums_by_group(query_weights, group_index)
    observed = sums.sum(axis=2).mean(axis=1) / group_weights.sum()  # [2]: the arms' means
    resampled = _bootstrap_means(sums, group_weights, resamples, np.random.default_rng(seed))
    sign = -1.0 if lower_is_better else 1.0
    estimate, differences = (sign * (means[0] - means[1]) for means in (observed, resampled))
    if relative:
        if np.any(resampled[1] <= 0) or observed[1] <= 0:
            raise ValueError("a relative margin needs a positive baseline mean, but baseline's "
                             "mean is <= 0 in the data or in a resample")
        with np.errstate(over="ignore"):  # a baseline mean near 0: refused just below
            estimate, differences = estimate / observed[1], differences / resampled[1]
        if not (np.isfinite(estimate) and np.all(np.isfinite(differences))):
            raise ValueError(f"a relative margin needs a baseline mean away from 0, but baseline's "
                             f"mean {observed[1]:g} (or a resample's) makes the relative difference "
                             "overflow")
    lower, upper = np.quantile(differences, [(1 - confidence) / 2, (1 + confidence) / 2])
    outcome = TOO_FEW_SEEDS if num_seeds < min_seeds else _rule(lower, upper, margin)
    return Verdict(verdict=outcome, estimate=float(estimate), lower=float(lower), upper=float(upper),
                   margin=margin, relative=relative, lower_is_better=lower_is_better,
                   confidence=confidence, seeds=num_seeds, groups=num_groups, resamples=resamples)
