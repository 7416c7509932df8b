"""Helpers shared by the evaluators: locating data, calling encoders safely, averaging."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hbt_fast.evaluate.search import as_embeddings

DATA_ENV = "HBT_DATA_DIR"

DATA_SOURCES = {
    "xquad-r": "https://github.com/google-research-datasets/lareqa (folder xquad-r/)",
    "mlqa-r": "https://github.com/google-research-datasets/lareqa (folder mlqa-dev-r/)",
    "tatoeba": "https://github.com/facebookresearch/LASER/tree/main/data/tatoeba/v1",
    "miracl": "https://github.com/project-miracl/miracl (or any BEIR-layout dataset)",
}


def resolve_data_dir(data_dir, task: str, subdir: str) -> Path:
    """Return the task's data folder: ``data_dir`` if given, else ``$HBT_DATA_DIR/<subdir>``.

    Raises FileNotFoundError saying where to obtain the data when the folder is missing.
    """
    source = DATA_SOURCES.get(task, "")
    if data_dir is None:
        root = os.environ.get(DATA_ENV)
        if not root:
            raise FileNotFoundError(
                f"no data directory given for {task} and ${DATA_ENV} is not set; pass data_dir= "
                f"or set {DATA_ENV} to a folder holding {subdir}/. Obtain the data from {source}"
            )
        data_dir = Path(root) / subdir
    path = Path(data_dir)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{task} data directory {str(path)!r} does not exist. Obtain the data from {source}"
        )
    return path


def encode(encoder, side: str, texts: Sequence[str], what: str, dim: Optional[int] = None):
    """Call ``encoder.encode_queries`` or ``encode_passages`` and validate the result.

    ``what`` names the texts (language, file) in error messages.
    """
    method_name = "encode_queries" if side == "query" else "encode_passages"
    method = getattr(encoder, method_name, None)
    if not callable(method):
        raise TypeError(f"encoder must have a callable {method_name}(list[str]) method")
    embeddings = as_embeddings(
        method(list(texts)), len(texts), name=f"{method_name} for {what}"
    )
    if dim is not None and embeddings.shape[1] != dim:
        raise ValueError(
            f"{method_name} for {what}: dimension {embeddings.shape[1]}, expected {dim} "
            "(as for earlier calls)"
        )
    return embeddings


def l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, 1e-12)


def mean_or_nan(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")
