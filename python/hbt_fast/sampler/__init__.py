"""The hybrid batch sampler: C++ core (:class:`HybridSampler`), several sources of pairs in one
run (:class:`MultiSourceSampler`), its DataLoader adapters, the label-to-id helper. Its plain numpy oracle is :class:`hbt_fast.testing.ReferenceHybridSampler`."""

from hbt_fast.sampler.adapters import HybridBatchSampler, PairBatch, PairDataset
from hbt_fast.sampler.ids import PairIds, labels_to_ids
from hbt_fast.sampler.mixture import MultiSourceSampler
from hbt_fast.sampler.sampler import Batch, HybridSampler

__all__ = [
    "Batch",
    "HybridBatchSampler",
    "HybridSampler",
    "MultiSourceSampler",
    "PairBatch",
    "PairDataset",
    "PairIds",
    "labels_to_ids",
]
