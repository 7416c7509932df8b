"""Metric names, spelled once: every result key and ``"section/metric"`` name comes from here."""

from __future__ import annotations

__all__ = ["RANK_DISTANCE", "SETUPS", "higher_is_better", "map_at", "ndcg_at", "recall_at"]

RANK_DISTANCE = "rank_distance"
SETUPS = "setups"
SEPARATOR = "/"

# Metrics where a smaller value is the better model; every other reported metric grows with
# quality.
_LOWER_IS_BETTER = frozenset({RANK_DISTANCE})


def map_at(k: int) -> str:
    return f"map@{k}"


def recall_at(k: int) -> str:
    return f"recall@{k}"


def ndcg_at(k: int) -> str:
    return f"ndcg@{k}"


def higher_is_better(metric: str) -> bool:
    """Direction of a metric, given as ``"section/name"`` or ``"name"``."""
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a string like 'multi/map@20', got {type(metric).__name__}")
    return metric.rpartition(SEPARATOR)[2] not in _LOWER_IS_BETTER
