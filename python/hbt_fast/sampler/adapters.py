"""Adapters of :class:`HybridSampler` to ``torch.utils.data.DataLoader`` (torch not needed here)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


from hbt_fast.sampler._stock_trainer_guard import RefusesStockTrainer
from hbt_fast.sampler.mixture import MultiSourceSampler
from hbt_fast.sampler.sampler import Batch, HybridSampler


class PairBatch(Sequence):
    """One batch as the DataLoader sees it: a sequence of ``(query_row, passage_row)`` tuples.

    It wraps the sampler's :class:`Batch` (two int64 arrays, ``kind``, ``language``), so the
    sampler side never builds per-row Python objects; a dataset with ``__getitems__`` (as
    :class:`PairDataset`) fetches the batch in one call, any other dataset is indexed with
    each tuple.
    """

    __slots__ = ("batch",)

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    query_rows = property(lambda self: self.batch[0])
    passage_rows = property(lambda self: self.batch[1])
    kind = property(lambda self: self.batch.kind)
    language = property(lambda self: self.batch.language)

    def __len__(self) -> int:
        return len(self.batch[0])

    def __getitem__(self, index):
        query_rows, passage_rows = self.batch
        if isinstance(index, slice):
            return list(zip(query_rows[index].tolist(), passage_rows[index].tolist()))
        return int(query_rows[index]), int(passage_rows[index])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        query_rows, passage_rows = self.batch
        return zip(query_rows.tolist(), passage_rows.tolist())

    def __eq__(self, other) -> bool:
        return list(self) == list(other) if isinstance(other, (PairBatch, list, tuple)) else NotImplemented

    def __repr__(self) -> str:
        return f"PairBatch(kind={self.kind!r}, language={self.language}, pairs={list(self)})"


class HybridBatchSampler(RefusesStockTrainer):
    """``torch.utils.data.DataLoader`` ``batch_sampler`` over a dataset of pairs.

    Each batch is a :class:`PairBatch`, a sequence of ``(query_row, passage_row)`` tuples;
    pair it with :class:`PairDataset` (or any dataset whose ``__getitem__`` takes such a tuple)::

        loader = DataLoader(PairDataset(queries, passages),
                            batch_sampler=HybridBatchSampler(sampler), collate_fn=...)
    """

    def __init__(self, sampler: HybridSampler) -> None:
        if not isinstance(sampler, (HybridSampler, MultiSourceSampler)):
            raise TypeError(f"sampler must be a HybridSampler or a MultiSourceSampler, got "
                            f"{type(sampler).__name__}")
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[PairBatch]:
        return map(PairBatch, self.sampler)


class PairDataset:
    """Map-style dataset: index ``(query_row, passage_row)`` -> ``(query_text, passage_text)``."""

    def __init__(self, queries: Sequence[str], passages: Sequence[str]) -> None:
        if len(queries) != len(passages):
            raise ValueError(
                f"queries and passages must have the same length, got {len(queries)} and {len(passages)}"
            )
        self.queries, self.passages = queries, passages

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, index: tuple[int, int]) -> tuple[str, str]:
        query_row, passage_row = index
        return self.queries[query_row], self.passages[passage_row]

    def __getitems__(self, batch) -> list[tuple[str, str]]:
        """A whole batch at once (the DataLoader calls this when it exists)."""
        if isinstance(batch, PairBatch):
            queries, passages = self.queries, self.passages
            return [(queries[q], passages[p]) for q, p in batch]
        return [self[index] for index in batch]
