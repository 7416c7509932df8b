"""Small helpers shared by the evaluation tasks."""

from __future__ import annotations

import numpy as np

__all__ = ["l2_normalize", "mean_or_nan"]


def l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, 1e-12)


def mean_or_nan(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")
