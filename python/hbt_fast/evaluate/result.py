"""``TaskResult``: what every evaluation task returns, and what reports and trainers read."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from hbt_fast.evaluate.keys import SEPARATOR, higher_is_better
from hbt_fast.evaluate.per_query import Observations, PerQuery

__all__ = ["TaskResult"]


@dataclass(eq=False)
class TaskResult(Mapping):
    """The figures of one task on one model.

    ``headline`` maps a section (``"mono"``, ``"cross"``, ``"multi"`` for LAReQA, ``"mean"`` for
    Tatoeba and MIRACL/BEIR) to its metrics; ``per_language`` holds one row of figures per
    language; ``matrix`` (LAReQA) the query-language x candidate-language tables; ``settings``
    how the figures were obtained (``k``, ``candidate_text``, ``model``, ``data``, ...);
    ``per_query`` what each query contributed, for intervals over questions.

    It reads like the dict that :meth:`to_dict` returns (``r["multi"]["map@20"]``, ``r["k"]``),
    which is also what ``results.json`` holds.
    """

    task: str
    languages: list
    headline: dict
    per_language: dict
    matrix: Optional[dict] = None
    settings: dict = field(default_factory=dict)
    #: what each query contributed (per-query AP, ranks, question groups): see
    #: :mod:`hbt_fast.evaluate.per_query`; None for a result rebuilt from results.json
    per_query: Optional[PerQuery] = None

    # ------------------------------------------------------------------ named metrics
    def metric(self, name: str) -> float:
        """One headline figure by its ``"section/metric"`` name, e.g. ``"multi/map@20"``."""
        if not isinstance(name, str):
            raise TypeError(f"metric name must be a string like 'multi/map@20', got {name!r}")
        section, _, metric = name.partition(SEPARATOR)
        value = self.headline.get(section, {}).get(metric) if metric else None
        if not isinstance(value, float):  # counts such as "setups" are not metrics
            raise ValueError(
                f"metric {name!r} is not reported by task {self.task!r}; "
                f"available: {', '.join(self.metrics())}"
            )
        return float(value)

    def metrics(self) -> dict:
        """Every headline figure as ``{"section/metric": value}`` (counts such as setups left out)."""
        return {
            f"{section}{SEPARATOR}{name}": float(value)
            for section, values in self.headline.items()
            for name, value in values.items()
            if isinstance(value, float)
        }

    def observations(self, name: str) -> Observations:
        """Per-unit values, question groups and weights of headline metric ``name`` (their
        weighted mean is :meth:`metric`), for a paired bootstrap over questions."""
        if self.per_query is None:
            raise ValueError(f"this {self.task} result holds no per-query values (a result "
                             "rebuilt from results.json; load per_query.npz with PerQuery.load)")
        return self.per_query.observations(name)

    @staticmethod
    def higher_is_better(name: str) -> bool:
        """Whether a larger value of metric ``name`` means a better model."""
        return higher_is_better(name)

    def is_better(self, name: str, other: Optional[float]) -> bool:
        """Whether this result's ``name`` beats ``other`` (``None`` or NaN: nothing to beat)."""
        value = self.metric(name)
        if other is None or math.isnan(other):
            return not math.isnan(value)
        return value > other if higher_is_better(name) else value < other

    # ------------------------------------------------------------------ dict view
    def to_dict(self) -> dict:
        """The ``results.json`` layout: task, settings, languages, sections, matrix, per language."""
        out = {"task": self.task, **self.settings, "languages": list(self.languages)}
        out.update(self.headline)
        if self.matrix is not None:
            out["matrix"] = self.matrix
        out["per_language"] = self.per_language
        return out

    def __getitem__(self, key: str) -> Any:
        if key in self.headline:
            return self.headline[key]
        fixed = {"task": self.task, "languages": self.languages, "per_language": self.per_language}
        if key in fixed:
            return fixed[key]
        if key == "matrix" and self.matrix is not None:
            return self.matrix
        if key in self.settings:
            return self.settings[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())
