"""The per-query values behind an experiment's verdicts, stacked seed by seed.

A run's evaluation leaves, per benchmark, a :class:`~hbt_fast.evaluate.per_query.PerQuery`
(``OUTPUT/<arm>-seed<seed>/per_query/<benchmark>.npz``, and with ``--eval-every``
``evaluations/xquad-r-step<N>.npz``). :meth:`Evidence.scores` turns the runs of one arm into the
``[seeds, units]`` matrix that :func:`~hbt_fast.experiments.statistics.verdict` takes, with the
units' question groups and weights; :meth:`Evidence.pair` does the same for two weighted sums
of arms (hybrid against the midpoint of X-X and X-Y). Arms compared with each other must have
answered the same units (questions, and for mono / cross the same candidate languages) with the
same seeds: anything else is refused, since the comparison would no longer be paired.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np

from hbt_fast.evaluate.per_query import PerQuery

__all__ = ["Evidence", "SeedScores", "per_query_path"]

Key = Tuple[str, str, Optional[int]]  # (arm, benchmark, evaluation step; None: the final one)


def per_query_path(run_dir, benchmark: str, step: Optional[int] = None) -> Path:
    """Where a run keeps its per-query values: of its final evaluation on ``benchmark``, or of
    its evaluation at training ``step``."""
    if step is None:
        return Path(run_dir) / "per_query" / f"{benchmark}.npz"
    return Path(run_dir) / "evaluations" / f"{benchmark}-step{step}.npz"


class SeedScores(NamedTuple):
    """``values`` [seeds, units]; ``groups``, ``weights`` and ``units`` [units], shared by all seeds."""

    values: np.ndarray
    groups: np.ndarray
    weights: np.ndarray
    units: np.ndarray


class Evidence:
    """Per-query results by (arm, benchmark, step), one :class:`PerQuery` per seed, in seed order."""

    def __init__(self, runs: Mapping[Key, List[PerQuery]]):
        self.runs = dict(runs)

    @classmethod
    def from_folder(cls, output, arms, seeds, benchmarks, steps=()) -> "Evidence":
        """Read the per-query files the runs of ``arms`` x ``seeds`` left under ``output``
        (``steps``: the evaluation steps during training, XQuAD-R only)."""
        output, runs = Path(output), {}
        for arm in arms:
            folders = [output / f"{arm}-seed{seed}" for seed in seeds]
            for benchmark in benchmarks:
                runs[arm, benchmark, None] = [PerQuery.load(per_query_path(folder, benchmark))
                                              for folder in folders]
            for step in steps:
                runs[arm, "xquad-r", step] = [PerQuery.load(per_query_path(folder, "xquad-r", step))
                                              for folder in folders]
        return cls(runs)

    def seeds(self, arm: str, benchmark: str, step: Optional[int] = None) -> int:
        return len(self._runs(arm, benchmark, step))

    def _runs(self, arm: str, benchmark: str, step: Optional[int]) -> List[PerQuery]:
        key = (arm, benchmark, step)
        if key not in self.runs:
            at = f" at step {step}" if step is not None else ""
            raise KeyError(f"no per-query results of {arm} on {benchmark}{at}")
        return self.runs[key]

    def scores(self, arm: str, benchmark: str, metric: str, step: Optional[int] = None) -> SeedScores:
        """The ``[seeds, units]`` values of ``metric`` over ``arm``'s seeds."""
        observations = [run.observations(metric) for run in self._runs(arm, benchmark, step)]
        first = observations[0]
        for seed, other in enumerate(observations[1:], start=1):
            if not np.array_equal(other.units, first.units) or \
                    not np.array_equal(other.groups, first.groups):
                raise ValueError(f"{arm}: seed {seed} answered other {benchmark} units than seed 0 "
                                 f"for {metric}; the runs were evaluated on other data")
        return SeedScores(np.stack([o.values for o in observations]), first.groups,
                          first.weights, first.units)

    def _paired_scores(self, arms, benchmark: str, metric: str, step: Optional[int]) -> dict:
        """``{arm: scores}``, refused unless every arm has the same seeds count and units."""
        parts = {arm: self.scores(arm, benchmark, metric, step) for arm in arms}
        first_arm, first = next(iter(parts.items()))
        for arm, part in parts.items():
            if part.values.shape[0] != first.values.shape[0]:
                raise ValueError(f"{arm} has {part.values.shape[0]} seeds and {first_arm} "
                                 f"{first.values.shape[0]}: a paired comparison needs the same seeds")
            if not np.array_equal(part.units, first.units) or \
                    not np.array_equal(part.weights, first.weights):
                raise ValueError(f"{arm} and {first_arm} answered other {benchmark} units for "
                                 f"{metric}; they were evaluated on other data")
        return parts

    def pair(self, first: Dict[str, float], second: Dict[str, float], benchmark: str,
             metric: str, step: Optional[int] = None) -> Tuple[SeedScores, SeedScores]:
        """``sum(weight * scores(arm))`` over ``first`` and over ``second`` ({arm: weight}),
        paired seed by seed and unit by unit (e.g. {hybrid: 1} against {xx: .5, xy: .5})."""
        parts = self._paired_scores([*first, *second], benchmark, metric, step)
        some = next(iter(parts.values()))

        def combined(terms):
            values = sum(weight * parts[arm].values for arm, weight in terms.items())
            return SeedScores(values, some.groups, some.weights, some.units)

        return combined(first), combined(second)
