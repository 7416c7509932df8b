"""Per-query figures of an evaluation: what a paired bootstrap over questions needs.

A headline figure is a (macro-)average; comparing two models with an interval needs the values
it averages. Every task's ``score`` therefore keeps, beside its means, what each query
contributed: :class:`PerQuery` holds those arrays (query ids, question-group ids, per-query AP
and ranks, ...) and :meth:`PerQuery.observations` turns them into, for one headline metric, one
value per *unit* (a query, or a query x candidate-language setup for LAReQA's mono / cross), its
question group, and a weight, such that the weighted mean of the values **is** the headline
figure. :func:`hbt_fast.experiments.statistics.verdict` takes exactly these.

Evaluations of disjoint query sets (k-fold cross-fitting: each fold's model answers its own
held-out questions) join into one with :meth:`PerQuery.concatenate`; its observations are those
of all queries together, each as its own model answered it.

Saved as a compressed ``.npz`` (:meth:`PerQuery.save`, written under a temporary name and
renamed; ``hbt-fast eval --output`` writes ``per_query.npz`` beside ``results.json``). Arrays
by kind (Q queries, L languages):

* ``lareqa``: ``query_id`` [Q] (LAReQA's question id, shared by translations), ``group`` [Q]
  (dense id of that question: the bootstrap's unit), ``language`` [Q], ``languages`` [L] (the
  columns of ``block_rank``), ``block_rank`` [Q, L] (1-based rank of the relevant candidate
  among language y's candidates only; 0: the question has none in y), ``multi_ap`` [Q] (AP@k
  over the pool of all languages), ``multi_recall`` [Q] (Recall@``multi_recall_k``),
  ``best_rank`` / ``worst_rank`` [Q] (full multi ranks of the best- and worst-ranked relevant
  candidate; rank distance = worst - best), ``k`` and ``multi_recall_k``.
* ``tatoeba``: ``language`` [N], ``line`` [N] (0-based line of the pair), ``to_english`` /
  ``from_english`` [N] (whether the nearest neighbour is the translation: accuracy@1's
  per-query value). Each pair is its own group.
* ``beir``: ``language`` [Q], ``query_id`` [Q], ``ndcg`` / ``recall`` [Q] (nDCG@``ndcg_k``,
  Recall@``recall_k``), ``first_relevant_rank`` [Q] (0: no relevant document retrieved).
  Each query is its own group.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, NamedTuple, Sequence

import numpy as np

from hbt_fast.evaluate.keys import RANK_DISTANCE, SEPARATOR, map_at, ndcg_at, recall_at

__all__ = ["KINDS", "Observations", "PerQuery"]

_REQUIRED = {
    "lareqa": ("query_id", "group", "language", "languages", "block_rank", "multi_ap",
               "multi_recall", "best_rank", "worst_rank", "k", "multi_recall_k"),
    "tatoeba": ("language", "line", "to_english", "from_english"),
    "beir": ("language", "query_id", "ndcg", "recall", "first_relevant_rank", "ndcg_k",
             "recall_k"),
}
KINDS = tuple(_REQUIRED)


class Observations(NamedTuple):
    """One metric's units: ``values``, question ``groups``, ``weights`` (the weighted mean of
    ``values`` is the headline figure) and ``units`` (a text id per unit, to check pairing)."""

    values: np.ndarray
    groups: np.ndarray
    weights: np.ndarray
    units: np.ndarray

    def mean(self) -> float:
        return float(np.sum(self.values * self.weights) / np.sum(self.weights))


def _macro_weights(cells: np.ndarray) -> np.ndarray:
    """1 / (units in the unit's cell x non-empty cells): a mean per cell, then over cells."""
    _, index, counts = np.unique(cells, return_inverse=True, return_counts=True)
    return 1.0 / (counts[index.reshape(-1)] * len(counts))


def _joined(*parts) -> np.ndarray:
    out = np.asarray(parts[0]).astype(str)
    for part in parts[1:]:
        out = np.char.add(out, np.asarray(part).astype(str))
    return out


def _lareqa(arrays: dict, section: str, name: str):
    k, recall_k = int(arrays["k"]), int(arrays["multi_recall_k"])
    language, group = arrays["language"], arrays["group"]
    query_units = _joined(arrays["query_id"], "@", language)
    if section == "multi":
        values = {map_at(k): arrays["multi_ap"], recall_at(recall_k): arrays["multi_recall"],
                  RANK_DISTANCE: (arrays["worst_rank"] - arrays["best_rank"]).astype(np.float64)}
        if name not in values:
            return None
        return Observations(np.asarray(values[name], np.float64), group,
                            _macro_weights(language), query_units)
    if section not in ("mono", "cross") or name not in (map_at(k), recall_at(1)):
        return None
    ranks = arrays["block_rank"]
    own = language[:, None] == arrays["languages"][None, :]
    rows, columns = np.nonzero((ranks > 0) & (own if section == "mono" else ~own))
    rank = ranks[rows, columns]
    values = np.where(rank <= k, 1.0 / np.maximum(rank, 1), 0.0) if name == map_at(k) \
        else (rank <= 1).astype(np.float64)
    target = arrays["languages"][columns]
    cells = _joined(language[rows], "->", target)
    return Observations(values, group[rows], _macro_weights(cells),
                        _joined(query_units[rows], "->", target))


def _tatoeba(arrays: dict, section: str, name: str):
    directions = {"xx->eng": ("to_english",), "eng->xx": ("from_english",),
                  "both": ("to_english", "from_english")}
    # The sections are sets of languages (tatoeba's module doc); F1 is no mean over queries.
    flags = {"mean": None, "low-resource": "low_resource", "seen": "seen", "unseen": "seen"}
    if section not in flags or name not in directions:
        return None
    if flags[section] is not None:
        if flags[section] not in arrays:
            return None
        keep = np.asarray(arrays[flags[section]], dtype=bool)
        arrays = {key: value[keep if section != "unseen" else ~keep] for key, value in arrays.items()}
    pair_units = _joined(arrays["language"], ":", arrays["line"])
    groups = np.unique(pair_units, return_inverse=True)[1].reshape(-1)
    parts = directions[name]
    values = np.concatenate([np.asarray(arrays[p], np.float64) for p in parts])
    cells = np.concatenate([_joined(arrays["language"], f"/{p}") for p in parts])
    units = np.concatenate([_joined(pair_units, f"/{p}") for p in parts])
    return Observations(values, np.tile(groups, len(parts)), _macro_weights(cells), units)


def _beir(arrays: dict, section: str, name: str):
    columns = {ndcg_at(int(arrays["ndcg_k"])): "ndcg", recall_at(int(arrays["recall_k"])): "recall"}
    if section != "mean" or name not in columns:
        return None
    units = _joined(arrays["language"], ":", arrays["query_id"])
    groups = np.unique(units, return_inverse=True)[1].reshape(-1)
    return Observations(np.asarray(arrays[columns[name]], np.float64), groups,
                        _macro_weights(arrays["language"]), units)


_OBSERVERS: Dict[str, Callable] = {"lareqa": _lareqa, "tatoeba": _tatoeba, "beir": _beir}
# What names a query, per kind: parts joined by PerQuery.concatenate must not share one.
_IDENTITY = {"lareqa": ("query_id", "language"), "tatoeba": ("language", "line"),
             "beir": ("language", "query_id")}
# Arrays that describe the evaluation, not a query: equal in every part joined.
_SHARED = {"languages"}


@dataclass(eq=False)
class PerQuery:
    """The per-query arrays of one evaluation (see the module doc for each kind's arrays)."""

    kind: str
    arrays: dict

    def __post_init__(self):
        if self.kind not in _REQUIRED:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        missing = [name for name in _REQUIRED[self.kind] if name not in self.arrays]
        if missing:
            raise ValueError(f"{self.kind} per-query arrays lack {', '.join(missing)}")
        self.arrays = {name: np.asarray(value) for name, value in self.arrays.items()}

    def observations(self, metric: str) -> Observations:
        """The units of headline ``metric`` ("section/metric", e.g. "multi/map@20")."""
        if not isinstance(metric, str):
            raise TypeError(f"metric must be a string like 'multi/map@20', got {metric!r}")
        section, _, name = metric.partition(SEPARATOR)
        found = _OBSERVERS[self.kind](self.arrays, section, name)
        if found is None:
            raise ValueError(f"metric {metric!r} has no per-query values in a {self.kind} "
                             "evaluation")
        return found

    @classmethod
    def concatenate(cls, parts: Sequence["PerQuery"]) -> "PerQuery":
        """One evaluation of the queries of all ``parts``, which must be of one kind and
        setting (the same candidate languages, k, ...) and answer disjoint queries; LAReQA's
        question groups are renumbered over the whole."""
        parts = list(parts)
        if not parts or not all(isinstance(part, PerQuery) for part in parts):
            raise TypeError("concatenate takes a non-empty sequence of PerQuery")
        first = parts[0]
        for number, part in enumerate(parts[1:], start=1):
            if part.kind != first.kind or set(part.arrays) != set(first.arrays):
                raise ValueError(f"part {number} is a {part.kind} evaluation with arrays "
                                 f"{sorted(part.arrays)}, part 0 a {first.kind} one with "
                                 f"{sorted(first.arrays)}")
            for name, value in part.arrays.items():
                if (value.ndim == 0 or name in _SHARED) and not np.array_equal(value, first.arrays[name]):
                    raise ValueError(f"part {number} has another {name} ({value}) than part 0 "
                                     f"({first.arrays[name]}): not one evaluation's setting")
        arrays = {name: value if value.ndim == 0 or name in _SHARED
                  else np.concatenate([part.arrays[name] for part in parts])
                  for name, value in first.arrays.items()}
        identity = _joined(*(arrays[name] for name in _IDENTITY[first.kind]))
        if len(np.unique(identity)) != len(identity):
            raise ValueError("the parts answer some query more than once; concatenate joins "
                             "evaluations of disjoint queries (e.g. cross-fitting folds)")
        if first.kind == "lareqa":
            arrays["group"] = np.unique(arrays["query_id"], return_inverse=True)[1].reshape(-1)
        return cls(first.kind, arrays)

    def save(self, path) -> Path:
        """Write a compressed ``.npz`` under a temporary name and rename it into ``path``."""
        from hbt_fast.data.files import atomic_output

        path = Path(path)
        with atomic_output(path, "wb") as handle:
            np.savez_compressed(handle, kind=np.asarray(self.kind), **self.arrays)
        return path

    @classmethod
    def load(cls, path) -> "PerQuery":
        """Read a file written by :meth:`save`; one error naming the file when it is not one."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"per-query file {path} does not exist")
        try:
            stored = np.load(path, allow_pickle=False)
            if not isinstance(stored, np.lib.npyio.NpzFile):  # a bare .npy array
                raise ValueError("a single array, not an .npz archive")
            with stored:
                arrays = {name: stored[name] for name in stored.files}
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path}: not a per-query .npz file ({error})") from None
        kind = arrays.pop("kind", None)
        try:
            return cls(str(kind) if kind is not None else "", arrays)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
