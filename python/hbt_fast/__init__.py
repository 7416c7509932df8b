"""hbt_fast: hybrid batch training for multilingual dense retrievers, with a C++ core.

The sampler is importable without torch; torch-based names (losses, training) are loaded
on first use so that ``import hbt_fast`` stays cheap.
"""


# _C links against the OpenBLAS shipped by the scipy-openblas32 wheel (for the fused loss);
# importing that package loads the library, so it must come before anything imports _C.
import scipy_openblas32 as _scipy_openblas32  # noqa: F401

from hbt_fast._info import info
from hbt_fast._version import __version__
from hbt_fast.sampler import (Batch, HybridBatchSampler, HybridSampler, MultiSourceSampler, PairDataset, PairIds,
                              labels_to_ids)

_LAZY = {
    "InfoNCELoss": "hbt_fast.losses",
    "functional": "hbt_fast.functional",
}

__all__ = [
    "Batch",
    "HybridBatchSampler",
    "HybridSampler",
    "InfoNCELoss",
    "MultiSourceSampler",
    "PairDataset",
    "PairIds",
    "__version__",
    "functional",
    "info",
    "labels_to_ids",
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__.endswith(name) else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hbt_fast' has no attribute {name!r}")
