"""A dataset of pairs seen through hybrid batches, without materialising any cross product.

The data loader's batch sampler (:class:`hbt_fast.sampler.HybridBatchSampler`) yields one
:class:`~hbt_fast.sampler.PairBatch` (the sampler's two index arrays) per batch; the dataset
view (:class:`PairRows`) turns it into the rows sentence-transformers' collator expects, taking
the query text of one row and the passage (and hard negative) texts of another. An X-Y batch is thus two Arrow ``take``s on the
user's dataset: memory stays O(pairs) however many languages a group has.
"""

from __future__ import annotations

from typing import Sequence

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
