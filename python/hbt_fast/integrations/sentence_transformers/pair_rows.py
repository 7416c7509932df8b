"""A dataset of pairs seen through hybrid batches, without materialising any cross product.

The data loader's batch sampler (:class:`hbt_fast.sampler.HybridBatchSampler`) yields one
:class:`~hbt_fast.sampler.PairBatch` (the sampler's two index arrays) per batch; the dataset
view (:class:`PairRows`) turns it into the rows sentence-transformers' collator expects, taking
the query text of one row and the passage (and hard negative) texts of another. An X-Y batch is thus two Arrow ``take``s on the
user's dataset: memory stays O(pairs) however many languages a group has.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from hbt_fast.sampler import PairBatch


class PairRows(torch.utils.data.Dataset):
    """Map-style view of a ``datasets.Dataset`` of pairs, indexed by whole batches.

    ``view.__getitems__(batch)`` (a ``PairBatch`` or ``(query_rows, passage_rows)``) returns one
    dict per slot, with the query of ``query_rows[i]`` under ``query_column`` and the passage and
    negatives of ``passage_rows[i]`` under their columns, in that order (the order sentence-transformers'
    losses read: anchor, positive, negatives). Other columns (language, group) never appear.
    """

    def __init__(self, dataset, query_column: str, passage_column: str,
                 negative_columns: Sequence[str] = ()) -> None:
        self.query_column = query_column
        self.passage_columns = [passage_column, *negative_columns]
        # select_columns makes Arrow views (no copy) that keep the dataset's row order.
        self._queries = dataset.select_columns([query_column])
        self._passages = dataset.select_columns(self.passage_columns)
        self._length = len(dataset)

    def __len__(self) -> int:
        return self._length

    def __getitems__(self, rows) -> list:
        query_rows, passage_rows = rows.batch if isinstance(rows, PairBatch) else rows
        queries = self._queries[np.asarray(query_rows).tolist()][self.query_column]
        passages = self._passages[np.asarray(passage_rows).tolist()]
        columns = [queries] + [passages[name] for name in self.passage_columns]
        names = [self.query_column] + self.passage_columns
        return [dict(zip(names, values)) for values in zip(*columns)]

    def __getitem__(self, index) -> dict:
        query_row, passage_row = index
        return self.__getitems__(([query_row], [passage_row]))[0]


class SourceRows(torch.utils.data.Dataset):
    """Several :class:`PairRows` (one per source) as one, rows numbered source after source as
    :class:`hbt_fast.sampler.MultiSourceSampler` numbers them; a batch's rows are of one source.
    With ``names``, every row carries its source's name as ``dataset_name`` (what
    sentence-transformers routes a dict of losses or prompts by)."""

    def __init__(self, parts: Sequence[PairRows], names: Optional[Sequence[str]] = None) -> None:
        self.parts, self.names = list(parts), names
        self.offsets = np.concatenate([[0], np.cumsum([len(part) for part in self.parts])])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitems__(self, rows) -> list:
        query_rows, passage_rows = rows.batch if isinstance(rows, PairBatch) else rows
        query_rows, passage_rows = np.asarray(query_rows), np.asarray(passage_rows)
        source = int(np.searchsorted(self.offsets, query_rows[0], side="right")) - 1
        offset = self.offsets[source]
        items = self.parts[source].__getitems__((query_rows - offset, passage_rows - offset))
        if self.names is not None:
            for item in items:
                item["dataset_name"] = self.names[source]
        return items

    def __getitem__(self, index) -> dict:
        query_row, passage_row = index
        return self.__getitems__(([query_row], [passage_row]))[0]
