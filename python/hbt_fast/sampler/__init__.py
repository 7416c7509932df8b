"""The hybrid batch sampler: C++ core (:class:`HybridSampler`), its DataLoader adapters, the
label-to-id helper, and the plain numpy reference it is tested against."""

from hbt_fast.sampler.adapters import HybridBatchSampler, PairBatch, PairDataset
from hbt_fast.sampler.ids import PairIds, labels_to_ids
from hbt_fast.sampler.reference import ReferenceHybridSampler
from hbt_fast.sampler.sampler import Batch, HybridSampler

__all__ = [
    "Batch",
    "HybridBatchSampler",
    "HybridSampler",
    "PairBatch",
    "PairDataset",
    "PairIds",
    "ReferenceHybridSampler",
    "labels_to_ids",
]
